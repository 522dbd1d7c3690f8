"""``/v1/silences``: planned maintenance: alerts recorded, not notified (technicians+)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from api.alert_schemas import SilenceCreate, SilencePublic
from api.deps import DB, PageArgs, Reader, RowIdPath, Technician
from api.schemas import Page
from api.services import alert_silences

router = APIRouter(prefix="/v1/silences", tags=["alerts"])


@router.get("", summary="Silences in force or scheduled (expired=true: all)")
def list_silences(
    session: DB,
    _who: Reader,
    page: PageArgs,
    expired: Annotated[bool, Query(description="include silences that ended")] = False,
) -> Page[SilencePublic]:
    rows, total = alert_silences.listing(
        session, expired=expired, limit=page.limit, offset=page.offset
    )
    items = [alert_silences.public(r) for r in rows]
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)


@router.post(
    "",
    status_code=201,
    summary="Silence alerts matching centre, device, rule and/or severity until ends_at",
)
def create_silence(session: DB, who: Technician, body: SilenceCreate) -> SilencePublic:
    row = alert_silences.create(session, who.label, body)
    session.commit()
    return alert_silences.public(row)


@router.get("/{silence_id}", summary="One silence")
def get_silence(session: DB, _who: Reader, silence_id: RowIdPath) -> SilencePublic:
    return alert_silences.public(alert_silences.get(session, silence_id))


@router.delete("/{silence_id}", status_code=204, summary="End a silence now (kept as expired)")
def expire_silence(session: DB, who: Technician, silence_id: RowIdPath) -> Response:
    alert_silences.expire(session, who.label, silence_id)
    session.commit()
    return Response(status_code=204)
