"""One evaluation of a rule, per subject, in device-time order: the semantics of alerts.

An :class:`Evaluator` wraps one :class:`alerting.rules.Rule`. It is pure: the
caller keeps each subject's state (a small JSON-able dict, ``None`` when there
is nothing to remember) and hands it in with every reading, presence change or
clock tick; the evaluator gives back the new state and the :class:`Change` s
that happened. The central engine persists the states in the registry; the
gateway keeps them in its SQLite store. Both derive the same alert id from the
same reading (:func:`alerting.ids.alert_id`), so an alert raised at the centre
and the one raised centrally for that reading are one alert.

Subjects: a device (``centre/device``) for reading and absence rules; a
device and patient (``centre/device/patient``) for clinical rules, so one
patient's normal reading never resolves another's alert; the centre for a
gateway's offline rule.

Ordering: a reading not newer than the last one the subject's state has seen
is ignored (a replayed batch changes nothing), and so is one older than the
subject's last resolution (a late reading never reopens a resolved alert).
"""

from __future__ import annotations

import bisect
import itertools
import math
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from alerting.forecast import MIN_SPAN_MS, SocWindow, hours_to_floor
from alerting.ids import alert_id
from alerting.rules import (
    Absence,
    Clinical,
    Forecast,
    Offline,
    Op,
    Rate,
    Rule,
    SolarYield,
    Threshold,
    Value,
)

State = dict[str, Any]
ChangeKind = Literal["pending", "cancelled", "firing", "repeat", "resolved"]
OPS: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}
# Device-side clock for absence rules when a device's interval is not known yet.
DEFAULT_INTERVAL_MS = 60_000
ABSENCE_INTERVALS = 3


class Reading(NamedTuple):
    """One validated reading (telemetry or event) as the evaluator needs it (a tuple:
    the engine makes one per reading, and a frozen dataclass costs three times as much)."""

    centre: str
    device: str
    kind: str
    ts_ms: int
    seq: int
    metrics: Mapping[str, Any]
    patient_ref: str | None = None
    # The device's own time when ``ts_ms`` is not it (a clock-suspect reading is
    # evaluated at its receive time): alert ids derive from the device's time.
    device_ts_ms: int | None = None

    @property
    def id_ts_ms(self) -> int:
        return self.ts_ms if self.device_ts_ms is None else self.device_ts_ms


@dataclass(frozen=True, slots=True)
class Change:
    """Something that happened to one rule's alert for one subject."""

    what: ChangeKind
    subject: str
    alert_id: str
    at_ms: int  # device time of the reading, or the clock for timers
    started_ms: int  # when the condition began to hold
    value: Value | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)


# The clear-sky expectation of a centre: energy (Wh) expected from local midnight to a time.
ClearSkyFn = Callable[[int], tuple[float, float]]  # ts_ms -> (so far, whole day)


def device_subject(centre: str, device: str) -> str:
    return f"{centre}/{device}"


def breached(op: Op, value: Any, threshold: Value) -> bool:
    return OPS[op](value, threshold)


