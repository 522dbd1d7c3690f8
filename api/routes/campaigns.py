"""``/v1/campaigns``: staged OTA roll-outs (admins run them; readers watch them)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import DB, Admin, PageArgs, Parts, Reader, RowIdPath
from api.firmware_schemas import CampaignCreate, CampaignPublic, CampaignStatus
from api.schemas import Page
from api.services import campaigns

router = APIRouter(prefix="/v1/campaigns", tags=["campaigns"])


@router.post("", status_code=201, summary="Start a staged firmware campaign (admins)")
def create(session: DB, who: Admin, parts: Parts, body: CampaignCreate) -> CampaignPublic:
    row = campaigns.create(session, who.label, body, parts.settings.opening_hours)
    session.commit()
    return campaigns.view(session, row)


@router.get("", summary="Campaigns, newest first (without per-device rows)")
def listing(
    session: DB, _who: Reader, page: PageArgs, status: CampaignStatus | None = None
) -> Page[CampaignPublic]:
    rows, total = campaigns.listing(session, status, page.limit, page.offset)
    return Page(
        items=[campaigns.view(session, r, with_devices=False) for r in rows],
        total=total,
        limit=page.limit,
        offset=page.offset,
    )


@router.get("/{campaign_id}", summary="A campaign with per-stage and per-device progress")
def get_one(
    session: DB,
    _who: Reader,
    campaign_id: RowIdPath,
    devices: Annotated[bool, Query(description="include the per-device rows")] = True,
) -> CampaignPublic:
    return campaigns.view(session, campaigns.get(session, campaign_id), with_devices=devices)


def _action(name: str, summary: str) -> None:
    @router.post(f"/{{campaign_id}}/{name}", summary=summary, name=f"campaign_{name}")
    def act(session: DB, who: Admin, campaign_id: RowIdPath) -> CampaignPublic:
        row = campaigns.act(session, who.label, campaign_id, name)
        session.commit()
        return campaigns.view(session, row, with_devices=False)


_action("pause", "Pause a running campaign: no new commands (admins)")
_action("resume", "Resume a paused campaign (admins)")
_action("cancel", "Cancel a campaign: no new commands, ever (admins)")
