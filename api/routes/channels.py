"""``/v1/notification-channels``: where alert notifications go (admins only)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from api.alert_schemas import ChannelCreate, ChannelCreated, ChannelPublic, ChannelUpdate
from api.deps import DB, Admin, PageArgs, RowIdPath
from api.schemas import Page
from api.services import alert_channels

router = APIRouter(prefix="/v1/notification-channels", tags=["alerts"])


@router.get("", summary="List channels (never their secrets)")
def list_channels(session: DB, _who: Admin, page: PageArgs) -> Page[ChannelPublic]:
    rows, total = alert_channels.listing(session, limit=page.limit, offset=page.offset)
    items = [alert_channels.public(r) for r in rows]
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)


@router.post(
    "",
    status_code=201,
    summary="Create a webhook channel; its signing secret is returned once",
)
def create_channel(session: DB, who: Admin, body: ChannelCreate) -> ChannelCreated:
    created = alert_channels.create(session, who.label, body)
    session.commit()
    return created


@router.get("/{channel_id}", summary="One channel (without its secret)")
def get_channel(session: DB, _who: Admin, channel_id: RowIdPath) -> ChannelPublic:
    return alert_channels.public(alert_channels.get(session, channel_id))


@router.patch("/{channel_id}", summary="Change a channel (a new secret is not shown back)")
def update_channel(
    session: DB, who: Admin, channel_id: RowIdPath, body: ChannelUpdate
) -> ChannelPublic:
    row = alert_channels.update_channel(session, who.label, channel_id, body)
    session.commit()
    return alert_channels.public(row)


@router.delete(
    "/{channel_id}",
    status_code=204,
    summary="Delete a channel (its queued notifications are marked failed)",
)
def delete_channel(session: DB, who: Admin, channel_id: RowIdPath) -> Response:
    alert_channels.delete(session, who.label, channel_id)
    session.commit()
    return Response(status_code=204)