class Evaluator:
    """The evaluation of one rule; see the module docstring for the contract."""

    def __init__(self, rule: Rule, *, live_windows: bool = False) -> None:
        """``live_windows``: a forecast state keeps its window as a :class:`SocWindow`
        (copied, never changed in place) instead of its JSON form; the caller then
        writes :func:`jsonable` of the state (the engine, which keeps states in memory).
        """
        self.rule = rule
        self.condition = rule.condition
        self.live_windows = live_windows
        self.clinical = isinstance(rule.condition, Clinical)
        c = rule.condition
        # a threshold's quiet reading (no breach, nothing pending or firing) changes nothing:
        # told apart without the full evaluation (most readings of most rules)
        self._quiet: tuple[str, Callable[[Any, Any], bool], Value] | None = (
            (c.metric, OPS[c.op], c.value) if isinstance(c, Threshold) else None
        )
        self._absence = isinstance(c, Absence)
        self._rate_of: Rate | None = c if isinstance(c, Rate) else None
        self._forecast_of: Forecast | None = c if isinstance(c, Forecast) else None

    # -- readings -----------------------------------------------------------------

    def subject(self, reading: Reading) -> str:
        if self.clinical:
            return f"{reading.centre}/{reading.device}/{reading.patient_ref or '-'}"
        return device_subject(reading.centre, reading.device)

    def on_reading(
        self, state: State | None, reading: Reading, clear_sky: ClearSkyFn | None = None
    ) -> tuple[State | None, list[Change]]:
        """The subject's new state and changes after ``reading`` (state may be ``state`` itself)."""
        quiet = self._quiet
        if quiet is not None and (state is None or state["phase"] == "ok"):
            value = reading.metrics.get(quiet[0])
            if value is None or not quiet[1](value, quiet[2]):
                return state, []
        return self._evaluate(state, reading, clear_sky, owned=False)

    def on_readings(
        self,
        state: State | None,
        readings: Sequence[Reading],
        start: int = 0,
        clear_sky: ClearSkyFn | None = None,
    ) -> tuple[State | None, list[Change], int]:
        """:meth:`on_reading` of ``readings[start:]`` (one subject's, in order) up to the
        first that changes an alert: the state, that reading's changes and the index
        after it; ``(state, [], len(readings))`` when none does.

        The same result as one call per reading, cheaper: a state this call made is
        changed in place by the next reading instead of being copied again.
        """
        calm = state is None or state["phase"] == "ok"
        if self._absence and calm:
            return self._seen_all(state, readings, start)
        if calm and (self._rate_of is not None or self._forecast_of is not None):
            settled = self._calm_batch(state, readings, start)
            if settled is not None:
                return settled, [], len(readings)
        quiet = self._quiet
        owned: State | None = None  # made by this call: nobody else holds it
        n = len(readings)
        i = start
        while i < n:
            if quiet is not None and (state is None or state["phase"] == "ok"):
                metric, op, limit = quiet
                while i < n:  # skip the quiet readings without a call each
                    value = readings[i].metrics.get(metric)
                    if value is not None and op(value, limit):
                        break
                    i += 1
                else:
                    break
            reading = readings[i]
            i += 1
            mine = state is not None and state is owned
            new, changes = self._evaluate(state, reading, clear_sky, owned=mine)
            if new is not state:
                owned = new
            state = new
            if changes:
                return state, changes, i
        return state, [], n

    def _seen_all(
        self, state: State | None, readings: Sequence[Reading], start: int
    ) -> tuple[State | None, list[Change], int]:
        """:meth:`on_readings` of an absence rule whose device is not silent: only the
        last time and the interval move (``_seen`` per reading, without a call each)."""
        last: int | None = None if state is None else state.get("last")
        gap: int | None = None if state is None else state.get("gap")
        resolved = -1 if state is None else state.get("resolved", -1)
        moved = False
        for reading in readings[start:] if start else readings:
            ts = reading.ts_ms
            if (last is not None and ts <= last) or ts < resolved:
                continue  # not newer (a replay), or older than the last resolution
            if last is not None:
                step = ts - last
                if step != gap:  # a step equal to the interval leaves it where it is
                    gap = step if gap is None else min(gap * 2, max(step, gap // 2, 1))
            last, moved = ts, True
        if not moved:
            return state, [], len(readings)
        new: State = dict(state) if state else {"phase": "ok"}
        new["last"] = last
        if gap is not None:
            new["gap"] = gap
        return new, [], len(readings)

    def _calm_batch(
        self, state: State | None, readings: Sequence[Reading], start: int
    ) -> State | None:
        """The state after ``readings[start:]`` of a rate or forecast rule with no open
        alert, when none of them can open one: their window moves, in one step. None
        when that is not certain (the readings then go one by one).

        Certain only for readings newer than the state's, in device-time order. A rate
        cannot reach ``by`` when the values of its window and of the readings span
        less than ``by`` (the change is a difference of two of them, or of one and a
        point between two); a forecast judges nothing while the grid is present.
        """
        rate, forecast = self._rate_of, self._forecast_of
        metric = rate.metric if rate is not None else "battery_soc_pct"
        times: list[int] = []
        values: list[Any] = []
        for reading in readings[start:] if start else readings:
            metrics = reading.metrics
            value = metrics.get(metric)
            if value is None:
                continue  # a reading without the metric changes nothing
            if forecast is not None and metrics.get("grid_present") is False:
                return None
            times.append(reading.ts_ms)
            values.append(value)
        if not times:
            return state
        after = -1 if state is None else max(state.get("last", -1), state.get("resolved", -1) - 1)
        if times[0] <= after or any(a >= b for a, b in itertools.pairwise(times)):
            return None
        new: State = dict(state) if state else {"phase": "ok"}
        if rate is not None:
            points: list[list[Any]] = new.get("window", [])
            seen = [p[1] for p in points] + values
            # a margin for the rounding of an interpolated start
            if max(seen) - min(seen) >= rate.by * (1 - 1e-9):
                return None
            kept = [*points, *([t, v] for t, v in zip(times, values, strict=True))]
            # what one reading after another keeps: one point at or before the window's start
            start_ms = times[-1] - rate.per_s * 1000
            inside = bisect.bisect_left(kept, start_ms, 0, len(kept) - 1, key=_first)
            new["window"] = kept[max(inside - 1, 0) :]
        else:
            assert forecast is not None
            window = _window_copy(new.get("window"), forecast)
            window.extend(times, values)
            new["window"] = window if self.live_windows else window.to_state()
        new["last"] = times[-1]
        return new

    def _evaluate(
        self, state: State | None, reading: Reading, clear_sky: ClearSkyFn | None, *, owned: bool
    ) -> tuple[State | None, list[Change]]:
        """One reading past the quiet check (the callers make it)."""
        condition = self.condition
        if state is not None and reading.ts_ms <= state.get("last", -1):
            return state, []
        if state is not None and reading.ts_ms < state.get("resolved", -1):
            return state, []
        if isinstance(condition, Threshold):
            return self._threshold(condition, state, reading)
        if isinstance(condition, Clinical):
            return self._clinical(condition, state, reading)
        if isinstance(condition, Rate):
            return self._rate(condition, state, reading, owned)
        if isinstance(condition, Forecast):
            return self._forecast(condition, state, reading, owned)
        if isinstance(condition, SolarYield):
            return self._solar(condition, state, reading, clear_sky)
        if isinstance(condition, Absence):
            return self._seen(state, reading, owned)
        return state, []

    def _threshold(
        self, c: Threshold, state: State | None, r: Reading
    ) -> tuple[State | None, list[Change]]:
        value = r.metrics.get(c.metric)
        if value is None:
            return state, []
        phase = state["phase"] if state else "ok"
        if phase == "firing":
            assert state is not None
            if c.clears is None:
                cleared = not breached(c.op, value, c.value)
            elif c.op in ("<", "<="):
                cleared = value > c.clears  # "clears above 25"
            else:
                cleared = value < c.clears
            if cleared:
                return self._resolve(state, r, value)
            return self._repeat(state, r, value)
        holds = breached(c.op, value, c.value)
        if not holds:
            if phase == "pending":
                assert state is not None
                return self._ok(state), [self._change("cancelled", state, r, value)]
            return state, []
        if phase == "pending":
            assert state is not None
            state = {**state, "last": r.ts_ms}
            if r.ts_ms - state["since"] >= c.for_s * 1000:
                return self._fire(state, r, value)
            return state, []
        return self._start(r, value, c.for_s)

    def _clinical(
        self, c: Clinical, state: State | None, r: Reading
    ) -> tuple[State | None, list[Change]]:
        out = [
            b
            for b in c.any
            if (v := r.metrics.get(b.metric)) is not None and breached(b.op, v, b.value)
        ]
        present = [b for b in c.any if r.metrics.get(b.metric) is not None]
        if not present:
            return state, []
        phase = state["phase"] if state else "ok"
        value = r.metrics.get((out or present)[0].metric)
        detail = {"metric": (out or present)[0].metric, "patient_ref": r.patient_ref}
        if out:
            if phase == "firing":
                assert state is not None
                return self._repeat(state, r, value, detail)
            return self._start(r, value, 0, detail)
        if phase == "firing":
            assert state is not None
            return self._resolve(state, r, value, detail)
        return state, []

    def _rate(
        self, c: Rate, state: State | None, r: Reading, owned: bool
    ) -> tuple[State | None, list[Change]]:
        value = r.metrics.get(c.metric)
        if value is None:
            return state, []
        span_ms = c.per_s * 1000
        if owned and state is not None and "window" in state:
            points: list[list[Any]] = state["window"]  # made by this evaluation: ours
        else:
            state = dict(state) if state else {"phase": "ok"}
            points = list(state.get("window", []))
            state["window"] = points
        # in device-time order; kept: one point at or before the window's start
        inside = bisect.bisect_left(points, r.ts_ms - span_ms, key=_first)
        del points[: max(inside - 1, 0)]
        change = _change_over(points, r.ts_ms, value, span_ms) if points else None
        points.append([r.ts_ms, value])
        state["last"] = r.ts_ms
        if change is None:
            return state, []
        rise = change if c.direction == "rises" else -change
        detail = {"metric": c.metric, "change": round(change, 3), "per_s": c.per_s}
        if state["phase"] == "firing":
            if rise < c.by / 2:
                return self._resolve(state, r, value, detail)
            return self._repeat(state, r, value, detail)
        if rise >= c.by:
            return self._fire({**state, "since": r.ts_ms, "alert": self._id(r)}, r, value, detail)
        return state, []

    def _forecast(
        self, c: Forecast, state: State | None, r: Reading, owned: bool
    ) -> tuple[State | None, list[Change]]:
        soc = r.metrics.get("battery_soc_pct")
        grid = r.metrics.get("grid_present")
        if soc is None:
            return state, []
        saved = state.get("window") if state else None
        if owned and isinstance(saved, SocWindow):
            window = saved  # made by this evaluation: ours to change
        else:
            state = dict(state) if state else {"phase": "ok"}
            window = _window_copy(saved, c)
        assert state is not None
        window.add(r.ts_ms, soc)
        state["window"] = window if self.live_windows else window.to_state()
        state["last"] = r.ts_ms
        firing = state["phase"] == "firing"
        if not firing and grid is not False:
            return state, []  # on grid: no autonomy to judge (the fit is not needed)
        hours = hours_to_floor(window, c.floor_pct)
        finite = None if hours is None or math.isinf(hours) else hours  # JSON and the contract
        detail = {"hours": None if finite is None else round(finite, 2)}
        if firing:
            recovered = grid is True or (hours is not None and hours >= c.below_h * 1.25)
            if recovered:
                return self._resolve(state, r, finite, detail)
            return self._repeat(state, r, finite, detail)
        if hours is not None and hours < c.below_h:
            return self._fire({**state, "since": r.ts_ms, "alert": self._id(r)}, r, hours, detail)
        return state, []

    def _solar(
        self, c: SolarYield, state: State | None, r: Reading, clear_sky: ClearSkyFn | None
    ) -> tuple[State | None, list[Change]]:
        energy = r.metrics.get("energy_today_wh")
        if energy is None or clear_sky is None:
            return state, []
        expected, day_total = clear_sky(r.ts_ms)
        if day_total <= 0 or expected < day_total * c.after_pct / 100:
            return state, []
        ratio_pct = 100.0 * energy / expected
        detail = {"expected_wh": round(expected, 1), "ratio_pct": round(ratio_pct, 1)}
        phase = state["phase"] if state else "ok"
        if phase == "firing":
            assert state is not None
            new_day = r.ts_ms - state["since"] > 86_400_000
            if new_day or ratio_pct >= c.below_pct + 5:
                return self._resolve(state, r, ratio_pct, detail)
            return self._repeat(state, r, ratio_pct, detail)
        if ratio_pct < c.below_pct:
            return self._start(r, ratio_pct, 0, detail)
        return state, []

    # -- absence and presence --------------------------------------------------------

    def _seen(
        self, state: State | None, r: Reading, owned: bool
    ) -> tuple[State | None, list[Change]]:
        """A reading of an absence rule's device: remember when, and how often it reports."""
        if not (owned and state is not None):
            state = dict(state) if state else {"phase": "ok"}
        previous = state.get("last")
        state["last"] = r.ts_ms
        if previous is not None:
            gap = r.ts_ms - previous
            known = state.get("gap")
            state["gap"] = gap if known is None else min(known * 2, max(gap, known // 2, 1))
        if state["phase"] == "firing":
            return self._resolve(state, r, None)
        return state, []

    def absence_after_ms(self, state: State) -> int:
        assert isinstance(self.condition, Absence)
        if self.condition.after_s is not None:
            return int(self.condition.after_s * 1000)
        return ABSENCE_INTERVALS * int(state.get("gap") or DEFAULT_INTERVAL_MS)

    def on_clock(
        self, state: State | None, subject: str, now_ms: int
    ) -> tuple[State | None, list[Change]]:
        """Timers: a device silent past its absence limit, a Last Will held past ``after``."""
        condition = self.condition
        if state is None:
            return state, []
        if isinstance(condition, Absence):
            last = state.get("last")
            if state["phase"] != "ok" or last is None:
                return state, []
            if now_ms - last < self.absence_after_ms(state):
                return state, []
            started = last + self.absence_after_ms(state)
            alert = alert_id(self.rule.id, subject, started, 0)
            fired = {**state, "phase": "firing", "since": started, "alert": alert}
            return fired, [
                Change("firing", subject, alert, now_ms, started, None, {"silent_since_ms": last})
            ]
        if isinstance(condition, Offline):
            if (
                state.get("phase") != "pending"
                or now_ms - state["since"] < condition.after_s * 1000
            ):
                return state, []
            fired = {**state, "phase": "firing"}
            return fired, [Change("firing", subject, state["alert"], now_ms, state["since"])]
        return state, []

    def on_presence(
        self, state: State | None, subject: str, online: bool, at_ms: int
    ) -> tuple[State | None, list[Change]]:
        """A ``state`` message of an offline rule's device (or the centre's gateway)."""
        phase = state["phase"] if state else "ok"
        if not online:
            if phase != "ok":
                return state, []
            alert = alert_id(self.rule.id, subject, at_ms, 0)
            pending = {"phase": "pending", "since": at_ms, "alert": alert}
            return pending, [Change("pending", subject, alert, at_ms, at_ms)]
        if phase == "ok" or state is None:
            return state, []
        what: ChangeKind = "resolved" if phase == "firing" else "cancelled"
        return None, [Change(what, subject, state["alert"], at_ms, state["since"])]

    # -- transitions ----------------------------------------------------------------

    def _id(self, r: Reading) -> str:
        return alert_id(self.rule.id, self.subject(r), r.id_ts_ms, r.seq)

    def _start(
        self, r: Reading, value: Any, for_s: float, detail: Mapping[str, Any] | None = None
    ) -> tuple[State, list[Change]]:
        state = {"phase": "pending", "since": r.ts_ms, "last": r.ts_ms, "alert": self._id(r)}
        if for_s <= 0:
            return self._fire(state, r, value, detail)
        return state, [self._change("pending", state, r, value, detail)]

    def _fire(
        self, state: State, r: Reading, value: Any, detail: Mapping[str, Any] | None = None
    ) -> tuple[State, list[Change]]:
        state = {**state, "phase": "firing", "last": r.ts_ms}
        return state, [self._change("firing", state, r, value, detail)]

    def _repeat(
        self, state: State, r: Reading, value: Any, detail: Mapping[str, Any] | None = None
    ) -> tuple[State, list[Change]]:
        state = {**state, "last": r.ts_ms}
        return state, [self._change("repeat", state, r, value, detail)]

    def _resolve(
        self, state: State, r: Reading, value: Any, detail: Mapping[str, Any] | None = None
    ) -> tuple[State, list[Change]]:
        change = self._change("resolved", state, r, value, detail)
        return {**self._ok(state), "resolved": r.ts_ms, "last": r.ts_ms}, [change]

    @staticmethod
    def _ok(state: State) -> State:
        kept = {k: v for k, v in state.items() if k in ("window", "gap", "resolved", "last")}
        return {**kept, "phase": "ok"}

    def _change(
        self,
        what: ChangeKind,
        state: State,
        r: Reading,
        value: Any,
        detail: Mapping[str, Any] | None = None,
    ) -> Change:
        return Change(
            what, self.subject(r), state["alert"], r.ts_ms, state["since"], value, detail or {}
        )


def _window_copy(saved: Any, forecast: Forecast) -> SocWindow:
    """A window to change from a forecast state's ``window`` (live, saved or none yet)."""
    if saved is None:
        return SocWindow(max_span_ms=max(int(forecast.window_s * 1000), MIN_SPAN_MS))
    if isinstance(saved, SocWindow):
        return saved.copy()
    return SocWindow.from_state(saved)


def _first(point: list[Any]) -> Any:
    return point[0]


def _change_over(base: list[list[Any]], ts_ms: int, value: float, span_ms: float) -> float:
    """How much the value changed over the last ``span_ms`` (interpolating the start)."""
    start = ts_ms - span_ms
    split = bisect.bisect_right(base, start, key=_first)  # base is in device-time order
    if 0 < split < len(base):
        (t0, v0), (t1, v1) = base[split - 1], base[split]
        then = v0 + (v1 - v0) * (start - t0) / (t1 - t0)
    else:
        then = base[split - 1][1] if split else base[0][1]
    return float(value - then)


def jsonable(state: State | None) -> State | None:
    """``state`` as it is saved: a live forecast window (``live_windows``) in its JSON form."""
    if state is not None and isinstance(window := state.get("window"), SocWindow):
        return {**state, "window": window.to_state()}
    return state
