"""Battery autonomy: a least-squares SoC slope over a bounded, persistable window."""

from __future__ import annotations

import json
import math
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alerting.forecast import SocWindow, hours_to_floor

T0 = 1_780_000_000_000
MINUTE = 60_000


def draining(
    window: SocWindow, start_soc: float, pct_per_h: float, minutes: int, step_min: int = 1
) -> SocWindow:
    """Readings every ``step_min`` minutes over ``minutes``, ending at ``start_soc``."""
    for m in range(0, minutes + 1, step_min):
        window.add(T0 + m * MINUTE, start_soc + pct_per_h * (minutes - m) / 60)
    return window


def test_a_steady_ten_percent_an_hour_from_sixty_reaches_twenty_in_four_hours() -> None:
    window = draining(SocWindow(), start_soc=60.0, pct_per_h=10.0, minutes=30)
    assert hours_to_floor(window, 20.0) == pytest.approx(4.0)


def test_whole_percent_readings_of_a_real_bms_still_give_about_four_hours() -> None:
    window = SocWindow()
    for m in range(61):
        window.add(T0 + m * MINUTE, float(round(70.0 - 10.0 * m / 60)))
    assert window.latest_soc == 60.0
    assert hours_to_floor(window, 20.0) == pytest.approx(4.0, rel=0.05)


def test_charging_or_flat_never_runs_out() -> None:
    charging = draining(SocWindow(), start_soc=60.0, pct_per_h=-5.0, minutes=30)
    flat = draining(SocWindow(), start_soc=60.0, pct_per_h=0.0, minutes=30)
    assert hours_to_floor(charging, 20.0) == math.inf
    assert hours_to_floor(flat, 20.0) == math.inf


def test_discharging_below_the_floor_already_is_zero_hours() -> None:
    window = draining(SocWindow(), start_soc=15.0, pct_per_h=10.0, minutes=30)
    assert hours_to_floor(window, 20.0) == 0.0


def test_too_few_points_or_too_short_a_span_cannot_tell() -> None:
    two = SocWindow()
    two.add(T0, 60.0)
    two.add(T0 + 30 * MINUTE, 55.0)
    short = SocWindow()
    for s in range(0, 240, 10):  # 24 readings over 4 minutes
        short.add(T0 + s * 1000, 60.0 - s / 360)
    assert hours_to_floor(SocWindow(), 20.0) is None
    assert hours_to_floor(two, 20.0) is None
    assert hours_to_floor(short, 20.0) is None
    two.add(T0 + 15 * MINUTE, 57.5)
    assert hours_to_floor(two, 20.0) == pytest.approx(3.5)


def test_a_replayed_reading_is_ignored_and_late_ones_are_put_in_order() -> None:
    in_order = draining(SocWindow(), start_soc=60.0, pct_per_h=10.0, minutes=30)
    shuffled = SocWindow()
    points = in_order.points
    for ts, soc in points[1::2] + points[::2]:
        assert shuffled.add(ts, soc)
    for ts, soc in points[:5]:
        assert not shuffled.add(ts, soc)
    assert not shuffled.add(points[3][0], 99.0)  # one reading per device time: first kept
    assert shuffled.points == points
    assert hours_to_floor(shuffled, 20.0) == hours_to_floor(in_order, 20.0)


def test_the_window_keeps_only_the_last_hour_and_at_most_max_points() -> None:
    by_span = draining(SocWindow(max_span_ms=60 * MINUTE), 60.0, 10.0, minutes=90)
    assert len(by_span) == 61
    assert by_span.points[0][0] == T0 + 30 * MINUTE
    assert not by_span.add(T0, 75.0)  # older than the hour the window holds
    assert len(by_span) == 61

    by_count = SocWindow(max_points=120)
    for s in range(180):  # every 10 s for 30 minutes
        by_count.add(T0 + s * 10_000, 60.0 - s / 360)
    assert len(by_count) == 120
    assert by_count.points[0][0] == T0 + 60 * 10_000
    assert not by_count.add(T0 + 5_000, 70.0)  # older than all 120 kept: dropped at once
    assert len(by_count) == 120


def test_state_survives_a_round_trip_through_json() -> None:
    window = draining(SocWindow(max_span_ms=45 * MINUTE, max_points=50), 60.0, 10.0, 30)
    restored = SocWindow.from_state(json.loads(json.dumps(window.to_state())))
    assert restored.points == window.points
    assert (restored.max_span_ms, restored.max_points) == (45 * MINUTE, 50)
    assert hours_to_floor(restored, 20.0) == hours_to_floor(window, 20.0)


