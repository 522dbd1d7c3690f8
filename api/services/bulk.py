"""Bulk provisioning from CSV: all rows or none, with a report of every bad row.

Columns: ``centre_id, device_id, kind, model`` (required), ``serial,
firmware_version`` (optional) and, to roll out new centres in the same file,
``centre_name, hub_id, village, district, state, country, utc_offset_h,
pv_rated_w`` (a centre that does not exist yet is created from the first row
naming it; ``utc_offset_h`` defaults to 5.5, ``pv_rated_w`` to none).
"""

from __future__ import annotations

import csv
import io
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.db.models import Centre, Device
from api.errors import Unprocessable
from api.schemas import (
    BulkResult,
    CentreCreate,
    CentreKey,
    CredentialRow,
    DeviceCreate,
    GatewayCreate,
    Status,
)
from api.services.audit import record
from api.services.provisioning import Change, Provisioner
from contract.metrics import DeviceKind
from contract.provisioning import DynsecOp, encode_key

REQUIRED = ("centre_id", "device_id", "kind", "model")
OPTIONAL = (
    "serial",
    "firmware_version",
    "centre_name",
    "hub_id",
    "village",
    "district",
    "state",
    "country",
    "utc_offset_h",
    "pv_rated_w",
)
CSV_HEADER = ("centre_id", "device_id", "kind", "model", "username", "password", "centre_key")
"""The credentials sheet; ``centre_key`` is filled on gateway rows only."""


def _errors(row: int, exc: ValidationError) -> list[dict[str, Any]]:
    return [
        {"row": row, "field": ".".join(str(p) for p in e["loc"]) or "row", "message": e["msg"]}
        for e in exc.errors()
    ]


Parsed = tuple[
    list[tuple[int, DeviceCreate | GatewayCreate]], dict[str, CentreCreate], list[dict[str, Any]]
]


def parse(text: str, max_rows: int) -> Parsed:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        return _parse(reader, max_rows)
    except csv.Error as exc:
        raise Unprocessable(
            f"not a readable CSV at line {reader.line_num}: {exc}",
            field="body",
            rows=[{"row": reader.line_num, "field": "row", "message": str(exc)}],
        ) from exc


def _parse(reader: csv.DictReader[str], max_rows: int) -> Parsed:
    header = reader.fieldnames or []
    missing = [c for c in REQUIRED if c not in header]
    unknown = [c for c in header if c not in REQUIRED + OPTIONAL]
    if missing or unknown:
        raise Unprocessable(
            f"CSV header: missing {missing}, unknown {unknown}",
            field="header",
            rows=[{"row": 1, "field": "header", "message": "bad header"}],
        )
    devices: list[tuple[int, DeviceCreate | GatewayCreate]] = []
    centres: dict[str, CentreCreate] = {}
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()
    for number, raw in enumerate(reader, start=2):
        if number - 1 > max_rows:
            raise Unprocessable(f"more than {max_rows} rows", field="body")
        if None in raw:
            errors.append({"row": number, "field": "row", "message": "too many columns"})
            continue
        row = {k: (v.strip() if isinstance(v, str) else v) for k, v in raw.items()}
        clean = {k: v for k, v in row.items() if v not in ("", None)}
        common = {
            "id": clean.get("device_id", ""),
            "centre_id": clean.get("centre_id", ""),
            "model": clean.get("model", ""),
            "serial": clean.get("serial"),
            "firmware_version": clean.get("firmware_version"),
        }
        try:
            device: DeviceCreate | GatewayCreate
            if clean.get("kind") == DeviceKind.GATEWAY.value:
                device = GatewayCreate.model_validate(common)
            else:
                device = DeviceCreate.model_validate({**common, "kind": clean.get("kind", "")})
        except ValidationError as exc:
            errors += _errors(number, exc)
            continue
        if device.id in seen:
            errors.append({"row": number, "field": "device_id", "message": "duplicate in file"})
            continue
        seen.add(device.id)
        devices.append((number, device))
        if "centre_name" in clean and device.centre_id not in centres:
            try:
                facts = ("hub_id", "village", "district", "state", "country")
                centres[device.centre_id] = CentreCreate.model_validate(
                    {
                        "id": device.centre_id,
                        "name": clean["centre_name"],
                        **{k: clean.get(k) for k in facts},
                        **{k: clean[k] for k in ("utc_offset_h", "pv_rated_w") if k in clean},
                    }
                )
            except ValidationError as exc:
                errors += _errors(number, exc)
    return devices, centres, errors


