"""Firmware files: upload (stored, hashed), list, get, delete; all audited."""

from __future__ import annotations

from typing import BinaryIO

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.db.models import Campaign, Firmware
from api.errors import ApiError, Conflict, NotFound
from api.firmware_store import FirmwareStore, FirmwareTooLarge
from api.services.audit import record, snapshot

FIELDS = ("id", "kind", "model", "version", "filename", "sha256", "size")


class TooLarge(ApiError):
    status = 413
    title = "Content Too Large"


def upload(
    session: Session,
    store: FirmwareStore,
    actor: str,
    *,
    kind: str,
    model: str,
    version: str,
    filename: str,
    source: BinaryIO,
) -> Firmware:
    exists = session.scalar(
        select(Firmware.id).where(
            Firmware.kind == kind, Firmware.model == model, Firmware.version == version
        )
    )
    if exists is not None:
        raise Conflict(f"firmware {kind}/{model} {version} exists already (id {exists})")
    row = Firmware(
        kind=kind,
        model=model,
        version=version,
        filename=filename[:128] or "firmware.bin",
        sha256="",
        size=0,
        created_by=actor,
    )
    session.add(row)
    session.flush()
    try:
        row.sha256, row.size = store.save(row.id, source)
    except FirmwareTooLarge as exc:
        raise TooLarge(str(exc)) from exc
    record(session, actor, "firmware.upload", "firmware", str(row.id), None, snapshot(row, FIELDS))
    return row


def get(session: Session, firmware_id: int) -> Firmware:
    row = session.get(Firmware, firmware_id)
    if row is None:
        raise NotFound(f"no firmware {firmware_id}")
    return row


def listing(
    session: Session, kind: str | None, model: str | None, limit: int, offset: int
) -> tuple[list[Firmware], int]:
    query = select(Firmware)
    if kind is not None:
        query = query.where(Firmware.kind == kind)
    if model is not None:
        query = query.where(Firmware.model == model)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(Firmware.id.desc()).limit(limit).offset(offset))
    return list(rows), total


def delete(session: Session, store: FirmwareStore, actor: str, firmware_id: int) -> None:
    row = get(session, firmware_id)
    used = session.scalar(select(func.count()).where(Campaign.firmware_id == firmware_id))
    if used:
        raise Conflict(f"firmware {firmware_id} is used by {used} campaign(s)")
    before = snapshot(row, FIELDS)
    session.delete(row)
    record(session, actor, "firmware.delete", "firmware", str(firmware_id), before, None)
    session.flush()
    store.delete(firmware_id)
