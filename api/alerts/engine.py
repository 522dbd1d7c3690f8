"""The alert engine's evaluation: messages in, alert rows and notifications out, per round.

A round is what the engine thread took off the consumer's queue (at most
``round_max`` messages) plus, once per ``tick_s``, the timers. In one
transaction it evaluates every reading by the enabled rules whose kinds and
scope match the device's place, in arrival order (device-time order per
device: a batch's records are in order), records what changed
(:mod:`api.alerts.lifecycle`) and writes the evaluator states
(:mod:`api.alerts.conditions`). The caller acknowledges the round's messages
only after :meth:`Engine.round` returned, i.e. after the commit: killed at any
point, the engine gets the messages again and replays them onto the saved
states (the evaluator ignores readings not newer than a state's ``last``).

Late data: a reading is *backlog* when it reached its gateway more than
``lag_s`` before now (``rx`` of the envelope's record), or, sent straight to
the central broker, when its device time is older than now minus ``lag_s``.

Absence also needs ``absence_min_wall_s`` of real time without a reading from
the device: an envelope carrying other devices' newer readings (or a simulator's
fast clock) moves the centre's clock past a device whose readings are in the
next envelope, which must not make it look silent.

Inhibition: while a centre's gateway Last Will is held (the state of a
"centre offline" rule, an offline rule with target gateway, is pending or
firing), its devices' absence and offline alerts are recorded inhibited. When
the gateway is back, the absence timers of its devices restart from the
centre's clock (an inhibited absence alert is resolved, silently).

Alerts raised at the centres (``_gateway/alert``, :meth:`Engine._edge`): the
gateway derived the id from the reading the engine evaluates too, so the engine
either stamps its own alert of that id with ``edge_raised_ms`` or, the reading
not here yet, opens the alert from the gateway's message and sets the subject's
state as the reading would have (the reading then changes nothing): one alert,
notified once.

A rule deleted or disabled closes what it had open: its pending alerts are
removed, its firing ones resolved (notified if their firing was), its states
forgotten.

People act on alerts through the API, in their own transactions: resolving one
by hand (or a rule deleted) also resets or removes the rule's state for that
subject in the registry. On every tick the engine reads the history written
since (``AlertEvent`` ids grow) and takes the registry's state of each subject
resolved by someone else, so its memory follows (an absence timer restarts from
the reset, a condition still present starts a new alert).
"""

from __future__ import annotations

import logging
import operator
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from alerting.evaluation import Change, ChangeKind, Reading, State, device_subject
from alerting.rules import Absence, Offline, Place
from api.alerts.annotations import AlertAnnotations
from api.alerts.clock import CentreClocks, wall_ms
from api.alerts.conditions import LIVE, Conditions
from api.alerts.consumer import Message
from api.alerts.inbound import (
    BadMessage,
    EdgeRaised,
    Item,
    Observed,
    Presence,
    decode_message,
)
from api.alerts.lifecycle import Lifecycle, Tally
from api.alerts.metrics import EngineMetrics
from api.alerts.places import Places
from api.alerts.rulebook import Loaded, RuleBook
from api.alerts.settings import AlertsSettings
from api.alerts.sky import Skies
from api.db.models import Alert, AlertCondition, AlertEvent
from runtime.logs import Throttle

log = logging.getLogger(__name__)
CLOCKS = "_clock"  # the saved centre clocks, among the states (no rule id starts with _)
CLOCK_SAVE_S = 10.0
RETIRED = {"reason": "rule deleted or disabled"}
ENGINE = "engine"  # the actor of the history the engine writes
DEVICE_TIME = operator.itemgetter(Reading._fields.index("ts_ms"))
# readings per transaction of a round evaluated in parts: a quarter of a second of work or
# less, what an alert raised at a centre waits for the part in progress
PART_READINGS = 4_000
FOLDS_INTO = ("firing", "repeat")  # the changes after which repeats are only counted


class Plan(NamedTuple):
    """Where a device is and which rules its readings go to."""

    place: Place
    steps: tuple[Loaded, ...]
    subject: str  # the device's (rules per patient make their own)


