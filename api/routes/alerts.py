"""``/v1/alerts``: read alerts (everyone), acknowledge and resolve them (technicians)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query

from alerting.rules import Severity
from api.alert_schemas import (
    Acknowledge,
    AlertCounts,
    AlertDetail,
    AlertPublic,
    AlertSilence,
    Resolve,
    SilencePublic,
)
from api.deps import DB, PageArgs, Reader, Technician
from api.schemas import Id, Page
from api.services import alert_actions, alert_silences, alert_views
from api.services.alert_views import AlertFilter

router = APIRouter(prefix="/v1/alerts", tags=["alerts"])
AlertId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,40}$")]
District = Annotated[str | None, Query(max_length=128)]


def place_filter(
    centre: Id | None = None,
    hub: Annotated[Id | None, Query(description="a hub: its alerts and its spokes'")] = None,
    district: District = None,
    region_state: Annotated[
        str | None, Query(max_length=128, description="the centres' geographic state")
    ] = None,
    severity: Severity | None = None,
    clinical: bool | None = None,
    rule_id: Annotated[str | None, Query(max_length=64)] = None,
    device: Id | None = None,
    since: Annotated[
        datetime | None, Query(description="began at or after (device time, ISO 8601)")
    ] = None,
    until: Annotated[datetime | None, Query(description="began before")] = None,
) -> AlertFilter:
    return AlertFilter(
        centre=centre,
        hub=hub,
        district=district,
        region_state=region_state,
        severity=severity.value if severity else None,
        clinical=clinical,
        rule_id=rule_id,
        device=device,
        since=since,
        until=until,
    )


Where = Annotated[AlertFilter, Depends(place_filter)]


@router.get("", summary="List alerts, newest first (state=open: pending, firing, acknowledged)")
def list_alerts(
    session: DB,
    _who: Reader,
    page: PageArgs,
    where: Where,
    state: Literal["open", "pending", "firing", "acknowledged", "resolved"] | None = None,
) -> Page[AlertPublic]:
    filtered = AlertFilter(**{**where.__dict__, "state": state})
    rows, total = alert_views.listing(session, filtered, limit=page.limit, offset=page.offset)
    items = [AlertPublic.model_validate(a) for a in rows]
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)


@router.get("/counts", summary="Open alerts per centre and severity")
def count_alerts(session: DB, _who: Reader, where: Where) -> AlertCounts:
    return alert_views.counts(session, where)


@router.get("/{alert_id}", summary="One alert with its history and its notification deliveries")
def get_alert(session: DB, _who: Reader, alert_id: AlertId) -> AlertDetail:
    return alert_views.detail(session, alert_id)


@router.post(
    "/{alert_id}/acknowledge",
    summary="Acknowledge a firing alert (who: the token; the channels told of it hear)",
)
def acknowledge_alert(
    session: DB, who: Technician, alert_id: AlertId, body: Acknowledge | None = None
) -> AlertDetail:
    alert_actions.acknowledge(session, who.label, alert_id, body.note if body else None)
    session.commit()
    return alert_views.detail(session, alert_id)


@router.post(
    "/{alert_id}/resolve",
    summary="Resolve an open alert by hand (the engine starts afresh for its subject)",
)
def resolve_alert(
    session: DB, who: Technician, alert_id: AlertId, body: Resolve | None = None
) -> AlertDetail:
    alert_actions.resolve(session, who.label, alert_id, body.note if body else None)
    session.commit()
    return alert_views.detail(session, alert_id)


@router.post(
    "/{alert_id}/silence",
    status_code=201,
    summary="Silence this alert's rule at its centre (and device) until ends_at",
)
def silence_alert(
    session: DB, who: Technician, alert_id: AlertId, body: AlertSilence
) -> SilencePublic:
    row = alert_actions.silence(session, who.label, alert_id, body)
    session.commit()
    return alert_silences.public(row)
