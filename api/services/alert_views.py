"""Reading alerts: filtered lists, one alert with its history and deliveries, counts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Select, case, func, or_, select
from sqlalchemy.orm import Session

from api.alert_schemas import (
    AlertCounts,
    AlertDetail,
    AlertEventPublic,
    AlertPublic,
    AttemptPublic,
    CentreCounts,
    DeliveryPublic,
    SeverityCounts,
)
from api.db.models import Alert, AlertEvent, Centre, DeliveryAttempt, Notification
from api.services.alert_actions import OPEN, get

Q = TypeVar("Q", bound=Select[*tuple[Any, ...]])


@dataclass(frozen=True)
class AlertFilter:
    """``state``: one state, or ``open`` (pending, firing, acknowledged); ``hub``: the
    hub and its spokes; ``region_state``: the centres' geographic state; ``since`` /
    ``until``: when the condition began to hold (device time)."""

    state: str | None = None
    centre: str | None = None
    hub: str | None = None
    district: str | None = None
    region_state: str | None = None
    severity: str | None = None
    clinical: bool | None = None
    rule_id: str | None = None
    device: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def apply(self, query: Q) -> Q:
        if self.state == "open":
            query = query.where(Alert.state.in_(OPEN))
        elif self.state is not None:
            query = query.where(Alert.state == self.state)
        for column, value in (
            (Alert.centre, self.centre),
            (Alert.severity, self.severity),
            (Alert.rule_id, self.rule_id),
            (Alert.device, self.device),
        ):
            if value is not None:
                query = query.where(column == value)
        if self.clinical is not None:
            query = query.where(Alert.clinical.is_(self.clinical))
        if self.since is not None:
            query = query.where(Alert.started_ms >= _ms(self.since))
        if self.until is not None:
            query = query.where(Alert.started_ms < _ms(self.until))
        if self.hub is None and self.district is None and self.region_state is None:
            return query
        query = query.join(Centre, Centre.id == Alert.centre)
        if self.hub is not None:
            query = query.where(or_(Centre.id == self.hub, Centre.hub_id == self.hub))
        if self.district is not None:
            query = query.where(Centre.district == self.district)
        if self.region_state is not None:
            query = query.where(Centre.state == self.region_state)
        return query


def _ms(at: datetime) -> int:
    """Epoch ms; a time without a zone is UTC."""
    return int((at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp() * 1000)


def listing(
    session: Session, where: AlertFilter, *, limit: int, offset: int
) -> tuple[list[Alert], int]:
    """Newest first (by when the condition began)."""
    query = where.apply(select(Alert))
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(
        query.order_by(Alert.started_ms.desc(), Alert.id).limit(limit).offset(offset)
    )
    return list(rows), total


def detail(session: Session, alert_id: str) -> AlertDetail:
    alert = get(session, alert_id)
    events = session.scalars(
        select(AlertEvent).where(AlertEvent.alert_id == alert_id).order_by(AlertEvent.id)
    )
    notes = list(
        session.scalars(
            select(Notification)
            .where(Notification.alert_id == alert_id)
            .order_by(Notification.created_at, Notification.id)
        )
    )
    tries: dict[str, list[AttemptPublic]] = {n.id: [] for n in notes}
    if notes:
        for attempt in session.scalars(
            select(DeliveryAttempt)
            .where(DeliveryAttempt.notification_id.in_(list(tries)))
            .order_by(DeliveryAttempt.id)
        ):
            tries[attempt.notification_id].append(AttemptPublic.model_validate(attempt))
    deliveries = []
    for note in notes:
        delivery = DeliveryPublic.model_validate(note)
        delivery.tries = tries[note.id]
        if note.status == "delivered":
            delivery.next_try_at = None
        deliveries.append(delivery)
    return AlertDetail(
        **AlertPublic.model_validate(alert).model_dump(),
        history=[AlertEventPublic.model_validate(e) for e in events],
        deliveries=deliveries,
    )


def counts(session: Session, where: AlertFilter) -> AlertCounts:
    """Open alerts per centre and severity (``where.state`` is ignored: always open)."""
    scoped = AlertFilter(**{**where.__dict__, "state": "open"})
    query = scoped.apply(
        select(
            Alert.centre,
            Alert.severity,
            func.count(),
            func.sum(case((Alert.clinical.is_(True), 1), else_=0)),
        )
    ).group_by(Alert.centre, Alert.severity)
    totals = SeverityCounts()
    centres: dict[str, CentreCounts] = {}
    for centre, severity, number, clinical in session.execute(query):
        row = centres.setdefault(centre, CentreCounts(centre=centre))
        for counter in (row, totals):
            setattr(counter, severity, getattr(counter, severity, 0) + number)
            counter.total += number
        row.clinical += int(clinical or 0)
    ordered = sorted(centres.values(), key=lambda c: (-c.critical, -c.warning, -c.total, c.centre))
    return AlertCounts(totals=totals, centres=ordered)