def _parts(items: list[Item], most: int) -> list[list[Item]]:
    """``items`` cut into parts of about ``most`` readings, in order, never cutting a
    device's readings between two non-readings (``state`` messages, alerts raised at
    the centres: each stays where it was among the readings)."""
    parts: list[list[Item]] = []
    part: list[Item] = []
    size = 0
    devices: dict[tuple[str, str, str], list[Observed]] = {}

    def place_devices() -> None:
        nonlocal part, size
        for runs in devices.values():
            count = sum(len(run.readings) for run in runs)
            if part and size + count > most:
                parts.append(part)
                part, size = [], 0
            part += runs
            size += count
        devices.clear()

    for item in items:
        if isinstance(item, Observed):
            devices.setdefault((item.centre, item.device, item.kind), []).append(item)
            continue
        place_devices()
        part.append(item)
    place_devices()
    if part or not parts:
        parts.append(part)
    return parts


class Engine:
    def __init__(
        self,
        settings: AlertsSettings,
        sessions: sessionmaker[Session],
        metrics: EngineMetrics,
        annotations: AlertAnnotations | None = None,
    ) -> None:
        self._sessions = sessions
        self._lag_ms = int(settings.lag_s * 1000)
        self._absence_floor_s = settings.absence_min_wall_s
        self._heard: dict[tuple[str, str], float] = {}  # device -> monotonic of its last reading
        self._started = time.monotonic()
        self.metrics = metrics
        self.annotations = annotations
        self.places = Places(sessions, settings.registry_refresh_s)
        self.rules = RuleBook(sessions, settings.rules_refresh_s)
        self.conditions = Conditions()
        self.clocks = CentreClocks()
        self.skies = Skies()
        self._throttle = Throttle(log)
        self.evaluated = 0
        self.edge_alerts = 0  # alerts raised at the centres heard of
        self.refused = 0
        self._clocks_saved = 0.0
        self._plans: dict[tuple[str, str, str], Plan] = {}
        self._plans_stamp = (-1, -1)
        self._retiring: list[Loaded] = []  # rules deleted or disabled, not yet closed
        self._last_event = 0  # the newest AlertEvent id looked at (committed rounds)
        self._events_read = 0  # ... in this round

    def load(self) -> None:
        """Rules, places and the saved states, at start."""
        self.rules.refresh()
        self.places.refresh()
        with self._sessions() as session:
            held = self.conditions.load(session)
            self._last_event = session.scalar(select(func.max(AlertEvent.id))) or 0
        for centre, saved in list(self.conditions.subjects(CLOCKS)):
            self.clocks.restore(centre, int(saved["ts"]), int(saved["wall"]))
        self.metrics.states.set(held)
        log.info("event=alert_engine_loaded rules=%d states=%d", len(self.rules.rules), held)

    # -- one round ----------------------------------------------------------------------

    def round(
        self,
        messages: list[Message],
        *,
        tick: bool,
        checkpoint: bool = True,
        between: Callable[[Tally], None] | None = None,
    ) -> Tally:
        """Evaluate ``messages`` (and the timers if ``tick``), then commit (or raise).

        ``checkpoint``: write every state still unsaved (else the states that only a
        reading moved wait: :mod:`api.alerts.conditions`). A rule retired and a round
        with anything but readings always checkpoint. The caller may acknowledge the
        messages of every round so far once :attr:`saved`.

        ``between``: evaluate in parts of about :data:`PART_READINGS` readings, each a
        transaction of its own, and call ``between`` with each part's tally before the
        next (the service runs the alerts raised at the centres there, and wakes the
        notify worker). A device's readings of the round stay in one part, so a large
        round still evaluates each device's readings together. Killed between parts, the
        engine replays the whole round (nothing is acknowledged before the last part):
        the parts committed change nothing then, as for any replayed reading.
        """
        if self.rules.due():
            self._retiring += self.rules.refresh()
        items = self._decode(messages)
        parts = [items] if between is None else _parts(items, PART_READINGS)
        total = Tally()
        for n, part in enumerate(parts):
            last = n == len(parts) - 1
            tally = self._part(part, tick=tick and last, checkpoint=checkpoint and last, last=last)
            total.add(tally)
            if not last and between is not None:
                between(tally)
        self.metrics.messages.inc(len(messages))
        self.metrics.rounds.inc()
        return total

    def _part(self, items: list[Item], *, tick: bool, checkpoint: bool, last: bool) -> Tally:
        """One transaction of a round; the last part retires the rules gone."""
        retiring = self._retiring if last else []
        everything = (
            checkpoint or bool(retiring) or any(not isinstance(item, Observed) for item in items)
        )
        self.places.tick()
        evaluated = self.evaluated
        now_ms = wall_ms()
        self._events_read = self._last_event
        try:
            with self._sessions.begin() as session, session.no_autoflush:
                life = Lifecycle(session, datetime.now(UTC), self._place_of)
                life.prefetch(self._open_alerts(items))
                readings: list[Observed] = []
                for item in items:
                    if isinstance(item, Observed):
                        readings.append(item)
                        continue
                    self._readings(life, readings, now_ms)
                    readings = []
                    if isinstance(item, Presence):
                        self._presence(life, item)
                    else:
                        self._edge(life, item, now_ms)
                self._readings(life, readings, now_ms)
                if tick:
                    self._follow_people(session)
                    self._timers(life)
                    self._save_clocks()
                for loaded in retiring:
                    self._retire(life, loaded)
                self.conditions.flush(session, everything=everything)
        except BaseException:
            self.conditions.discard()
            raise
        self.conditions.commit(everything=everything)
        if last:
            self._retiring = []
        self._last_event = self._events_read
        tally = life.tally
        self.metrics.readings.inc(self.evaluated - evaluated)
        self.metrics.notifications.inc(tally.notifications)
        self.metrics.states.set(len(self.conditions))
        if self.annotations is not None and tally.annotations:
            self.annotations.write(tally.annotations)
        return tally

    @property
    def saved(self) -> bool:
        """Every state is in the database: the messages evaluated so far may be acknowledged."""
        return not self.conditions.unsaved

    def _decode(self, messages: list[Message]) -> list[Item]:
        items: list[Item] = []
        for m in messages:
            try:
                found, refused = decode_message(m.topic, m.payload)
            except BadMessage as exc:
                self.refused += 1
                self.metrics.bad.inc()
                self._throttle.warning(
                    "alerts_bad_message",
                    key=f"bad:{exc.reason}",
                    topic=m.topic[:120],
                    reason=exc.reason,
                    error=exc,
                    refused=self.refused,
                )
                continue
            if refused:
                self.refused += refused
                self.metrics.bad.inc(refused)
            items.extend(found)
        return items

    # -- readings -----------------------------------------------------------------------

    def _plan(self, centre: str, device: str, kind: str) -> Plan:
        """The device's place and the rules its readings go to (kept while rules and
        registry stay the same)."""
        stamp = (self.rules.generation, self.places.loads)
        if stamp != self._plans_stamp:
            self._plans.clear()
            self._plans_stamp = stamp
        key = (centre, device, kind)
        plan = self._plans.get(key)
        if plan is not None:
            return plan
        place, settled = self.places.placed(centre, device, kind)
        steps = tuple(
            loaded
            for loaded in self.rules.for_kind(kind)
            if loaded.everywhere or loaded.rule.scope.matches(place)
        )
        plan = Plan(place, steps, device_subject(centre, device))
        if settled and self.places.loads == stamp[1]:
            self._plans[key] = plan  # a device the registry does not know: asked again
        return plan

    def _open_alerts(self, items: list[Item]) -> set[str]:
        """The alerts the round's readings may fold into (read in one query, not one each)."""
        subjects = {device_subject(i.centre, i.device) for i in items if isinstance(i, Observed)}
        ids: set[str] = set()
        for subject in subjects:
            ids.update(self.conditions.open_alerts(subject))
        return ids

    def _readings(self, life: Lifecycle, runs: list[Observed], now_ms: int) -> None:
        """Readings between two presence messages, device by device (each device's in
        order: what a rule's state for a subject sees is the same as one by one)."""
        by_device: dict[tuple[str, str, str], list[Observed]] = {}
        for run in runs:
            by_device.setdefault((run.centre, run.device, run.kind), []).append(run)
        for (centre, device, kind), group in by_device.items():
            self._heard[(centre, device)] = time.monotonic()
            if len(group) == 1:
                readings, rx_ms = group[0].readings, group[0].rx_ms
            else:
                readings = [r for run in group for r in run.readings]
                rx_ms = [at for run in group for at in run.rx_ms]
            self._device(life, self._plan(centre, device, kind), readings, rx_ms, now_ms)

    def _device(
        self,
        life: Lifecycle,
        plan: Plan,
        readings: list[Reading],
        rx_ms: list[int | None],
        now_ms: int,
    ) -> None:
        """One device's readings of a round, in device-time order, by each of its rules."""
        centre = plan.place.centre
        # the newest is all a centre's clock keeps (same monotonic time for the lot)
        self.clocks.see(centre, max(map(DEVICE_TIME, readings)), time.monotonic())
        count = len(readings)
        self.evaluated += count
        conditions = self.conditions
        for loaded in plan.steps:
            evaluator = loaded.evaluator
            rule_id = loaded.rule.id
            sky = None
            if loaded.solar:
                sky = self.skies.of(centre, self.places)
                if sky is None:
                    continue  # no expectation (no coordinates or rated power): nothing to judge
            if loaded.per_patient:  # a subject per patient: one by one
                for reading, rx in zip(readings, rx_ms, strict=True):
                    subject = evaluator.subject(reading)
                    state = conditions.get(rule_id, subject)
                    new, changes = evaluator.on_reading(state, reading, sky)
                    if new is not state:
                        conditions.put(rule_id, subject, new)
                    if changes:
                        late = self._late(rx, reading, now_ms)
                        self._record(life, loaded, plan.place, subject, changes, backlog=late)
                continue
            subject = plan.subject
            state = first = conditions.get(rule_id, subject)
            at = 0
            recorded = False
            # repeats of the alert just recorded, with its backlog flag: recorded in one go
            folding: tuple[str, bool] | None = None
            repeats: list[Change] = []
            while at < count:
                state, changes, at = evaluator.on_readings(state, readings, at, sky)
                if not changes:
                    continue
                recorded = True
                late = self._late(rx_ms[at - 1], readings[at - 1], now_ms)
                last = changes[-1]
                if len(changes) == 1 and last.what == "repeat" and folding == (last.alert_id, late):
                    repeats.append(last)
                    continue
                if repeats:
                    life.fold(repeats)
                    repeats = []
                folding = (last.alert_id, late) if last.what in FOLDS_INTO else None
                if not self._recorded(life, loaded, plan.place, changes, late):
                    state = None  # resolved by hand meanwhile: forget the condition
                    folding = None
            if repeats:
                life.fold(repeats)
            if state is not first:
                # a state whose change recorded nothing (a window, a timer moved) may
                # wait for the checkpoint; one that changed an alert is written with it
                conditions.put(rule_id, subject, state, deferred=not recorded)

    def _late(self, rx_ms: int | None, reading: Reading, now_ms: int) -> bool:
        """A backlog reading: its gateway received it (``rx_ms``) over ``lag_s`` ago (sent
        straight to the central broker: its device time is that old)."""
        return now_ms - (rx_ms if rx_ms is not None else reading.ts_ms) > self._lag_ms

    def _recorded(
        self, life: Lifecycle, loaded: Loaded, place: Place, changes: list[Change], backlog: bool
    ) -> bool:
        """Record ``changes``; False when one found its alert resolved by hand."""
        kept = True
        for change in changes:
            inhibited = loaded.inhibitable and self.centre_offline(place.centre)
            if not life.apply(loaded, place, change, backlog=backlog, inhibited=inhibited):
                kept = False
        return kept

    def _record(
        self,
        life: Lifecycle,
        loaded: Loaded,
        place: Place,
        subject: str,
        changes: list[Change],
        *,
        backlog: bool,
    ) -> None:
        for change in changes:
            inhibited = loaded.inhibitable and self.centre_offline(place.centre)
            if not life.apply(loaded, place, change, backlog=backlog, inhibited=inhibited):
                self.conditions.put(loaded.rule.id, subject, None)

    # -- alerts raised at the centres ---------------------------------------------------

    def _edge(self, life: Lifecycle, raised: EdgeRaised, now_ms: int) -> None:
        """An alert a centre's gateway raised: one alert with the engine's own, never two.

        The gateway derived the id from the same reading the engine evaluates, so the
        alert is the engine's if it already opened it (stamped ``edge_raised_ms``).
        Otherwise the reading is still on its way: the alert opens from the gateway's
        message (notified as the engine would) and the subject's state is set as the
        reading would have set it, so the reading, when it comes, changes nothing.
        When the engine has seen that reading or a newer one (or has another alert of
        the subject open) and opened no alert, its own evaluation stands.
        """
        a = raised.alert
        if a.state != "firing":
            return
        self.edge_alerts += 1
        alert = life.get(a.alert_id)
        if alert is not None:
            life.stamp_edge(alert, a.raised_ms, a.ts)
            return
        loaded = self.rules.rules.get(a.rule_id)
        if loaded is None:
            self._throttle.warning("edge_alert_unknown_rule", key=a.rule_id, rule=a.rule_id)
            return
        state = self.conditions.get(a.rule_id, a.subject)
        if state is not None and (state.get("last", -1) >= a.ts or state.get("phase") in LIVE):
            return
        place = self.places.place(a.centre, a.device, a.kind)
        detail = {"metric": a.metric, "patient_ref": a.patient_ref} if a.clinical else {}
        change = Change("firing", a.subject, a.alert_id, a.ts, a.started_ms, a.value, detail)
        backlog = now_ms - a.raised_ms > self._lag_ms
        if not life.apply(loaded, place, change, backlog=backlog, inhibited=False):
            return
        opened = life.get(a.alert_id)
        if opened is not None:
            life.stamp_edge(opened, a.raised_ms, a.ts)
        firing = {"phase": "firing", "since": a.started_ms, "last": a.ts, "alert": a.alert_id}
        self.conditions.put(a.rule_id, a.subject, {**(state or {}), **firing})

    # -- presence and timers ------------------------------------------------------------

    def centre_offline(self, centre: str) -> bool:
        """The centre's gateway Last Will is held (a centre-offline rule pending or firing)."""
        for loaded in self.rules.offline():
            if loaded.centre_offline:
                state = self.conditions.get(loaded.rule.id, centre)
                if state is not None and state.get("phase") in LIVE:
                    return True
        return False

    def _presence(self, life: Lifecycle, p: Presence) -> None:
        kind = self.places.kind_of(p.centre, p.device) or p.kind
        if kind is None:
            return  # a device nobody knows, whose Last Will does not say what it is
        gateway = kind == "gateway"
        at = self.clocks.now(p.centre)
        place = self.places.place(p.centre, p.device, kind)
        for loaded in self.rules.offline():
            condition = loaded.rule.condition
            assert isinstance(condition, Offline)
            if (condition.target == "gateway") != gateway or not loaded.rule.scope.matches(place):
                continue
            subject = p.centre if gateway else device_subject(p.centre, p.device)
            state = self.conditions.get(loaded.rule.id, subject)
            new, changes = loaded.evaluator.on_presence(state, subject, p.online, at)
            if new is not state:
                self.conditions.put(loaded.rule.id, subject, new)
            alert_place = place._replace(device=None, kind=None) if gateway else place
            self._record(life, loaded, alert_place, subject, changes, backlog=False)
            back = p.online and state is not None and state.get("phase") in LIVE
            if gateway and back:
                self._restart_timers(life, p.centre, at)

    def _restart_timers(self, life: Lifecycle, centre: str, at: int) -> None:
        """The centre is back: its devices' absence timers start again from ``at``.

        An absence alert raised (inhibited) during the outage is resolved silently; one
        notified before the outage stays open until its device is heard again.
        """
        prefix = f"{centre}/"
        for loaded in self.rules.timers():
            if not isinstance(loaded.rule.condition, Absence):
                continue
            rule_id = loaded.rule.id
            for subject, state in list(self.conditions.subjects(rule_id)):
                if not subject.startswith(prefix):
                    continue
                if state.get("phase") == "firing":
                    alert = life.get(state["alert"])
                    if alert is not None and not alert.inhibited:
                        continue  # silent since before the outage, and notified: still open
                fresh: State = {"phase": "ok", "last": max(int(state.get("last") or at), at)}
                if state.get("gap") is not None:
                    fresh["gap"] = state["gap"]
                if state.get("phase") == "firing":
                    fresh["resolved"] = at
                    change = Change("resolved", subject, state["alert"], at, state["since"])
                    place = self.places.place(centre, subject.split("/")[1], None)
                    life.apply(loaded, place, change, backlog=False, inhibited=True)
                self.conditions.put(rule_id, subject, fresh)

    def _timers(self, life: Lifecycle) -> None:
        now = time.monotonic()
        for loaded in self.rules.timers():
            rule_id = loaded.rule.id
            absence = isinstance(loaded.rule.condition, Absence)
            for subject, state in list(self.conditions.subjects(rule_id)):
                if state.get("phase") == "firing":
                    continue  # nothing more a clock can do to it
                centre, _, rest = subject.partition("/")
                if absence:
                    heard = self._heard.get((centre, rest), self._started)
                    if now - heard < self._absence_floor_s:
                        continue  # heard from in real time just now: not silent
                new, changes = loaded.evaluator.on_clock(state, subject, self.clocks.now(centre))
                if new is state:
                    continue
                self.conditions.put(rule_id, subject, new)
                device = rest.split("/")[0] or None
                place = self.places.place(centre, device, None)
                self._record(life, loaded, place, subject, changes, backlog=False)

    def _follow_people(self, session: Session) -> None:
        """States the API reset (an alert resolved by hand, a rule gone) replace ours."""
        rows = session.execute(
            select(AlertEvent.id, AlertEvent.event, AlertEvent.actor, Alert.rule_id, Alert.subject)
            .join(Alert, Alert.id == AlertEvent.alert_id)
            .where(AlertEvent.id > self._events_read)
            .order_by(AlertEvent.id)
        ).all()
        for event_id, event, actor, rule_id, subject in rows:
            self._events_read = max(self._events_read, event_id)
            if event != "resolved" or actor == ENGINE:
                continue
            row = session.get(AlertCondition, (rule_id, subject))
            state = dict(row.state) if row is not None else None
            loaded = self.rules.rules.get(rule_id)
            if state is not None and loaded is not None and loaded.timer:
                # the timer restarts now on the centre's clock (the API only knows the wall)
                now = self.clocks.now(subject.partition("/")[0])
                state["last"] = max(int(state.get("last") or now), now)
            self.conditions.put(rule_id, subject, state)
            self.rules.expire()  # a rule may be gone too

    def _retire(self, life: Lifecycle, loaded: Loaded) -> None:
        """A rule deleted or disabled: its pending alerts go, its firing ones resolve."""
        rule_id = loaded.rule.id
        for subject, state in list(self.conditions.subjects(rule_id)):
            self.conditions.put(rule_id, subject, None)
            phase, alert_id = state.get("phase"), state.get("alert")
            if phase not in LIVE or alert_id is None:
                continue
            centre, _, rest = subject.partition("/")
            at = self.clocks.now(centre)
            what: ChangeKind = "resolved" if phase == "firing" else "cancelled"
            change = Change(what, subject, alert_id, at, state["since"], None, RETIRED)
            place = self.places.place(centre, rest.split("/")[0] or None, None)
            life.apply(loaded, place, change, backlog=False, inhibited=False)

    def _save_clocks(self) -> None:
        now = time.monotonic()
        if now - self._clocks_saved < CLOCK_SAVE_S:
            return
        self._clocks_saved = now
        for centre, ts_ms, wall in self.clocks.changed():
            self.conditions.put(CLOCKS, centre, {"ts": ts_ms, "wall": wall})

    def _place_of(self, alert: Alert) -> Place:
        return self.places.place(alert.centre, alert.device, None)

    def describe(self) -> dict[str, Any]:
        return {
            "rules": len(self.rules.rules),
            "states": len(self.conditions),
            "centres": len(self.clocks),
            "evaluated": self.evaluated,
            "edge_alerts": self.edge_alerts,
        }
