"""One evaluation of a rule per subject, in device time: what fires, when, and only once."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from alerting.defaults import DEFAULT_PACK
from alerting.evaluation import Change, Evaluator, Reading, State, jsonable
from alerting.rules import Rule

MIN = 60_000
T0 = 1_780_000_000_000


def evaluator(key: str) -> Evaluator:
    return Evaluator(Rule(id=key, **DEFAULT_PACK[key].model_dump(by_alias=True)))


def power(minute: float, seq: int, **metrics: Any) -> Reading:
    return Reading("ctr-1", "pwr-1", "power", int(T0 + minute * MIN), seq, metrics)


def feed(
    ev: Evaluator, readings: list[Reading], state: State | None = None
) -> tuple[State | None, list[Change]]:
    changes: list[Change] = []
    for reading in readings:
        state, found = ev.on_reading(state, reading)
        changes += found
    return state, changes


def soc_series(values: Sequence[float]) -> list[Reading]:
    return [power(i, i, battery_soc_pct=v) for i, v in enumerate(values)]


def test_battery_low_waits_its_duration_fires_once_and_clears_past_the_hysteresis() -> None:
    ev = evaluator("battery-low")
    # below 20 from minute 1; the 10 min are up at minute 11; 22 does not clear (needs > 25)
    values = [30, 19, 18, 18, 17, 17, 16, 16, 15, 15, 15, 14, 14, 22, 24, 26]
    _, changes = feed(ev, soc_series(values))
    assert [(c.what, (c.at_ms - T0) // MIN) for c in changes if c.what != "repeat"] == [
        ("pending", 1),
        ("firing", 11),
        ("resolved", 15),
    ]
    assert len({c.alert_id for c in changes}) == 1
    assert changes[1].started_ms == T0 + MIN


def test_a_dip_shorter_than_the_duration_is_cancelled_not_fired() -> None:
    _, changes = feed(evaluator("battery-low"), soc_series([30, 19, 18, 21, 30]))
    assert [c.what for c in changes] == ["pending", "cancelled"]


def test_a_replayed_or_older_reading_changes_nothing() -> None:
    ev = evaluator("battery-low")
    readings = soc_series([30, 19, 18, 18, 17, 17, 16, 16, 15, 15, 15, 14, 26])
    state, _ = feed(ev, readings)
    # the whole batch again (a gateway resending after a reconnect), then a stale low reading
    again, changes = feed(ev, [*readings, power(3.5, 99, battery_soc_pct=5)], state)
    assert changes == []
    assert again == state


def test_the_centre_and_the_gateway_derive_the_same_alert_id_from_the_same_reading() -> None:
    low = Reading(
        "ctr-1",
        "ox-1",
        "pulse_oximeter",
        T0,
        7,
        {"spo2_pct": 85.0, "patient_ref": "ab" * 32},
        "ab" * 32,
    )
    (_, at_centre), (_, at_edge) = (evaluator("spo2-low").on_reading(None, low) for _ in range(2))
    assert at_centre[0].what == "firing" and at_centre[0].alert_id == at_edge[0].alert_id
    assert at_centre[0].value == 85.0 and at_centre[0].detail["patient_ref"] == "ab" * 32


def test_clinical_fires_at_once_per_patient_and_another_patient_does_not_resolve_it() -> None:
    ev = evaluator("spo2-low")

    def ox(minute: int, spo2: float, patient: str) -> Reading:
        return Reading(
            "ctr-1",
            "ox-1",
            "pulse_oximeter",
            T0 + minute * MIN,
            minute,
            {"spo2_pct": spo2},
            patient,
        )

    states: dict[str, State | None] = {}
    whats = []
    for reading in [ox(0, 85, "p1"), ox(1, 97, "p2"), ox(2, 86, "p1"), ox(3, 95, "p1")]:
        subject = ev.subject(reading)
        states[subject], changes = ev.on_reading(states.get(subject), reading)
        whats += [(c.what, reading.patient_ref) for c in changes]
    assert whats == [("firing", "p1"), ("repeat", "p1"), ("resolved", "p1")]


def test_bp_crisis_fires_on_either_bound() -> None:
    ev = evaluator("bp-crisis")
    diastolic = Reading(
        "ctr-1", "bp-1", "bp_monitor", T0, 1, {"systolic_mmhg": 150.0, "diastolic_mmhg": 125.0}
    )
    _, changes = ev.on_reading(None, diastolic)
    assert [c.what for c in changes] == ["firing"] and changes[0].detail[
        "metric"
    ] == "diastolic_mmhg"


def test_battery_temperature_rising_fast_fires_and_clears() -> None:
    ev = evaluator("battery-heating")
    temps = [30, 30.5, 31, 32, 33, 34, 34.2, 34.3, 34.3, 34.3, 34.3, 34.3, 34.3, 34.3, 34.3, 34.3]
    _, changes = feed(ev, [power(i, i, battery_temp_c=t) for i, t in enumerate(temps)])
    firing = [c for c in changes if c.what == "firing"]
    assert len(firing) == 1 and (firing[0].at_ms - T0) // MIN == 3  # +2 °C within 10 min
    assert changes[-1].what == "resolved"


def test_autonomy_forecast_fires_only_without_grid() -> None:
    ev = evaluator("autonomy-low")
    draining = [power(i * 5, i, battery_soc_pct=40 - 1.0 * i, grid_present=True) for i in range(6)]
    _, with_grid = feed(ev, draining)
    assert with_grid == []  # 12 %/h: 2.5 h to 10%, but the grid carries the centre
    cut = [power(i * 5, i, battery_soc_pct=40 - 1.0 * i, grid_present=False) for i in range(6)]
    _, changes = feed(ev, cut)
    assert [c.what for c in changes][:1] == ["firing"]
    assert 1.5 < changes[0].value < 3.5  # type: ignore[operator]


def test_an_autonomy_alert_resolved_by_a_charging_battery_carries_no_infinite_value() -> None:
    """Charging off grid (the sun), the battery never reaches its floor (infinite hours):
    the resolution says no value rather than infinity, which neither JSON nor the contract
    can carry."""
    ev = evaluator("autonomy-low")
    cut = [power(i * 5, i, battery_soc_pct=40 - 1.0 * i, grid_present=False) for i in range(6)]
    state, fired = feed(ev, cut)
    assert [c.what for c in fired][:1] == ["firing"]
    charging = [
        power(30, 6, battery_soc_pct=60, grid_present=False),
        power(35, 7, battery_soc_pct=70, grid_present=False),
    ]
    _, later = feed(ev, charging, state)
    resolved = [c for c in later if c.what == "resolved"]
    assert len(resolved) == 1
    assert resolved[0].value is None and resolved[0].detail["hours"] is None


def test_a_silent_device_fires_absence_after_three_intervals_and_resolves_when_heard() -> None:
    ev = evaluator("device-silent")
    state, _ = feed(ev, [power(i, i, battery_soc_pct=50) for i in range(5)])
    assert state is not None
    subject = "ctr-1/pwr-1"
    state, early = ev.on_clock(state, subject, T0 + 6 * MIN)
    assert early == []
    state, fired = ev.on_clock(state, subject, T0 + 8 * MIN)  # last at 4 min + 3 x 1 min
    assert [c.what for c in fired] == ["firing"]
    assert state is not None
    state, again = ev.on_clock(state, subject, T0 + 9 * MIN)
    assert again == []
    _, back = ev.on_reading(state, power(9, 9, battery_soc_pct=50))
    assert [c.what for c in back] == ["resolved"]


def test_a_gateway_last_will_held_past_the_offline_rule_fires_and_a_birth_resolves() -> None:
    ev = evaluator("centre-offline")
    state, changes = ev.on_presence(None, "ctr-1", False, T0)
    assert [c.what for c in changes] == ["pending"]
    assert state is not None
    state, none_yet = ev.on_clock(state, "ctr-1", T0 + 9 * MIN)
    assert none_yet == []
    state, fired = ev.on_clock(state, "ctr-1", T0 + 10 * MIN)
    assert [c.what for c in fired] == ["firing"]
    _, back = ev.on_presence(state, "ctr-1", True, T0 + 30 * MIN)
    assert [c.what for c in back] == ["resolved"]


def test_a_short_drop_is_cancelled() -> None:
    ev = evaluator("centre-offline")
    state, _ = ev.on_presence(None, "ctr-1", False, T0)
    _, back = ev.on_presence(state, "ctr-1", True, T0 + MIN)
    assert [c.what for c in back] == ["cancelled"]


def test_solar_yield_compares_with_the_expectation_only_once_enough_is_due() -> None:
    ev = evaluator("solar-yield")

    def sky(ts_ms: int) -> tuple[float, float]:
        hours = (ts_ms - T0) / 3_600_000
        return 1000.0 * hours, 6000.0  # 1 kWh per hour so far, 6 kWh in the day

    morning, _ = ev.on_reading(None, power(60, 1, energy_today_wh=100), sky)
    assert morning is None  # 1 kWh due of 6: too early to judge
    _, changes = ev.on_reading(None, power(180, 2, energy_today_wh=500), sky)
    assert [c.what for c in changes] == ["firing"] and changes[0].detail["ratio_pct"] < 30


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(min_value=0, max_value=100, allow_nan=False), min_size=1, max_size=40),
    st.integers(0, 39),
)
def test_replaying_a_prefix_after_any_point_never_adds_a_change(
    values: list[float], cut: int
) -> None:
    """What a redelivery after a crash does: the saved state, then the same readings again."""
    ev = evaluator("battery-low")
    readings = soc_series(values)
    cut = min(cut, len(readings))
    state, first = feed(ev, readings[:cut])
    state, replayed = feed(ev, readings[:cut], state)
    _, rest = feed(ev, readings[cut:], state)
    _, straight = feed(ev, readings)
    assert replayed == []
    assert first + rest == straight


POWER_RULES = ("battery-low", "battery-hot", "battery-heating", "autonomy-low", "device-silent")


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(min_value=0.5, max_value=30),  # minutes since the previous reading
            st.floats(min_value=0, max_value=100, allow_nan=False),  # charge
            st.floats(min_value=20, max_value=60, allow_nan=False),  # battery temperature
            st.booleans(),  # grid
        ),
        min_size=1,
        max_size=40,
    ),
    st.sampled_from(POWER_RULES),
    st.booleans(),
)
def test_a_batch_of_readings_gives_what_one_call_per_reading_gives(
    steps: list[tuple[float, float, float, bool]], key: str, live_windows: bool
) -> None:
    """The engine hands a device's readings of a round over together (on_readings)."""
    minute = 0.0
    readings = []
    for seq, (gap, soc, temp, grid) in enumerate(steps):
        minute += gap
        readings.append(
            power(minute, seq, battery_soc_pct=soc, battery_temp_c=temp, grid_present=grid)
        )
    rule = Rule(id=key, **DEFAULT_PACK[key].model_dump(by_alias=True))
    one = Evaluator(rule, live_windows=live_windows)
    batched = Evaluator(rule, live_windows=live_windows)
    state, expected = feed(one, readings)
    got: list[Change] = []
    at, batch_state = 0, None
    while at < len(readings):
        batch_state, changes, at = batched.on_readings(batch_state, readings, at)
        got += changes
    assert got == expected
    assert jsonable(batch_state) == jsonable(state)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            # minutes on (0 or less: a replay, which makes the batch go one by one)
            st.sampled_from([1.0] * 30 + [0.5, 4.0, 25.0, 0.0, -3.0]),
            st.floats(min_value=60, max_value=62, allow_nan=False),  # charge, nearly steady
            # temperature: a jump now and then (the rate rule fires at 2 degrees in 10 minutes)
            st.sampled_from([30.0, 30.4, 30.9, 31.5] * 4 + [34.0]),
            st.sampled_from([True] * 8 + [None, False]),  # grid (None: not in the reading)
            st.booleans(),  # the reading carries the charge and temperature
        ),
        min_size=2,
        max_size=40,
    ),
    st.sampled_from(["battery-heating", "autonomy-low"]),
    st.booleans(),
    st.integers(min_value=0, max_value=40),
)
def test_a_calm_batch_after_earlier_rounds_gives_what_one_call_per_reading_gives(
    steps: list[tuple[float, float, float, bool | None, bool]],
    key: str,
    live_windows: bool,
    cut: int,
) -> None:
    """Rate and forecast rules move their windows a batch at a time while nothing can
    fire; the states and changes are the same as one reading after another, also
    across rounds, with replayed readings and readings without the metric."""
    minute = 0.0
    readings = []
    for seq, (step, soc, temp, grid, carries) in enumerate(steps):
        minute += step
        metrics: dict[str, Any] = {"load_power_w": 100.0}
        if carries:
            metrics |= {"battery_soc_pct": soc, "battery_temp_c": temp}
        if grid is not None:
            metrics["grid_present"] = grid
        readings.append(power(minute, seq, **metrics))
    rule = Rule(id=key, **DEFAULT_PACK[key].model_dump(by_alias=True))
    one = Evaluator(rule, live_windows=live_windows)
    batched = Evaluator(rule, live_windows=live_windows)
    state, expected = feed(one, readings)
    got: list[Change] = []
    batch_state: State | None = None
    for part in (readings[:cut], readings[cut:]):  # two rounds
        at = 0
        while at < len(part):
            batch_state, changes, at = batched.on_readings(batch_state, part, at)
            got += changes
    assert got == expected
    assert jsonable(batch_state) == jsonable(state)


