"""Commands to devices: send, follow acknowledgements, expire, send to many by a filter.

A command is validated against its device kind's catalogue
(:mod:`contract.commands`), written as ``pending``, committed, and only then
published (so an acknowledgement never arrives before its row exists). Its
``expires`` travels in the message and as the MQTT v5 message expiry
(:class:`Publisher`). Acknowledgements move it on: ``accepted``/``in_progress``
→ delivered, ``done`` → succeeded, ``failed`` → failed (``expired`` when the
device says it came too late). The sweep marks ``pending`` commands past their
expiry ``expired``; an acknowledgement that still arrives afterwards (an ack
held in a gateway's outbox while its uplink was down) wins over the sweep's
presumption. A batch's commands wait unsent (``sent_at`` empty) and are
published by :func:`dispatch` at a bounded rate. The campaign runner makes its
``ota`` commands with :func:`create` and :func:`publish` too, so they are in
the device's history like any other.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from api.command_schemas import (
    FINAL,
    BatchCreate,
    BatchPublic,
    CommandCreate,
    CommandState,
    DeviceFilter,
)
from api.db.models import Centre, CommandBatch, CommandRow, Device
from api.errors import Conflict, NotFound, Unprocessable
from api.services.audit import record
from contract.commands import CatalogueError, check_command
from contract.messages import Command, CommandAck
from contract.metrics import DeviceKind

SWEPT = "not acknowledged before it expired"


class Publisher(Protocol):
    """Where commands go (the API's broker link)."""

    def publish_command(self, centre: str, device: str, command: Command, expiry_s: int) -> None:
        """QoS 1 on the device's ``cmd`` topic with the MQTT v5 message expiry ``expiry_s``."""


def aware(value: datetime) -> datetime:
    """SQLite gives datetimes back without their zone; every stored one is UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _args(kind: str, name: str, args: Mapping[str, Any]) -> dict[str, Any]:
    try:
        return check_command(kind, name, args)
    except CatalogueError as exc:
        field = f"body.{exc.field}"
        raise Unprocessable(
            f"{field}: {exc.message}",
            field=field,
            errors=[{"field": field, "message": exc.message}],
        ) from None


def publish(publisher: Publisher, row: CommandRow, now: datetime) -> bool:
    """Publish ``row`` if it has time left; False when it expired before its turn."""
    expires = aware(row.expires_at)
    remaining = (expires - now).total_seconds()
    if remaining <= 0:
        return False
    message = Command(
        id=row.id, name=row.name, args=row.args, expires=int(expires.timestamp() * 1000)
    )
    publisher.publish_command(row.centre_id, row.device_id, message, math.ceil(remaining))
    row.sent_at = now
    return True


def create(
    session: Session,
    actor: str,
    device: Device,
    name: str,
    args: Mapping[str, Any],
    expires_at: datetime,
    *,
    command_id: str | None = None,
    audit: Mapping[str, Any] | None = None,
) -> CommandRow:
    """A ``pending`` command for ``device``, checked against its kind's catalogue and
    audited (``command.send``); not committed, not published (the caller commits,
    then :func:`publish`, so an acknowledgement never arrives before its row)."""
    if device.status == "decommissioned":
        raise Conflict(f"device {device.id} is decommissioned")
    checked = _args(device.kind, name, args)
    row = CommandRow(
        id=command_id or uuid.uuid4().hex,
        device_id=device.id,
        centre_id=device.centre_id,
        kind=device.kind,
        name=name,
        args=checked,
        status=CommandState.PENDING.value,
        actor=actor,
        created_at=datetime.now(UTC),
        expires_at=expires_at,
    )
    session.add(row)
    after = {"command": row.id, "name": name, "args": checked, **(audit or {})}
    record(session, actor, "command.send", "device", device.id, None, after)
    return row


def send(
    session: Session,
    publisher: Publisher,
    actor: str,
    device: Device,
    body: CommandCreate,
    default_expiry_s: int,
) -> CommandRow:
    now = datetime.now(UTC)
    expires = now + timedelta(seconds=body.expires_in_s or default_expiry_s)
    row = create(session, actor, device, body.name, body.args, expires)
    session.commit()
    publish(publisher, row, now)
    session.commit()
    return row


def get(session: Session, command_id: str) -> CommandRow:
    row = session.get(CommandRow, command_id)
    if row is None:
        raise NotFound(f"command {command_id} not found")
    return row


def history(
    session: Session,
    device_id: str,
    *,
    name: str | None,
    status: CommandState | None,
    since: datetime | None,
    limit: int,
    offset: int,
) -> tuple[list[CommandRow], int]:
    query = select(CommandRow).where(CommandRow.device_id == device_id)
    if name is not None:
        query = query.where(CommandRow.name == name)
    if status is not None:
        query = query.where(CommandRow.status == status.value)
    if since is not None:
        query = query.where(CommandRow.created_at >= since)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(
        query.order_by(CommandRow.created_at.desc(), CommandRow.id).limit(limit).offset(offset)
    )
    return list(rows), total


# -- acknowledgements and expiry (the API's broker worker) --------------------------------------
def apply_ack(session: Session, centre: str, device: str, ack: CommandAck) -> bool:
    """Move a command on from its device's acknowledgement; False if no such command."""
    row = session.get(CommandRow, ack.id)
    if row is None or row.device_id != device or row.centre_id != centre:
        return False
    state = CommandState(row.status)
    if state in FINAL and not (state == CommandState.EXPIRED and row.detail == SWEPT):
        return True  # final; a late copy changes nothing
    now = datetime.now(UTC)
    if ack.status in ("accepted", "in_progress"):
        row.status = CommandState.DELIVERED.value
        row.delivered_at = row.delivered_at or now
        row.finished_at = None
        if ack.progress_pct is not None:
            row.progress_pct = ack.progress_pct
    else:
        expired = ack.status == "failed" and ack.detail == "expired"
        row.status = (
            CommandState.SUCCEEDED
            if ack.status == "done"
            else CommandState.EXPIRED
            if expired
            else CommandState.FAILED
        ).value
        if not expired:
            row.delivered_at = row.delivered_at or now
        if ack.status == "done":
            row.progress_pct = 100.0 if row.progress_pct is not None else None
        row.finished_at = now
    if ack.detail is not None:
        row.detail = ack.detail
    return True


def sweep(session: Session, now: datetime) -> int:
    """Mark pending commands past their expiry ``expired``; how many."""
    result = session.execute(
        update(CommandRow)
        .where(CommandRow.status == CommandState.PENDING.value, CommandRow.expires_at <= now)
        .values(status=CommandState.EXPIRED.value, finished_at=now, detail=SWEPT)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def dispatch(session: Session, publisher: Publisher, budget: int, now: datetime) -> int:
    """Publish up to ``budget`` waiting batch commands, oldest first; how many."""
    if budget <= 0:
        return 0
    rows = session.scalars(
        select(CommandRow)
        .where(
            CommandRow.status == CommandState.PENDING.value,
            CommandRow.sent_at.is_(None),
            CommandRow.batch_id.is_not(None),
            CommandRow.expires_at > now,
        )
        .order_by(CommandRow.created_at, CommandRow.id)
        .limit(budget)
    )
    sent = 0
    for row in rows:
        sent += publish(publisher, row, now)
    return sent


# -- batches ------------------------------------------------------------------------------------
def _matching(session: Session, spec: DeviceFilter) -> list[Device]:
    query = select(Device).where(
        Device.kind != DeviceKind.GATEWAY.value, Device.status != "decommissioned"
    )
    if spec.hub_id is not None or spec.district is not None:
        query = query.join(Centre, Centre.id == Device.centre_id)
    if spec.hub_id is not None:
        query = query.where((Centre.id == spec.hub_id) | (Centre.hub_id == spec.hub_id))
    if spec.district is not None:
        query = query.where(Centre.district == spec.district)
    for column, value in (
        (Device.kind, spec.kind),
        (Device.model, spec.model),
        (Device.centre_id, spec.centre_id),
        (Device.status, spec.status.value if spec.status else None),
    ):
        if value is not None:
            query = query.where(column == value)
    return list(session.scalars(query.order_by(Device.centre_id, Device.id)))


def send_batch(
    session: Session, actor: str, body: BatchCreate, default_expiry_s: int
) -> CommandBatch:
    """Commands for every matching device, left for :func:`dispatch` to publish."""
    targets = _matching(session, body.filter)
    now = datetime.now(UTC)
    expires = now + timedelta(seconds=body.expires_in_s or default_expiry_s)
    checked: dict[str, dict[str, Any] | None] = {}
    batch_id = uuid.uuid4().hex
    rows: list[CommandRow] = []
    skipped = 0
    for device in targets:
        if device.kind not in checked:
            try:
                checked[device.kind] = check_command(device.kind, body.name, body.args)
            except CatalogueError as exc:
                if exc.field != "name":  # bad arguments are the caller's fault for every kind
                    _args(device.kind, body.name, body.args)
                checked[device.kind] = None
        args = checked[device.kind]
        if args is None:
            skipped += 1
            continue
        rows.append(
            CommandRow(
                id=uuid.uuid4().hex,
                device_id=device.id,
                centre_id=device.centre_id,
                kind=device.kind,
                name=body.name,
                args=args,
                status=CommandState.PENDING.value,
                batch_id=batch_id,
                actor=actor,
                created_at=now,
                expires_at=expires,
            )
        )
    if not rows:
        names = "no device matches the filter" if not targets else "no matching device takes it"
        raise Unprocessable(
            f"body.name: {names}",
            field="body.name" if targets else "body.filter",
            errors=[{"field": "body.name" if targets else "body.filter", "message": names}],
        )
    batch = CommandBatch(
        id=batch_id,
        name=body.name,
        args=body.args,
        filter=body.filter.model_dump(mode="json", exclude_none=True),
        actor=actor,
        total=len(rows),
        skipped=skipped,
        created_at=now,
        expires_at=expires,
    )
    session.add(batch)
    session.add_all(rows)
    record(
        session,
        actor,
        "command.batch",
        "command_batch",
        batch_id,
        None,
        {"name": body.name, "args": body.args, "filter": batch.filter, "total": len(rows)},
    )
    return batch


def batch_view(session: Session, batch_id: str) -> BatchPublic:
    batch = session.get(CommandBatch, batch_id)
    if batch is None:
        raise NotFound(f"command batch {batch_id} not found")
    counts = {state: 0 for state in CommandState}
    for status, count in session.execute(
        select(CommandRow.status, func.count())
        .where(CommandRow.batch_id == batch_id)
        .group_by(CommandRow.status)
    ):
        counts[CommandState(status)] = count
    waiting = (
        session.scalar(
            select(func.count()).where(
                CommandRow.batch_id == batch_id,
                CommandRow.sent_at.is_(None),
                CommandRow.status == CommandState.PENDING.value,
            )
        )
        or 0
    )
    return BatchPublic(
        id=batch.id,
        name=batch.name,
        args=batch.args,
        filter=batch.filter,
        actor=batch.actor,
        created_at=batch.created_at,
        expires_at=batch.expires_at,
        total=batch.total,
        skipped=batch.skipped,
        waiting=waiting,
        counts=counts,
        done=sum(counts[s] for s in FINAL) == batch.total,
    )
