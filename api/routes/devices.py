"""``/v1/devices`` and ``/v1/gateways``: registry, provisioning, credential life cycle."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Request, Response
from sqlalchemy.orm import Session

from api.deps import DB, Admin, PageArgs, Paging, Parts, Reader
from api.errors import ApiError, Unprocessable
from api.schemas import (
    BulkResult,
    Credentials,
    DeviceCreate,
    DeviceOnlyKind,
    DevicePublic,
    DeviceUpdate,
    GatewayCreate,
    Id,
    Page,
    Provisioned,
    Short,
    Status,
)
from api.services import bulk, devices, gateway_downlink

DeviceId = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9-]{0,31}$", examples=["bp-0001"])]
MAX_CSV_BYTES = 32 * 1024 * 1024
CSV_EXAMPLE = "centre_id,device_id,kind,model\nctr-1,bp-0001,bp_monitor,omron-hem-7120\n"


class TooLarge(ApiError):
    status = 413
    title = "Content Too Large"


async def csv_body(request: Request) -> str:
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_CSV_BYTES:
            raise TooLarge(f"CSV larger than {MAX_CSV_BYTES} bytes")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise Unprocessable("the CSV is not UTF-8", field="body") from exc


def _page(
    session: Session,
    page: Paging,
    gateway: bool,
    *,
    centre_id: str | None = None,
    kind: str | None = None,
    status: Status | None = None,
    model: str | None = None,
    online: bool | None = None,
) -> Page[DevicePublic]:
    rows, total = devices.listing(
        session,
        gateway=gateway,
        centre_id=centre_id,
        kind=kind,
        status=status.value if status else None,
        model=model,
        online=online,
        limit=page.limit,
        offset=page.offset,
    )
    items = [DevicePublic.model_validate(r) for r in rows]
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)


devices_router = APIRouter(prefix="/v1/devices", tags=["devices"])
gateways_router = APIRouter(prefix="/v1/gateways", tags=["gateways"])


@devices_router.get("", summary="List devices (filter by centre, kind, status, model, online)")
def list_devices(
    session: DB,
    _who: Reader,
    page: PageArgs,
    centre_id: Id | None = None,
    kind: DeviceOnlyKind | None = None,
    status: Status | None = None,
    model: Short | None = None,
    online: bool | None = None,
) -> Page[DevicePublic]:
    return _page(
        session,
        page,
        False,
        centre_id=centre_id,
        kind=kind,
        status=status,
        model=model,
        online=online,
    )


@devices_router.post(
    "",
    status_code=201,
    summary="Provision a device: registry record and MQTT credentials (password shown once)",
)
def provision_device(session: DB, parts: Parts, who: Admin, body: DeviceCreate) -> Provisioned:
    device, creds = devices.provision(session, parts.provisioner, who.label, body)
    session.commit()
    return Provisioned(device=DevicePublic.model_validate(device), credentials=creds)


@devices_router.post(
    "/bulk",
    status_code=201,
    summary="Provision many devices and gateways from CSV: all rows or none",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"text/csv": {"schema": {"type": "string"}, "example": CSV_EXAMPLE}},
        }
    },
    responses={201: {"content": {"text/csv": {"schema": {"type": "string"}}}}},
)
def provision_bulk(
    session: DB,
    parts: Parts,
    who: Admin,
    text: Annotated[str, Depends(csv_body)],
    format: Literal["json", "csv"] = "json",
) -> BulkResult:
    result = bulk.provision_csv(
        session,
        parts.provisioner,
        who.label,
        text,
        key_version=parts.settings.key_version,
        max_rows=parts.settings.bulk_max_rows,
    )
    session.commit()
    if format == "csv":
        sheet = bulk.credentials_csv(result.credentials, result.centre_keys)
        return Response(sheet, status_code=201, media_type="text/csv")  # type: ignore[return-value]
    return result


def _register_common(router: APIRouter, gateway: bool) -> None:
    what = "gateway" if gateway else "device"

    @router.get(
        "/{device_id}",
        summary=f"One {what}"
        + (" with the edge rules and credential updates it holds" if gateway else ""),
    )
    def get_one(session: DB, _who: Reader, device_id: DeviceId) -> DevicePublic:
        device = devices.get(session, device_id, gateway=gateway)
        public = DevicePublic.model_validate(device)
        if gateway:
            public.downlink = gateway_downlink.view(session, device)
        return public

    @router.patch("/{device_id}", summary=f"Change a {what}'s model, serial or firmware")
    def update_one(
        session: DB, who: Admin, device_id: DeviceId, body: DeviceUpdate
    ) -> DevicePublic:
        device = devices.update(
            session, who.label, devices.get(session, device_id, gateway=gateway), body
        )
        session.commit()
        return DevicePublic.model_validate(device)

    @router.post("/{device_id}/rotate", summary=f"New MQTT password for a {what} (shown once)")
    def rotate(session: DB, parts: Parts, who: Admin, device_id: DeviceId) -> Credentials:
        device = devices.get(session, device_id, gateway=gateway)
        creds = devices.rotate(session, parts.provisioner, who.label, device)
        session.commit()
        return creds

    for action in ("suspend", "resume", "decommission"):
        _register_transition(router, gateway, action)


def _register_transition(router: APIRouter, gateway: bool, action: str) -> None:
    what = "gateway" if gateway else "device"

    def transition(session: DB, parts: Parts, who: Admin, device_id: DeviceId) -> DevicePublic:
        device = devices.get(session, device_id, gateway=gateway)
        devices.transition(session, parts.provisioner, who.label, device, action)
        session.commit()
        return DevicePublic.model_validate(device)

    router.add_api_route(
        f"/{{device_id}}/{action}",
        transition,
        methods=["POST"],
        summary=f"{action.capitalize()} a {what} (its MQTT client is "
        f"{'enabled' if action == 'resume' else 'disabled, an open connection dropped'})",
        name=f"{action}_{what}",
    )


@gateways_router.get("", summary="List gateways")
def list_gateways(
    session: DB,
    _who: Reader,
    page: PageArgs,
    centre_id: Id | None = None,
    status: Status | None = None,
    online: bool | None = None,
) -> Page[DevicePublic]:
    return _page(session, page, True, centre_id=centre_id, status=status, online=online)


@gateways_router.post(
    "",
    status_code=201,
    summary="Provision a gateway: MQTT password and centre key, both shown once",
)
def provision_gateway(session: DB, parts: Parts, who: Admin, body: GatewayCreate) -> Provisioned:
    device, creds = devices.provision(session, parts.provisioner, who.label, body)
    session.commit()
    return Provisioned(device=DevicePublic.model_validate(device), credentials=creds)


_register_common(devices_router, gateway=False)
_register_common(gateways_router, gateway=True)