def test_a_jump_a_replay_or_the_grid_going_out_inside_a_batch_is_judged_as_one_by_one() -> None:
    minutes = [*range(14), 13, 14, 15, 16]  # minute 13 replayed
    temps = [30.0, 30.1] * 7 + [30.2, 30.4, 33.0, 30.5]  # 3 degrees up in 10 minutes at 15
    readings = [
        power(
            m,
            seq,
            battery_temp_c=t,
            battery_soc_pct=60.0 - m,  # 60 %/h down: under 4 h once the grid is out
            grid_present=m < 15,
        )
        for seq, (m, t) in enumerate(zip(minutes, temps, strict=True))
    ]
    n = len(readings)
    for key in ("battery-heating", "autonomy-low"):
        one = evaluator(key)
        after = [feed(one, readings[:i]) for i in range(n + 1)]  # state and changes by then
        assert [c.what for c in after[n][1]][:1] == ["firing"]
        for a, b in itertools.combinations_with_replacement(range(n + 1), 2):  # three rounds
            batched = evaluator(key)
            got: list[Change] = []
            batch_state: State | None = None
            for start, end in ((0, a), (a, b), (b, n)):
                at = start
                while at < end:
                    batch_state, changes, at = batched.on_readings(batch_state, readings[:end], at)
                    got += changes
                state, expected = after[end]
                assert (got, jsonable(batch_state)) == (expected, jsonable(state)), (key, a, b)


