"""Device twins: desired configuration, what the device reported, and who has not applied it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.command_schemas import NotApplied, TwinDesiredSet, TwinPublic
from api.deps import DB, PageArgs, Parts, Reader, Technician
from api.routes.devices import DeviceId
from api.schemas import Id, Page
from api.services import devices, twins

router = APIRouter(tags=["twins"])


@router.put(
    "/v1/devices/{device_id}/twin/desired",
    summary="Set a device's desired configuration (replaces it; the version grows by one)",
    description="Checked against the kind's settings (422 naming the field), then published "
    "retained on `twin/desired`: an offline device applies it when it is back.",
)
def set_desired(
    session: DB, parts: Parts, who: Technician, device_id: DeviceId, body: TwinDesiredSet
) -> TwinPublic:
    device = devices.get(session, device_id, gateway=False)
    twins.set_desired(session, parts.device_link(), who.label, device, body.config)
    return twins.view(session, device)


@router.get("/v1/devices/{device_id}/twin", summary="Desired, reported and their difference")
def get_twin(session: DB, _who: Reader, device_id: DeviceId) -> TwinPublic:
    return twins.view(session, devices.get(session, device_id, gateway=False))


@router.get(
    "/v1/twins/not-applied",
    summary="Devices whose reported configuration is not the current desired one",
)
def not_applied(
    session: DB,
    _who: Reader,
    page: PageArgs,
    centre_id: Id | None = None,
    district: Annotated[str | None, Query(max_length=128)] = None,
) -> Page[NotApplied]:
    items, total = twins.not_applied(
        session, centre_id=centre_id, district=district, limit=page.limit, offset=page.offset
    )
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)
