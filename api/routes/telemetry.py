"""``/v1/devices/{id}/telemetry``: readings from InfluxDB (what ingest wrote)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query

from api.db.models import Device
from api.deps import DB, Parts, Reader
from api.errors import NotFound
from api.routes.devices import DeviceId
from api.schemas import TelemetryAnswer
from api.telemetry import WINDOW_RE
from contract.metrics import DeviceKind, measurement_for

router = APIRouter(prefix="/v1/devices", tags=["telemetry"])
FieldName = Annotated[str, Query(pattern=r"^[a-z][a-z0-9_]{0,63}$")]


def _device(session: DB, device_id: str) -> Device:
    device = session.get(Device, device_id)
    if device is None:
        raise NotFound(f"device {device_id} not found")
    return device


@router.get("/{device_id}/telemetry/latest", summary="The newest reading of a device")
def latest(session: DB, parts: Parts, _who: Reader, device_id: DeviceId) -> TelemetryAnswer:
    device = _device(session, device_id)
    kind = DeviceKind(device.kind)
    readings = parts.telemetry.latest(device.centre_id, device.id, kind)
    return TelemetryAnswer(
        device_id=device.id,
        centre_id=device.centre_id,
        measurement=measurement_for(kind).value,
        readings=readings,
    )


@router.get(
    "/{device_id}/telemetry",
    summary="Readings in [start, end), raw or aggregated per window (at most 10,000 points)",
)
def between(
    session: DB,
    parts: Parts,
    _who: Reader,
    device_id: DeviceId,
    start: datetime,
    end: datetime,
    window: Annotated[
        str | None, Query(pattern=f"^{WINDOW_RE.pattern}$", examples=["5m", "1h"])
    ] = None,
    fn: Literal["mean", "min", "max", "sum", "count", "last"] = "mean",
    field: Annotated[list[FieldName] | None, Query(max_length=32)] = None,
) -> TelemetryAnswer:
    device = _device(session, device_id)
    kind = DeviceKind(device.kind)
    readings = parts.telemetry.between(
        device.centre_id,
        device.id,
        kind,
        _ns(start),
        _ns(end),
        window=window,
        function=fn,
        fields=field,
    )
    return TelemetryAnswer(
        device_id=device.id,
        centre_id=device.centre_id,
        measurement=measurement_for(kind).value,
        window=window,
        readings=readings,
    )


def _ns(moment: datetime) -> int:
    if moment.tzinfo is None:
        from api.errors import Unprocessable

        raise Unprocessable("times need a time zone (e.g. ...Z)", field="query.start")
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1_000
