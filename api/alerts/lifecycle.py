"""An alert's life in the registry: the rows a :class:`alerting.evaluation.Change` makes.

pending -> firing -> (acknowledged, by the API) -> resolved. One ``Alert`` row
per rule and subject episode (its id comes from the change, so a replay finds
the same row); a repeat folds into it (count, value, last seen); every
transition is an ``AlertEvent``. A pending condition that clears before its
duration leaves nothing behind (its row and history are removed).

Who hears of it (:func:`api.alerts.channels.enqueue`, in the same transaction):

- an alert of a device whose centre is offline (absence, a device's offline) is
  recorded ``inhibited`` and never notified;
- one matching an active ``Silence`` is recorded ``silenced`` and never notified;
- one that fires from a backlog (readings older than the lag) is recorded
  ``during_outage`` and held back: resolved inside the backlog it is notified
  once as ``episode`` (with its start and end); still open when the subject's
  readings are live again, it is notified as ``firing`` then. Clinical alerts
  are notified at once, backlog or not;
- ``resolved`` is notified only for an alert whose firing was notified.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from alerting.evaluation import Change
from alerting.rules import Place, Value
from api.alerts.channels import all_channels, enqueue
from api.alerts.rulebook import Loaded
from api.db.models import Alert, AlertEvent, NotificationChannel, Silence

OPEN = ("pending", "firing", "acknowledged")


@dataclass(frozen=True, slots=True)
class Annotation:
    """One alert event for the InfluxDB ``alerts`` measurement."""

    at_ms: int
    alert: str
    rule: str
    severity: str
    centre: str
    device: str | None
    state: str
    value: float | None
    clinical: bool
    count: int


@dataclass
class Tally:
    notifications: int = 0
    fired: int = 0
    resolved: int = 0
    annotations: list[Annotation] = field(default_factory=list)

    def add(self, other: Tally) -> None:
        self.notifications += other.notifications
        self.fired += other.fired
        self.resolved += other.resolved
        self.annotations += other.annotations


def _number(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return float(value)
    return None


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


class Lifecycle:
    """The alert rows of one round (one transaction)."""

    def __init__(self, session: Session, now: datetime, place_of: Callable[[Alert], Place]) -> None:
        self.session = session
        self.now = now
        self.tally = Tally()
        self._place_of = place_of
        self._silences: list[Silence] | None = None
        self._channels: Sequence[NotificationChannel] | None = None  # read at the first event
        self._alerts: dict[str, Alert | None] = {}  # this round's rows (the session may not flush)

    # -- the changes ------------------------------------------------------------------

    def apply(
        self, loaded: Loaded, place: Place, change: Change, *, backlog: bool, inhibited: bool
    ) -> bool:
        """Record ``change``; False when the alert was resolved by hand (forget the condition)."""
        alert = self.get(change.alert_id)
        what = change.what
        if what == "pending":
            alert = alert or self._new(loaded, place, change, "pending")
            self._event(alert, "pending", change, backlog=backlog)
            self._annotate(alert, "pending", change.at_ms)
            return True
        if what == "cancelled":
            if alert is not None and alert.state == "pending":
                self.session.flush()
                self.session.execute(delete(AlertEvent).where(AlertEvent.alert_id == alert.id))
                self.session.delete(alert)
                self._alerts[alert.id] = None
            return True
        if alert is None:
            alert = self._new(loaded, place, change, "firing")
        elif alert.state == "resolved" and alert.resolved_by is not None:
            return False  # resolved by hand while the condition held: start afresh
        if what == "firing":
            self._fire(alert, change, backlog=backlog, inhibited=inhibited)
        elif what == "repeat":
            self._repeat(alert, change, backlog=backlog)
        elif what == "resolved":
            self._resolve(alert, change)
        return True

    def _fire(self, alert: Alert, change: Change, *, backlog: bool, inhibited: bool) -> None:
        alert.state = "firing"
        alert.fired_ms = change.at_ms
        self._seen(alert, change.at_ms, change.value, change.detail)
        self.tally.fired += 1
        if inhibited:
            alert.inhibited = True
        elif self._silenced(alert):
            alert.silenced = True
        elif backlog:
            alert.during_outage = True
        held = alert.inhibited or alert.silenced or (backlog and not alert.clinical)
        if not held:
            self._notify(alert, "firing")
        self._event(alert, "firing", change, backlog=backlog)
        self._annotate(alert, "firing", change.at_ms)

    def _repeat(self, alert: Alert, change: Change, *, backlog: bool) -> None:
        alert.count += 1
        self._seen(alert, change.at_ms, change.value, change.detail)
        if alert.state == "pending":
            alert.state = "firing"
        held_back = alert.notified is None and alert.during_outage
        if held_back and not backlog and not (alert.inhibited or alert.silenced):
            self._notify(alert, "firing")  # a backlog alert still open once readings are live
            self._event(alert, "live", change, backlog=False)

    def _resolve(self, alert: Alert, change: Change) -> None:
        was_open = alert.state in OPEN
        alert.state = "resolved"
        alert.resolved_ms = change.at_ms
        self._seen(alert, change.at_ms, change.value, change.detail)
        self.tally.resolved += 1
        if was_open and alert.notified is not None:
            self._notify(alert, "resolved")
        elif was_open and alert.during_outage and not (alert.inhibited or alert.silenced):
            self._notify(alert, "episode")
        self._event(alert, "resolved", change, backlog=False)
        self._annotate(alert, "resolved", change.at_ms)

    def stamp_edge(self, alert: Alert, raised_ms: int, at_ms: int) -> None:
        """The centre's gateway raised ``alert`` at ``raised_ms`` (its clock): recorded once."""
        if alert.edge_raised_ms is not None:
            return
        alert.edge_raised_ms = raised_ms
        alert.updated_at = self.now
        self.session.add(
            AlertEvent(
                alert_id=alert.id,
                at=self.now,
                at_ms=at_ms,
                event="edge_raised",
                detail={"raised_ms": raised_ms},
            )
        )

    # -- rows -------------------------------------------------------------------------

    def prefetch(self, alert_ids: set[str]) -> None:
        """Read these alerts in one query (the ones this round will likely touch)."""
        wanted = [i for i in alert_ids if i not in self._alerts]
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            found = {
                a.id: a for a in self.session.scalars(select(Alert).where(Alert.id.in_(chunk)))
            }
            for alert_id in chunk:
                self._alerts[alert_id] = found.get(alert_id)

    def get(self, alert_id: str) -> Alert | None:
        if alert_id not in self._alerts:
            self._alerts[alert_id] = self.session.get(Alert, alert_id)
        return self._alerts[alert_id]

    def _new(self, loaded: Loaded, place: Place, change: Change, state: str) -> Alert:
        rule = loaded.rule
        parts = change.subject.split("/")
        detail = dict(change.detail)
        ref = detail.get("patient_ref")
        alert = Alert(
            id=change.alert_id,
            rule_id=rule.id,
            rule_name=rule.name,
            subject=change.subject,
            centre=place.centre,
            device=parts[1] if len(parts) > 1 else None,
            severity=rule.severity.value,
            clinical=rule.clinical,
            state=state,
            started_ms=change.started_ms,
            last_seen_ms=change.at_ms,
            count=1,
            value=_number(change.value),
            detail=detail,
            patient_ref=ref if isinstance(ref, str) else None,
            during_outage=False,
            inhibited=False,
            silenced=False,
            created_at=self.now,
            updated_at=self.now,
        )
        self.session.add(alert)
        self._alerts[alert.id] = alert
        return alert

    def fold(self, repeats: list[Change]) -> None:
        """More repeats of one alert whose repeat this round was just recorded by
        :meth:`apply`, with the same backlog flag: the rows one :meth:`apply` each
        would leave (a repeat after the first only counts and moves what was seen),
        their attributes set once instead of once per reading."""
        alert = self.get(repeats[0].alert_id)
        assert alert is not None
        alert.count += len(repeats)
        value = next((c.value for c in reversed(repeats) if c.value is not None), None)
        detail: dict[str, Any] = {}
        for change in repeats:
            detail.update(change.detail)
        self._seen(alert, max(c.at_ms for c in repeats), value, detail)

    def _seen(
        self, alert: Alert, at_ms: int, value: Value | None, detail: Mapping[str, Any]
    ) -> None:
        alert.last_seen_ms = max(alert.last_seen_ms or 0, at_ms)
        if value is not None:
            alert.value = _number(value)
        if detail:
            alert.detail = {**(alert.detail or {}), **dict(detail)}
        alert.updated_at = self.now

    def _event(self, alert: Alert, event: str, change: Change, *, backlog: bool) -> None:
        detail: dict[str, Any] = {"value": _number(change.value)}
        if backlog:
            detail["backlog"] = True
        for flag in ("inhibited", "silenced", "during_outage"):
            if getattr(alert, flag):
                detail[flag] = True
        if change.detail:
            detail.update({k: v for k, v in change.detail.items() if k != "patient_ref"})
        self.session.add(
            AlertEvent(
                alert_id=alert.id, at=self.now, at_ms=change.at_ms, event=event, detail=detail
            )
        )

    def _notify(self, alert: Alert, event: str) -> None:
        if self._channels is None:
            self._channels = all_channels(self.session)
        ids = enqueue(self.session, alert, event, self._place_of(alert), self._channels)
        self.tally.notifications += len(ids)
        alert.notified = event

    def _annotate(self, alert: Alert, state: str, at_ms: int) -> None:
        self.tally.annotations.append(
            Annotation(
                at_ms,
                alert.id,
                alert.rule_id,
                alert.severity,
                alert.centre,
                alert.device,
                state,
                alert.value,
                alert.clinical,
                alert.count or 1,
            )
        )

    # -- silences ---------------------------------------------------------------------

    def _silenced(self, alert: Alert) -> bool:
        if self._silences is None:
            rows = self.session.scalars(select(Silence).where(Silence.ends_at > self.now)).all()
            self._silences = [
                s for s in rows if _aware(s.starts_at) <= self.now < _aware(s.ends_at)
            ]
        return any(
            (s.centre is None or s.centre == alert.centre)
            and (s.device is None or s.device == alert.device)
            and (s.rule_id is None or s.rule_id == alert.rule_id)
            and (s.severity is None or s.severity == alert.severity)
            for s in self._silences
        )
