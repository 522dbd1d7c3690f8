"""Commands: to one device, to many by a filter (a batch), their history and progress."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query

from api.command_schemas import (
    BatchCreate,
    BatchPublic,
    CommandCreate,
    CommandPublic,
    CommandState,
)
from api.deps import DB, PageArgs, Parts, Reader, Technician
from api.routes.devices import DeviceId
from api.schemas import Page
from api.services import commands, devices

router = APIRouter(tags=["commands"])
CommandId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


@router.post(
    "/v1/devices/{device_id}/commands",
    status_code=201,
    summary="Send a command from the device kind's catalogue (reboot, set_interval, ...)",
    description="Published QoS 1 on the device's `cmd` topic with `expires` in the message "
    "and the MQTT v5 message expiry: an offline device gets it when it is back, unless it "
    "expired. Unknown names and bad arguments are a 422 naming the field.",
)
def send_command(
    session: DB, parts: Parts, who: Technician, device_id: DeviceId, body: CommandCreate
) -> CommandPublic:
    device = devices.get(session, device_id, gateway=False)
    row = commands.send(
        session, parts.device_link(), who.label, device, body, parts.settings.command_expiry_s
    )
    return CommandPublic.model_validate(row)


@router.get("/v1/devices/{device_id}/commands", summary="A device's commands, newest first")
def command_history(
    session: DB,
    _who: Reader,
    page: PageArgs,
    device_id: DeviceId,
    name: Annotated[str | None, Query(max_length=32)] = None,
    status: CommandState | None = None,
    since: datetime | None = None,
) -> Page[CommandPublic]:
    devices.get(session, device_id, gateway=False)
    rows, total = commands.history(
        session,
        device_id,
        name=name,
        status=status,
        since=since,
        limit=page.limit,
        offset=page.offset,
    )
    items = [CommandPublic.model_validate(r) for r in rows]
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)


@router.get("/v1/commands/{command_id}", summary="One command and its status")
def get_command(session: DB, _who: Reader, command_id: CommandId) -> CommandPublic:
    return CommandPublic.model_validate(commands.get(session, command_id))


@router.post(
    "/v1/commands",
    status_code=202,
    summary="Send one command to every device a filter matches, at a bounded rate",
    description="Filter by kind, model, centre_id, hub_id (the hub and its spokes), district "
    "and status. The commands are published at `GRAMLINK_API_COMMAND_RATE_PER_S`; follow "
    "them at `/v1/command-batches/{id}`.",
)
def send_batch(session: DB, parts: Parts, who: Technician, body: BatchCreate) -> BatchPublic:
    parts.device_link()
    batch = commands.send_batch(session, who.label, body, parts.settings.command_expiry_s)
    session.commit()
    return commands.batch_view(session, batch.id)


@router.get("/v1/command-batches/{batch_id}", summary="A batch's progress by status")
def get_batch(session: DB, _who: Reader, batch_id: CommandId) -> BatchPublic:
    return commands.batch_view(session, batch_id)
