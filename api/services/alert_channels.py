"""Notification channels (webhooks): CRUD; the secret is write-only.

A secret not given is generated and returned once, at creation. The audit log
records every change without the secret (``secret_changed`` says when it was
replaced). Deleting a channel marks its queued notifications failed
("channel deleted"): visible in the alert's delivery log, never silently dropped.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from fastapi.exceptions import RequestValidationError
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from alerting.rules import Scope, ScopeKind
from api.alert_schemas import ChannelCreate, ChannelCreated, ChannelPublic, ChannelUpdate
from api.db.models import Notification, NotificationChannel
from api.errors import NotFound
from api.services.audit import record

ENTITY = "notification_channel"
FIELDS = ("id", "name", "type", "url", "scope_kind", "scope_value", "min_severity", "enabled")


def _snapshot(row: NotificationChannel) -> dict[str, Any]:
    return {name: getattr(row, name) for name in FIELDS}


def public(row: NotificationChannel) -> ChannelPublic:
    return ChannelPublic(
        id=row.id,
        name=row.name,
        type="webhook",
        url=row.url,
        scope=Scope(kind=ScopeKind(row.scope_kind), value=row.scope_value),
        min_severity=row.min_severity,  # type: ignore[arg-type]
        enabled=row.enabled,
        created_at=row.created_at,
    )


def get(session: Session, channel_id: int) -> NotificationChannel:
    row = session.get(NotificationChannel, channel_id)
    if row is None:
        raise NotFound(f"notification channel {channel_id} not found")
    return row


def create(session: Session, actor: str, body: ChannelCreate) -> ChannelCreated:
    secret = body.secret or secrets.token_urlsafe(32)
    row = NotificationChannel(
        name=body.name,
        type="webhook",
        url=str(body.url),
        secret=secret,
        scope_kind=body.scope.kind.value,
        scope_value=body.scope.value,
        min_severity=body.min_severity.value,
        enabled=body.enabled,
        created_at=datetime.now(UTC),
    )
    session.add(row)
    session.flush()
    record(session, actor, f"{ENTITY}.create", ENTITY, str(row.id), None, _snapshot(row))
    return ChannelCreated(**public(row).model_dump(), secret=secret)


def update_channel(
    session: Session, actor: str, channel_id: int, body: ChannelUpdate
) -> NotificationChannel:
    row = get(session, channel_id)
    before = _snapshot(row)
    changes = body.model_dump(exclude_unset=True)
    for name, value in changes.items():
        if value is None:
            raise RequestValidationError(
                [{"loc": ("body", name), "msg": "cannot be null", "type": "value_error"}]
            )
    if body.name is not None:
        row.name = body.name
    if body.url is not None:
        row.url = str(body.url)
    if body.scope is not None:
        row.scope_kind, row.scope_value = body.scope.kind.value, body.scope.value
    if body.min_severity is not None:
        row.min_severity = body.min_severity.value
    if body.enabled is not None:
        row.enabled = body.enabled
    if body.secret is not None:
        row.secret = body.secret
    session.flush()
    after = {**_snapshot(row), "secret_changed": body.secret is not None}
    record(session, actor, f"{ENTITY}.update", ENTITY, str(row.id), before, after)
    return row


def delete(session: Session, actor: str, channel_id: int) -> None:
    row = get(session, channel_id)
    before = _snapshot(row)
    session.execute(
        update(Notification)
        .where(Notification.channel_id == channel_id, Notification.status == "queued")
        .values(status="failed", last_error="channel deleted")
    )
    session.delete(row)
    session.flush()
    record(session, actor, f"{ENTITY}.delete", ENTITY, str(channel_id), before, None)


def listing(session: Session, *, limit: int, offset: int) -> tuple[list[NotificationChannel], int]:
    query = select(NotificationChannel)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(NotificationChannel.id).limit(limit).offset(offset))
    return list(rows), total
