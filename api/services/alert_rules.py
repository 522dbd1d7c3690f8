"""Alert rules: stored as their validated ``RuleSpec`` JSON; every change audited.

The row's ``name``, ``severity`` and ``enabled`` columns mirror the spec (for
filtering); ``version`` goes up with every change, so the engine knows to
reload. Disabling or deleting a rule resolves its open alerts (actor: who
did it) and drops the engine's state of it.
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime
from typing import Any

from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from alerting.rules import RuleSpec
from api.alert_schemas import RulePatch, RulePublic
from api.db.models import AlertRule
from api.errors import Conflict, NotFound
from api.services.alert_actions import close_rule
from api.services.audit import record

ENTITY = "alert_rule"


def spec_json(spec: RuleSpec) -> dict[str, Any]:
    """What ``AlertRule.spec`` holds: the RuleSpec as JSON, by alias (``for``, ``per``)."""
    return spec.model_dump(mode="json", by_alias=True, include=set(RuleSpec.model_fields))


def spec_of(row: AlertRule) -> RuleSpec:
    return RuleSpec.model_validate(row.spec)


def slug(name: str) -> str:
    """``Battery low!`` -> ``battery-low-3f9a1c``: readable, and unique in practice."""
    base = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40].strip("-") or "rule"
    return f"{base}-{secrets.token_hex(3)}"


def _snapshot(row: AlertRule) -> dict[str, Any]:
    return {"id": row.id, "version": row.version, "pack_key": row.pack_key, "spec": row.spec}


def public(row: AlertRule) -> RulePublic:
    return RulePublic.model_validate(
        {
            **row.spec,
            "id": row.id,
            "version": row.version,
            "pack_key": row.pack_key,
            "created_at": row.created_at,
            "updated_at": row.updated_at,
        }
    )


def get(session: Session, rule_id: str) -> AlertRule:
    row = session.get(AlertRule, rule_id)
    if row is None:
        raise NotFound(f"alert rule {rule_id} not found")
    return row


def create(
    session: Session, actor: str, body: RuleSpec, rule_id: str | None, pack_key: str | None = None
) -> AlertRule:
    if rule_id is None:
        rule_id = slug(body.name)
    elif session.get(AlertRule, rule_id) is not None:
        raise Conflict(f"alert rule {rule_id} exists already")
    spec = spec_json(body)
    now = datetime.now(UTC)
    row = AlertRule(
        id=rule_id,
        name=body.name,
        severity=body.severity.value,
        enabled=body.enabled,
        spec=spec,
        version=1,
        pack_key=pack_key,
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    session.flush()
    record(session, actor, f"{ENTITY}.create", ENTITY, row.id, None, _snapshot(row))
    return row


def _store(session: Session, actor: str, row: AlertRule, spec: RuleSpec, action: str) -> None:
    before = _snapshot(row)
    was_enabled = row.enabled
    row.spec = spec_json(spec)
    row.name = spec.name
    row.severity = spec.severity.value
    row.enabled = spec.enabled
    row.version += 1
    row.updated_at = datetime.now(UTC)
    if was_enabled and not row.enabled:
        close_rule(session, actor, row.id, "rule disabled")
    session.flush()
    record(session, actor, f"{ENTITY}.{action}", ENTITY, row.id, before, _snapshot(row))


def replace(session: Session, actor: str, rule_id: str, spec: RuleSpec) -> AlertRule:
    row = get(session, rule_id)
    _store(session, actor, row, spec, "update")
    return row


def patch(session: Session, actor: str, rule_id: str, body: RulePatch) -> AlertRule:
    row = get(session, rule_id)
    changes = body.model_dump(exclude_unset=True, by_alias=True)
    for name in ("name", "severity", "scope", "condition", "enabled", "edge"):
        if name in changes and changes[name] is None:
            raise RequestValidationError(
                [{"loc": ("body", name), "msg": "cannot be null", "type": "value_error"}]
            )
    try:
        spec = RuleSpec.model_validate({**row.spec, **changes})
    except ValidationError as exc:  # the parts together (each was valid alone)
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]
        ) from exc
    _store(session, actor, row, spec, "update")
    return row


def set_enabled(session: Session, actor: str, rule_id: str, enabled: bool) -> AlertRule:
    row = get(session, rule_id)
    if row.enabled == enabled:
        return row
    spec = spec_of(row).model_copy(update={"enabled": enabled})
    _store(session, actor, row, spec, "enable" if enabled else "disable")
    return row


def delete(session: Session, actor: str, rule_id: str) -> None:
    row = get(session, rule_id)
    before = _snapshot(row)
    close_rule(session, actor, rule_id, "rule deleted")
    session.delete(row)
    session.flush()
    record(session, actor, f"{ENTITY}.delete", ENTITY, rule_id, before, None)


def listing(
    session: Session,
    *,
    enabled: bool | None,
    severity: str | None,
    condition_type: str | None,
    clinical: bool | None,
    limit: int,
    offset: int,
) -> tuple[list[AlertRule], int]:
    """Rules by id; the condition filters apply to the spec (rules are tens, not millions)."""
    query = select(AlertRule)
    if enabled is not None:
        query = query.where(AlertRule.enabled.is_(enabled))
    if severity is not None:
        query = query.where(AlertRule.severity == severity)
    if condition_type is None and clinical is None:
        total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
        rows = session.scalars(query.order_by(AlertRule.id).limit(limit).offset(offset))
        return list(rows), total
    matching = [
        row
        for row in session.scalars(query.order_by(AlertRule.id))
        if _type(row) == (condition_type or _type(row))
        and (clinical is None or (_type(row) == "clinical") == clinical)
    ]
    return matching[offset : offset + limit], len(matching)


def _type(row: AlertRule) -> str:
    return str(row.spec.get("condition", {}).get("type", ""))
