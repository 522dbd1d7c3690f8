"""``/v1/firmware``: upload (admins), list and get (readers), delete (admins), and the
file itself for devices and gateways, with their own login and HTTP Range."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Header, Request, Response, UploadFile
from fastapi.responses import StreamingResponse

from api.db.models import Device
from api.deps import DB, Admin, PageArgs, Parts, Reader, RowIdPath
from api.device_auth import authenticate
from api.errors import ApiError, Forbidden
from api.firmware_schemas import FirmwarePublic, Model, Version
from api.firmware_store import FirmwareStore
from api.schemas import Page
from api.services import firmware
from contract.firmware import ByteRange, RangeError, parse_range
from contract.metrics import DeviceKind

router = APIRouter(prefix="/v1/firmware", tags=["firmware"])


class RangeNotSatisfiable(ApiError):
    status = 416
    title = "Range Not Satisfiable"


def store(request: Request) -> FirmwareStore:
    found: FirmwareStore = request.app.state.firmware_store
    return found


Store = Annotated[FirmwareStore, Depends(store)]


@router.post("", status_code=201, summary="Upload a firmware file (admins)")
def upload(
    session: DB,
    who: Admin,
    files: Store,
    kind: Annotated[DeviceKind, Form()],
    model: Annotated[Model, Form()],
    version: Annotated[Version, Form()],
    file: Annotated[UploadFile, File(description="the firmware image")],
) -> FirmwarePublic:
    row = firmware.upload(
        session,
        files,
        who.label,
        kind=kind.value,
        model=model,
        version=version,
        filename=file.filename or "firmware.bin",
        source=file.file,
    )
    session.commit()
    return FirmwarePublic.model_validate(row)


@router.get("", summary="Firmware files, newest first")
def listing(
    session: DB,
    _who: Reader,
    page: PageArgs,
    kind: DeviceKind | None = None,
    model: str | None = None,
) -> Page[FirmwarePublic]:
    rows, total = firmware.listing(
        session, kind.value if kind else None, model, page.limit, page.offset
    )
    return Page(
        items=[FirmwarePublic.model_validate(r) for r in rows],
        total=total,
        limit=page.limit,
        offset=page.offset,
    )


@router.get("/{firmware_id}", summary="One firmware file's facts")
def get_one(session: DB, _who: Reader, firmware_id: RowIdPath) -> FirmwarePublic:
    return FirmwarePublic.model_validate(firmware.get(session, firmware_id))


@router.delete("/{firmware_id}", status_code=204, summary="Delete a firmware file (admins)")
def delete(session: DB, who: Admin, files: Store, firmware_id: RowIdPath) -> Response:
    firmware.delete(session, files, who.label, firmware_id)
    session.commit()
    return Response(status_code=204)


@router.get(
    "/{firmware_id}/file",
    summary="Download a firmware file (devices and gateways, HTTP Basic with their own login)",
    response_class=StreamingResponse,
    responses={206: {"description": "the requested range"}, 416: {"description": "bad range"}},
)
def download(
    session: DB,
    parts: Parts,
    files: Store,
    firmware_id: RowIdPath,
    authorization: Annotated[str | None, Header()] = None,
    range_: Annotated[str | None, Header(alias="range")] = None,
) -> StreamingResponse:
    device: Device = authenticate(session, parts.provisioner, authorization)
    row = firmware.get(session, firmware_id)
    if device.kind not in (DeviceKind.GATEWAY.value, row.kind):
        raise Forbidden(f"firmware {firmware_id} is for {row.kind}, not {device.kind}")
    total = row.size
    try:
        part = parse_range(range_, total)
    except RangeError as exc:
        raise RangeNotSatisfiable(str(exc), size=total) from exc
    headers = {"Accept-Ranges": "bytes", "ETag": f'"{row.sha256}"'}
    status = 200
    if part is None:
        part = ByteRange(0, total - 1)
    else:
        status = 206
        headers["Content-Range"] = part.content_range(total)
    headers["Content-Length"] = str(part.length if total else 0)
    body = files.read(firmware_id, part) if total else iter(())
    return StreamingResponse(
        body, status_code=status, headers=headers, media_type="application/octet-stream"
    )
