"""Devices and gateways: provisioning, rotation, suspend/resume/decommission.

Every change is written to the registry and the audit log in one transaction that
commits only after the central broker applied it and the centre's gateways
were sent it (the broker acknowledged the downlink messages).
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.db.models import Centre, Device
from api.errors import Conflict, NotFound, Unprocessable
from api.schemas import Credentials, DeviceCreate, DeviceUpdate, GatewayCreate, Status
from api.services.audit import record, snapshot
from api.services.provisioning import Change, Provisioner
from contract.metrics import DeviceKind
from contract.provisioning import DynsecOp

FIELDS = (
    "id",
    "centre_id",
    "kind",
    "model",
    "serial",
    "firmware_version",
    "status",
    "credential_version",
)
TRANSITIONS: dict[str, tuple[frozenset[str], Status, DynsecOp]] = {
    "suspend": (frozenset({"provisioned", "active"}), Status.SUSPENDED, DynsecOp.DISABLE),
    "resume": (frozenset({"suspended"}), Status.ACTIVE, DynsecOp.ENABLE),
    "decommission": (
        frozenset({"provisioned", "active", "suspended"}),
        Status.DECOMMISSIONED,
        DynsecOp.DISABLE,
    ),
}


def entity(kind: str) -> str:
    return "gateway" if kind == DeviceKind.GATEWAY else "device"


def get(session: Session, device_id: str, *, gateway: bool) -> Device:
    device = session.get(Device, device_id)
    if device is None or (device.kind == DeviceKind.GATEWAY) != gateway:
        raise NotFound(f"{'gateway' if gateway else 'device'} {device_id} not found")
    return device


def provision(
    session: Session,
    provisioner: Provisioner,
    actor: str,
    body: DeviceCreate | GatewayCreate,
) -> tuple[Device, Credentials]:
    centre = session.get(Centre, body.centre_id)
    if centre is None:
        raise Unprocessable(f"centre {body.centre_id} not found", field="body.centre_id")
    if session.get(Device, body.id) is not None:
        raise Conflict(f"a device or gateway {body.id} exists already")
    kind = body.kind if isinstance(body, DeviceCreate) else DeviceKind.GATEWAY.value
    data = body.model_dump(exclude={"kind"})
    device = Device(
        **data,
        kind=kind,
        status=Status.PROVISIONED.value,
        credential_version=1,
        dynsec_seq=0,
        online=False,
    )
    session.add(device)
    session.flush()
    try:
        provisioner.apply(session, [Change(DynsecOp.UPSERT, device)], {centre.id: centre})
        if kind == DeviceKind.GATEWAY:
            provisioner.seed_gateway(session, device)
    except Exception:
        provisioner.undo([device])
        raise
    record(
        session,
        actor,
        f"{entity(kind)}.provision",
        entity(kind),
        device.id,
        None,
        snapshot(device, FIELDS),
    )
    return device, provisioner.credentials(centre, device)


def update(session: Session, actor: str, device: Device, body: DeviceUpdate) -> Device:
    before = snapshot(device, FIELDS)
    for name, value in body.model_dump(exclude_unset=True).items():
        if name == "model" and value is None:
            raise Unprocessable("model cannot be null", field="body.model")
        setattr(device, name, value)
    session.flush()
    record(
        session,
        actor,
        f"{entity(device.kind)}.update",
        entity(device.kind),
        device.id,
        before,
        snapshot(device, FIELDS),
    )
    return device


def rotate(session: Session, provisioner: Provisioner, actor: str, device: Device) -> Credentials:
    if device.status == Status.DECOMMISSIONED:
        raise Conflict(f"{device.id} is decommissioned")
    before = snapshot(device, FIELDS)
    device.credential_version += 1
    session.flush()
    centre = session.get(Centre, device.centre_id)
    assert centre is not None
    try:
        provisioner.apply(session, [Change(DynsecOp.UPSERT, device)], {centre.id: centre})
    except Exception:
        provisioner.restore_central(session, centre.id, [device.id])
        raise
    record(
        session,
        actor,
        f"{entity(device.kind)}.rotate",
        entity(device.kind),
        device.id,
        before,
        snapshot(device, FIELDS),
    )
    return provisioner.credentials(centre, device)


def transition(
    session: Session, provisioner: Provisioner, actor: str, device: Device, action: str
) -> Device:
    allowed, target, op = TRANSITIONS[action]
    if device.status not in allowed:
        raise Conflict(f"cannot {action} {device.id} while it is {device.status}")
    before = snapshot(device, FIELDS)
    device.status = target.value
    if target is not Status.ACTIVE:
        device.online = False
    session.flush()
    provisioner.apply(session, [Change(op, device)], {})
    record(
        session,
        actor,
        f"{entity(device.kind)}.{action}",
        entity(device.kind),
        device.id,
        before,
        snapshot(device, FIELDS),
    )
    return device


def listing(
    session: Session,
    *,
    gateway: bool,
    centre_id: str | None,
    kind: str | None,
    status: str | None,
    model: str | None,
    online: bool | None,
    limit: int,
    offset: int,
) -> tuple[list[Device], int]:
    query = select(Device)
    if gateway:
        query = query.where(Device.kind == DeviceKind.GATEWAY.value)
    else:
        query = query.where(Device.kind != DeviceKind.GATEWAY.value)
    for column, value in (
        (Device.centre_id, centre_id),
        (Device.kind, kind),
        (Device.status, status),
        (Device.model, model),
        (Device.online, online),
    ):
        if value is not None:
            query = query.where(column == value)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(Device.id).limit(limit).offset(offset))
    return list(rows), total
