"""``/v1/centres``: hub-and-spoke centres."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from api.deps import DB, Admin, PageArgs, Parts, Reader
from api.schemas import (
    CentreCreate,
    CentreEdgeRules,
    CentrePublic,
    CentreUpdate,
    Id,
    KeyRotation,
    Page,
)
from api.services import centre_keys, centres, edge_rules

router = APIRouter(prefix="/v1/centres", tags=["centres"])
CentreId = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9-]{0,31}$")]


@router.get("", summary="List centres (filter by hub, district, state, country)")
def list_centres(
    session: DB,
    _who: Reader,
    page: PageArgs,
    hub_id: Id | None = None,
    district: Annotated[str | None, Query(max_length=128)] = None,
    state: Annotated[str | None, Query(max_length=128)] = None,
    country: Annotated[str | None, Query(max_length=64)] = None,
) -> Page[CentrePublic]:
    rows, total = centres.listing(
        session,
        hub_id=hub_id,
        district=district,
        state=state,
        country=country,
        limit=page.limit,
        offset=page.offset,
    )
    items = centres.public_many(session, rows)
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)


@router.post("", status_code=201, summary="Create a centre (a hub, or a spoke of a hub)")
def create_centre(session: DB, parts: Parts, who: Admin, body: CentreCreate) -> CentrePublic:
    centre = centres.create(session, who.label, body, parts.settings.key_version)
    session.commit()
    return centres.public(session, centre)


@router.get("/{centre_id}", summary="One centre with its spokes and online state")
def get_centre(session: DB, _who: Reader, centre_id: CentreId) -> CentrePublic:
    return centres.public(session, centres.get(session, centre_id))


@router.get(
    "/{centre_id}/edge-rules",
    summary="The centre's edge rule set and which version each of its gateways holds",
    description="`rules`: the enabled rules the centre's gateways evaluate themselves; per "
    "gateway, `rules.status` is `applied` (it holds the newest set sent), `behind` (a set "
    "sent is not acknowledged: the gateway or its uplink is down), `rejected` (it refused "
    "the newest set: `error`) or `none`; `credentials` likewise for credential updates.",
)
def get_edge_rules(session: DB, _who: Reader, centre_id: CentreId) -> CentreEdgeRules:
    return edge_rules.centre_view(session, centres.get(session, centre_id))


@router.patch("/{centre_id}", summary="Change a centre")
def update_centre(session: DB, who: Admin, centre_id: CentreId, body: CentreUpdate) -> CentrePublic:
    centre = centres.update(session, who.label, centre_id, body)
    session.commit()
    return centres.public(session, centre)


@router.post(
    "/{centre_id}/rotate-key",
    summary="New centre key: every password of the centre changes (shown once)",
    description="For a stolen or retired gateway. The old gateway's central login stops "
    "at once; install the returned key on the centre's gateway and the new passwords "
    "on its devices.",
)
def rotate_centre_key(session: DB, parts: Parts, who: Admin, centre_id: CentreId) -> KeyRotation:
    result = centre_keys.rotate(session, parts.provisioner, who.label, centre_id)
    session.commit()
    return result


@router.delete("/{centre_id}", status_code=204, summary="Delete an empty centre")
def delete_centre(session: DB, who: Admin, centre_id: CentreId) -> Response:
    centres.delete(session, who.label, centre_id)
    session.commit()
    return Response(status_code=204)