def test_a_window_saved_as_pairs_by_an_earlier_version_is_read_back() -> None:
    window = draining(SocWindow(max_span_ms=45 * MINUTE, max_points=50), 60.0, 10.0, 30)
    pairs = {"max_span_ms": 45 * MINUTE, "max_points": 50, "points": window.points}
    restored = SocWindow.from_state(json.loads(json.dumps(pairs)))
    assert restored.points == window.points
    assert hours_to_floor(restored, 20.0) == hours_to_floor(window, 20.0)


@pytest.mark.parametrize(
    "state",
    [
        {},
        {"max_span_ms": 3_600_000, "max_points": 120, "points": "no"},
        {"max_span_ms": 3_600_000, "max_points": 120, "points": [[1, 2, 3]]},
        {"max_span_ms": 3_600_000, "max_points": 120, "points": [["1", 50.0]]},
        {"max_span_ms": 1_000, "max_points": 120, "points": []},
        {"max_span_ms": 3_600_000, "max_points": 120, "ts": [1, 2], "soc": [50.0]},
        {"max_span_ms": 3_600_000, "max_points": 120, "ts": [2, 1], "soc": [50.0, 49.0]},
    ],
)
def test_a_malformed_state_is_refused_by_name(state: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"state|max_span_ms"):
        SocWindow.from_state(state)


def exact_slope_per_hour(points: list[tuple[int, float]]) -> float:
    """The least-squares slope of the points in exact arithmetic, %/h."""
    n = len(points)
    st_ = sum(Fraction(t) for t, _ in points)
    ss = sum(Fraction(s) for _, s in points)
    covary = n * sum(Fraction(t) * Fraction(s) for t, s in points) - st_ * ss
    spread = n * sum(Fraction(t) ** 2 for t, _ in points) - st_ * st_
    return float(covary / spread * 3_600_000)


def fits_exactly(window: SocWindow) -> float | None:
    """The window's slope, checked against the exact one of its points."""
    slope = window.slope_per_hour()
    points = window.points
    if slope is None:
        assert len(points) < 3 or points[-1][0] - points[0][0] < 5 * MINUTE
        return None
    # charges are counted in 2**-32 %: about 1e-8 %/h over 5 minutes
    assert slope == pytest.approx(exact_slope_per_hour(points), rel=1e-9, abs=1e-8)
    if len({soc for _, soc in points}) == 1:
        assert slope == 0.0  # a flat charge
    return slope


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            # minutes on from the last reading: late (back), replayed (0), a gap
            st.sampled_from([1] * 8 + [-3, -1, 0, 2, 7, 40]),
            st.floats(min_value=0, max_value=100, allow_nan=False),
            st.booleans(),  # fitted after this reading (the sums are kept from then on)
        ),
        min_size=1,
        max_size=60,
    ),
    st.integers(min_value=3, max_value=40),  # most points kept
    st.integers(min_value=0, max_value=60),  # a copy taken after this many readings
)
def test_the_kept_sums_fit_as_the_points_do_whatever_came_and_went(
    steps: list[tuple[int, float, bool]], most: int, copied_at: int
) -> None:
    """The fit's sums move with every reading added and trimmed once a fit made them;
    they give the exact least-squares slope of the points kept, the same slope in a
    copy that moved on its own, in a window read back from its state and in one given
    the same points in another order."""
    window = SocWindow(max_span_ms=30 * MINUTE, max_points=most)
    twin = window.copy()
    minute = 0
    for n, (step, soc, fitted) in enumerate(steps):
        if n == copied_at:
            twin = window.copy()
        minute += step
        window.add(T0 + minute * MINUTE, soc)
        if fitted:
            fits_exactly(window)
    twin.add(T0 - 29 * MINUTE, 50.0)  # the copy moves apart from the window
    fits_exactly(twin)
    newest = window.points[-1][0] if len(window) else T0
    window.extend([newest + MINUTE, newest + 2 * MINUTE], [20.0, 19.5])  # a calm batch
    slope = fits_exactly(window)
    points = window.points
    read_back = SocWindow.from_state(json.loads(json.dumps(window.to_state())))
    assert read_back.slope_per_hour() == slope
    again = SocWindow(max_span_ms=30 * MINUTE, max_points=most)
    again.extend([t for t, _ in points], [s for _, s in points])
    for t, s in reversed(points):
        again.add(t, s)  # replays: ignored
    assert again.points == points
    assert again.slope_per_hour() == slope
