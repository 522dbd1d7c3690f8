"""Centres: hub-and-spoke registry entries; a centre is online when a gateway of it is."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.db.models import Centre, Device
from api.errors import Conflict, NotFound, Unprocessable
from api.schemas import CentreCreate, CentrePublic, CentreUpdate
from api.services.audit import record, snapshot
from contract.metrics import DeviceKind

FIELDS = (
    "id",
    "name",
    "village",
    "district",
    "state",
    "country",
    "latitude",
    "longitude",
    "hub_id",
    "utc_offset_h",
    "pv_rated_w",
)


def get(session: Session, centre_id: str) -> Centre:
    centre = session.get(Centre, centre_id)
    if centre is None:
        raise NotFound(f"centre {centre_id} not found")
    return centre


def public(session: Session, centre: Centre, *, with_spokes: bool = True) -> CentrePublic:
    online = bool(
        session.scalar(
            select(func.count()).where(
                Device.centre_id == centre.id,
                Device.kind == DeviceKind.GATEWAY.value,
                Device.online.is_(True),
            )
        )
    )
    spokes = (
        list(
            session.scalars(select(Centre.id).where(Centre.hub_id == centre.id).order_by(Centre.id))
        )
        if with_spokes
        else []
    )
    data = {name: getattr(centre, name) for name in FIELDS}
    return CentrePublic(**data, created_at=centre.created_at, online=online, spokes=spokes)


def public_many(session: Session, rows: list[Centre]) -> list[CentrePublic]:
    """Like :func:`public` for a page of centres, with two queries (spokes, online)."""
    ids = [c.id for c in rows]
    spokes: dict[str, list[str]] = {i: [] for i in ids}
    for spoke, hub in session.execute(
        select(Centre.id, Centre.hub_id).where(Centre.hub_id.in_(ids)).order_by(Centre.id)
    ):
        if hub is not None:
            spokes[hub].append(spoke)
    online = set(
        session.scalars(
            select(Device.centre_id).where(
                Device.centre_id.in_(ids),
                Device.kind == DeviceKind.GATEWAY.value,
                Device.online.is_(True),
            )
        )
    )
    return [
        CentrePublic(
            **{name: getattr(c, name) for name in FIELDS},
            created_at=c.created_at,
            online=c.id in online,
            spokes=spokes[c.id],
        )
        for c in rows
    ]


def _check_hub(session: Session, centre_id: str, hub_id: str | None) -> None:
    if hub_id is None:
        return
    if hub_id == centre_id:
        raise Unprocessable("a centre cannot be its own hub", field="body.hub_id")
    hub = session.get(Centre, hub_id)
    if hub is None:
        raise Unprocessable(f"hub centre {hub_id} not found", field="body.hub_id")
    if hub.hub_id is not None:
        raise Unprocessable(f"{hub_id} is a spoke and cannot be a hub", field="body.hub_id")


def create(session: Session, actor: str, body: CentreCreate, key_version: int) -> Centre:
    if session.get(Centre, body.id) is not None:
        raise Conflict(f"centre {body.id} exists already")
    _check_hub(session, body.id, body.hub_id)
    centre = Centre(**body.model_dump(), key_version=key_version)
    session.add(centre)
    session.flush()
    record(session, actor, "centre.create", "centre", centre.id, None, snapshot(centre, FIELDS))
    return centre


def update(session: Session, actor: str, centre_id: str, body: CentreUpdate) -> Centre:
    centre = get(session, centre_id)
    before = snapshot(centre, FIELDS)
    changes = body.model_dump(exclude_unset=True)
    if "hub_id" in changes:
        _check_hub(session, centre_id, changes["hub_id"])
        if changes["hub_id"] is not None and session.scalar(
            select(func.count()).where(Centre.hub_id == centre_id)
        ):
            raise Conflict(f"centre {centre_id} is a hub with spokes")
    for name, value in changes.items():
        if name in ("name", "utc_offset_h") and value is None:
            raise Unprocessable(f"{name} cannot be null", field=f"body.{name}")
        setattr(centre, name, value)
    session.flush()
    record(session, actor, "centre.update", "centre", centre_id, before, snapshot(centre, FIELDS))
    return centre


def delete(session: Session, actor: str, centre_id: str) -> None:
    centre = get(session, centre_id)
    if session.scalar(select(func.count()).where(Device.centre_id == centre_id)):
        raise Conflict(f"centre {centre_id} still has devices or gateways")
    if session.scalar(select(func.count()).where(Centre.hub_id == centre_id)):
        raise Conflict(f"centre {centre_id} is the hub of spokes")
    before = snapshot(centre, FIELDS)
    session.delete(centre)
    session.flush()
    record(session, actor, "centre.delete", "centre", centre_id, before, None)


def listing(
    session: Session,
    *,
    hub_id: str | None,
    district: str | None,
    state: str | None,
    country: str | None,
    limit: int,
    offset: int,
) -> tuple[list[Centre], int]:
    query = select(Centre)
    for column, value in (
        (Centre.hub_id, hub_id),
        (Centre.district, district),
        (Centre.state, state),
        (Centre.country, country),
    ):
        if value is not None:
            query = query.where(column == value)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(Centre.id).limit(limit).offset(offset))
    return list(rows), total
