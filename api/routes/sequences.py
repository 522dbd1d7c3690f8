"""Sequence accounting per device and per centre: gaps, late and lost readings."""

from __future__ import annotations

from fastapi import APIRouter

from api.db.models import Device
from api.deps import DB, Parts, Reader
from api.errors import NotFound
from api.routes.centres import CentreId
from api.routes.devices import DeviceId
from api.schemas import CentreSequence, DeviceSequence
from api.services import centres
from api.services.sequence_views import centre_sequence, device_sequence

router = APIRouter(tags=["sequences"])
S = 1_000_000_000


@router.get(
    "/v1/devices/{device_id}/sequence",
    summary="Sequence accounting of a device: highest seq, open, late and lost gaps",
)
def device(session: DB, parts: Parts, _who: Reader, device_id: DeviceId) -> DeviceSequence:
    found = session.get(Device, device_id)
    if found is None:
        raise NotFound(f"device {device_id} not found")
    return device_sequence(session, found, int(parts.settings.sequence_grace_s * S))


@router.get(
    "/v1/centres/{centre_id}/sequence",
    summary="Sequence accounting of a centre: totals and one summary per device",
)
def centre(session: DB, parts: Parts, _who: Reader, centre_id: CentreId) -> CentreSequence:
    centres.get(session, centre_id)
    return centre_sequence(session, centre_id, int(parts.settings.sequence_grace_s * S))