def provision_csv(
    session: Session,
    provisioner: Provisioner,
    actor: str,
    text: str,
    *,
    key_version: int,
    max_rows: int,
) -> BulkResult:
    numbered, new_centres, errors = parse(text, max_rows)
    specs = [spec for _, spec in numbered]
    ids = [s.id for s in specs]
    existing: set[str] = set()
    for start in range(0, len(ids), 900):
        existing |= set(
            session.scalars(select(Device.id).where(Device.id.in_(ids[start : start + 900])))
        )
    centre_ids = {s.centre_id for s in specs}
    known = {c.id: c for c in session.scalars(select(Centre).where(Centre.id.in_(centre_ids)))}
    for centre_id in list(new_centres):
        if centre_id in known:
            del new_centres[centre_id]  # exists already: the row's centre columns are ignored
    row_of = {spec.id: number for number, spec in numbered}
    centre_row: dict[str, int] = {}
    for number, spec in numbered:
        centre_row.setdefault(spec.centre_id, number)
    for spec in specs:
        number = row_of.get(spec.id, 0)
        if spec.id in existing:
            errors.append({"row": number, "field": "device_id", "message": "exists already"})
        if spec.centre_id not in known and spec.centre_id not in new_centres:
            errors.append({"row": number, "field": "centre_id", "message": "unknown centre"})
    hub_ids = {c.hub_id for c in new_centres.values() if c.hub_id} - set(new_centres)
    hubs = {c.id: c for c in session.scalars(select(Centre).where(Centre.id.in_(hub_ids)))}
    for centre_spec in new_centres.values():
        hub_id = centre_spec.hub_id
        if not hub_id:
            continue
        hub = new_centres.get(hub_id) or hubs.get(hub_id)
        message = None
        if hub is None:
            message = "unknown hub centre"
        elif hub.hub_id is not None:
            message = f"{hub_id} is a spoke and cannot be a hub"
        if message is not None:
            errors.append(
                {"row": centre_row.get(centre_spec.id, 0), "field": "hub_id", "message": message}
            )
    if errors:
        errors.sort(key=lambda e: e["row"])
        raise Unprocessable(
            f"{len({e['row'] for e in errors})} bad row(s); nothing was provisioned",
            field="body",
            rows=errors[:1000],
        )
    centres = dict(known)
    for centre_spec in sorted(new_centres.values(), key=lambda c: c.hub_id is not None):
        centre = Centre(**centre_spec.model_dump(), key_version=key_version)
        session.add(centre)
        centres[centre.id] = centre
        record(session, actor, "centre.create", "centre", centre.id, None, centre_spec.model_dump())
    session.flush()
    rows: list[Device] = []
    for spec in specs:
        kind = spec.kind if isinstance(spec, DeviceCreate) else DeviceKind.GATEWAY.value
        device = Device(
            **spec.model_dump(exclude={"kind"}),
            kind=kind,
            status=Status.PROVISIONED.value,
            credential_version=1,
            dynsec_seq=0,
            online=False,
        )
        session.add(device)
        rows.append(device)
    session.flush()
    # Gateways first: the updates for the devices then reach new gateways too.
    rows.sort(key=lambda d: d.kind != DeviceKind.GATEWAY)
    try:
        provisioner.apply(session, [Change(DynsecOp.UPSERT, d) for d in rows], centres)
    except Exception:
        provisioner.undo(rows)
        raise
    for device in rows:
        record(
            session,
            actor,
            "device.provision",
            "device",
            device.id,
            None,
            {"centre_id": device.centre_id, "kind": device.kind, "model": device.model},
        )
    credentials, keys = [], []
    for device in rows:
        credentials.append(provisioner.credential_row(centres[device.centre_id], device))
        if device.kind == DeviceKind.GATEWAY:
            keys.append(
                CentreKey(
                    centre_id=device.centre_id,
                    gateway_id=device.id,
                    centre_key=encode_key(provisioner.centre_key(centres[device.centre_id])),
                )
            )
    return BulkResult(
        created_centres=len(new_centres),
        created_devices=len(rows),
        credentials=credentials,
        centre_keys=keys,
    )


def credentials_csv(rows: list[CredentialRow], keys: list[CentreKey]) -> str:
    """The sheet: one row per device, the centre key on its gateway's row."""
    key_of = {(k.centre_id, k.gateway_id): k.centre_key for k in keys}
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for row in rows:
        key = key_of.get((row.centre_id, row.device_id), "")
        writer.writerow([getattr(row, name) for name in CSV_HEADER[:-1]] + [key])
    return out.getvalue()