@settings(max_examples=400, deadline=None)
@given(
    st.none() | st.integers(min_value=-3 * MIN, max_value=3 * MIN),  # last, from the first
    st.none() | st.integers(min_value=1, max_value=3 * MIN),  # the interval learnt so far
    st.none() | st.integers(min_value=-3 * MIN, max_value=3 * MIN),  # last resolution
    st.lists(
        # steadily a minute, jitter, a slower or faster patch, a replay, a jump
        st.sampled_from([MIN] * 12 + [MIN - 7, MIN + 13, 2 * MIN, MIN // 3, 1, 0, -MIN, 9 * MIN]),
        max_size=30,
    ),
    st.integers(min_value=0, max_value=3),
)
def test_an_absence_rule_learns_from_a_batch_what_it_learns_one_by_one(
    last: int | None, gap: int | None, resolved: int | None, steps: list[int], start: int
) -> None:
    """A device's readings of a round move an absence rule's last time and interval as
    one reading after another does: steady, jittered, slower, faster, replayed, from
    any state a calm device can be in."""
    state: State = {"phase": "ok"}
    for key, value in (("last", last), ("resolved", resolved)):
        if value is not None:
            state[key] = T0 + value
    if gap is not None:
        state["gap"] = gap
    times = list(itertools.accumulate(steps, initial=T0))[1:]
    readings = [Reading("ctr-1", "pwr-1", "power", ts, seq, {}) for seq, ts in enumerate(times)]
    start = min(start, len(readings))
    silent = evaluator("device-silent")
    expected, changes = feed(silent, readings[start:], dict(state))
    got, batch_changes, at = silent.on_readings(dict(state), readings, start)
    assert (batch_changes, changes, at) == ([], [], len(readings))
    assert jsonable(got) == jsonable(expected)
