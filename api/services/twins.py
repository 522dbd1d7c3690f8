"""Device twins: the desired configuration (ours, versioned) and what the device reported.

``PUT desired`` replaces the whole desired configuration (checked against the
kind's schema, :mod:`contract.commands`), raises its version by one and
publishes it retained on ``twin/desired``: a device that is offline gets it
when it subscribes again. The device's retained ``twin/reported`` is stored as
it comes (:func:`store_reported`). The difference lists every desired key whose
reported value is missing or not equal; a twin is applied when the reported
version reached the desired one and there is no difference.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.command_schemas import Difference, NotApplied, TwinPublic, TwinSide
from api.db.models import Centre, Device, DeviceTwin
from api.errors import Unprocessable
from api.services.audit import record
from contract.commands import CatalogueError, check_config
from contract.messages import Twin


class TwinPublisher(Protocol):
    def publish_twin(self, centre: str, device: str, twin: Twin) -> None:
        """QoS 1, retained, on the device's ``twin/desired`` topic."""


def set_desired(
    session: Session,
    publisher: TwinPublisher,
    actor: str,
    device: Device,
    config: dict[str, Any],
) -> DeviceTwin:
    try:
        clean = check_config(device.kind, config)
    except CatalogueError as exc:
        field = f"body.{exc.field}"
        raise Unprocessable(
            f"{field}: {exc.message}",
            field=field,
            errors=[{"field": field, "message": exc.message}],
        ) from None
    twin = session.get(DeviceTwin, device.id)
    if twin is None:
        twin = DeviceTwin(device_id=device.id, centre_id=device.centre_id, desired_version=0)
        session.add(twin)
    before = {"version": twin.desired_version, "config": twin.desired}
    twin.desired = clean
    twin.desired_version = (twin.desired_version or 0) + 1
    twin.desired_at = datetime.now(UTC)
    twin.desired_by = actor
    record(
        session,
        actor,
        "twin.desired",
        "device",
        device.id,
        before,
        {"version": twin.desired_version, "config": clean},
    )
    session.flush()
    publisher.publish_twin(
        device.centre_id, device.id, Twin(version=twin.desired_version, config=clean)
    )
    session.commit()
    return twin


def store_reported(session: Session, centre: str, device_id: str, reported: Twin) -> bool:
    """Keep a device's report; False for a device the registry does not have there."""
    device = session.get(Device, device_id)
    if device is None or device.centre_id != centre:
        return False
    twin = session.get(DeviceTwin, device_id)
    if twin is None:
        twin = DeviceTwin(device_id=device_id, centre_id=centre, desired_version=0)
        session.add(twin)
    twin.reported = dict(reported.config)
    twin.reported_version = reported.version
    twin.reported_at = datetime.now(UTC)
    return True


def difference(twin: DeviceTwin) -> dict[str, Difference]:
    desired, reported = twin.desired or {}, twin.reported or {}
    return {
        key: Difference(desired=value, reported=reported.get(key))
        for key, value in desired.items()
        if key not in reported or reported[key] != value
    }


def applied(twin: DeviceTwin, diff: dict[str, Difference]) -> bool:
    if twin.desired is None:
        return True
    return (twin.reported_version or 0) >= twin.desired_version and not diff


def view(session: Session, device: Device) -> TwinPublic:
    twin = session.get(DeviceTwin, device.id)
    if twin is None:
        return TwinPublic(
            device_id=device.id,
            centre_id=device.centre_id,
            desired=None,
            reported=None,
            difference={},
            applied=True,
        )
    diff = difference(twin)
    desired = (
        TwinSide(
            version=twin.desired_version,
            config=twin.desired,
            at=twin.desired_at,
            by=twin.desired_by,
        )
        if twin.desired is not None
        else None
    )
    reported = (
        TwinSide(version=twin.reported_version or 0, config=twin.reported, at=twin.reported_at)
        if twin.reported is not None
        else None
    )
    return TwinPublic(
        device_id=device.id,
        centre_id=device.centre_id,
        desired=desired,
        reported=reported,
        difference=diff,
        applied=applied(twin, diff),
    )


def not_applied(
    session: Session, *, centre_id: str | None, district: str | None, limit: int, offset: int
) -> tuple[list[NotApplied], int]:
    """Devices whose reported configuration is not the current desired one."""
    query = select(DeviceTwin).where(DeviceTwin.desired.is_not(None))
    if centre_id is not None:
        query = query.where(DeviceTwin.centre_id == centre_id)
    if district is not None:
        query = query.join(Centre, Centre.id == DeviceTwin.centre_id).where(
            Centre.district == district
        )
    found: list[NotApplied] = []
    for twin in session.scalars(query.order_by(DeviceTwin.centre_id, DeviceTwin.device_id)):
        diff = difference(twin)
        if not applied(twin, diff):
            found.append(
                NotApplied(
                    device_id=twin.device_id,
                    centre_id=twin.centre_id,
                    desired_version=twin.desired_version,
                    reported_version=twin.reported_version,
                    difference=diff,
                )
            )
    return found[offset : offset + limit], len(found)
