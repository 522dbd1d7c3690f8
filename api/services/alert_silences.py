"""Silences: matching alerts are still recorded (marked silenced) but not notified.

The engine applies them; here they are created, listed and expired. Every
change is audited (entity ``silence``).
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi.exceptions import RequestValidationError
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from api.alert_schemas import SilenceCreate, SilencePublic
from api.db.models import Alert, Silence
from api.errors import NotFound
from api.services.audit import record, snapshot

ENTITY = "silence"
FIELDS = ("id", "centre", "device", "rule_id", "severity", "starts_at", "ends_at", "comment")


def _aware(at: datetime) -> datetime:
    """SQLite hands back naive datetimes; they are UTC."""
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def public(row: Silence, now: datetime | None = None) -> SilencePublic:
    now = now or datetime.now(UTC)
    out = SilencePublic.model_validate(row)
    active = _aware(row.starts_at) <= now < _aware(row.ends_at)
    return out.model_copy(update={"active": active})


def get(session: Session, silence_id: int) -> Silence:
    row = session.get(Silence, silence_id)
    if row is None:
        raise NotFound(f"silence {silence_id} not found")
    return row


def create(session: Session, actor: str, body: SilenceCreate) -> Silence:
    now = datetime.now(UTC)
    row = Silence(
        centre=body.centre,
        device=body.device,
        rule_id=body.rule_id,
        severity=body.severity.value if body.severity else None,
        starts_at=body.starts_at or now,
        ends_at=body.ends_at,
        comment=body.comment,
        created_by=actor,
        created_at=now,
    )
    if row.ends_at <= row.starts_at:
        raise RequestValidationError(
            [{"loc": ("body", "ends_at"), "msg": "must be after starts_at (now)", "type": "value"}]
        )
    session.add(row)
    session.flush()
    record(session, actor, f"{ENTITY}.create", ENTITY, str(row.id), None, snapshot(row, FIELDS))
    return row


def expire(session: Session, actor: str, silence_id: int) -> Silence:
    """Ends it now (kept for the record); one that ended already stays as it was."""
    row = get(session, silence_id)
    now = datetime.now(UTC)
    if _aware(row.ends_at) <= now:
        return row
    before = snapshot(row, FIELDS)
    row.ends_at = now
    if _aware(row.starts_at) > now:
        row.starts_at = now
    session.flush()
    record(session, actor, f"{ENTITY}.expire", ENTITY, str(row.id), before, snapshot(row, FIELDS))
    return row


def listing(
    session: Session, *, expired: bool, limit: int, offset: int
) -> tuple[list[Silence], int]:
    """In force or scheduled (``expired``: also those that ended), latest end first."""
    query = select(Silence)
    if not expired:
        query = query.where(Silence.ends_at > datetime.now(UTC))
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(
        query.order_by(Silence.ends_at.desc(), Silence.id.desc()).limit(limit).offset(offset)
    )
    return list(rows), total


def silencing(session: Session, alert: Alert, at: datetime | None = None) -> Silence | None:
    """A silence in force at ``at`` (default now) that matches the alert, if any."""
    at = at or datetime.now(UTC)
    query = select(Silence).where(
        Silence.starts_at <= at,
        Silence.ends_at > at,
        or_(Silence.centre.is_(None), Silence.centre == alert.centre),
        or_(Silence.device.is_(None), Silence.device == alert.device),
        or_(Silence.rule_id.is_(None), Silence.rule_id == alert.rule_id),
        or_(Silence.severity.is_(None), Silence.severity == alert.severity),
    )
    return session.scalars(query.limit(1)).first()
