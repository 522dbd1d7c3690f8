"""Clear-sky expectation: pvlib's Ineichen GHI for a horizontal array, per local day."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest
from pvlib.location import Location

from alerting.solar import ClearSky, DayCurves

# Samba district, Jammu and Kashmir: a centre's place and India's clock.
LAT, LON, OFFSET_H = 32.56, 75.12, 5.5
IST = timezone(timedelta(hours=OFFSET_H))

# pvlib 0.16 still calls a pandas 3 deprecated name; pandas is pinned below 4 for it.
pytestmark = pytest.mark.filterwarnings(
    "ignore:DatetimeIndex.dayofyear is deprecated:DeprecationWarning"
)


def ist_ms(month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> int:
    return int(datetime(2026, month, day, hour, minute, second, tzinfo=IST).timestamp() * 1000)


@pytest.fixture(scope="module")
def curves() -> DayCurves:
    return DayCurves()


@pytest.fixture
def samba(curves: DayCurves) -> ClearSky:
    return ClearSky(LAT, LON, OFFSET_H, rated_power_w=1000.0, curves=curves)


def test_a_june_day_expects_more_than_a_december_day(samba: ClearSky) -> None:
    june = samba.expected_day_energy_wh(ist_ms(6, 21, 12))
    december = samba.expected_day_energy_wh(ist_ms(12, 21, 12))
    assert june > 2 * december


def test_a_kilowatt_lying_flat_at_samba_makes_a_plausible_day(samba: ClearSky) -> None:
    # pvlib 0.16 gives 8.18 kWh/m² clear-sky GHI on 21 June there and 3.49 on 21 December;
    # at 0.8 performance ratio a 1 kW array makes 6.5 and 2.8 kWh.
    assert 6_000 < samba.expected_day_energy_wh(ist_ms(6, 21)) < 7_000
    assert 2_300 < samba.expected_day_energy_wh(ist_ms(12, 21)) < 3_300


def test_the_expectation_matches_pvlib_integrated_by_the_minute(samba: ClearSky) -> None:
    until = ist_ms(6, 21, 10, 37, 30)
    times = pd.date_range(
        pd.Timestamp(ist_ms(6, 21), unit="ms", tz="UTC"),
        pd.Timestamp(until, unit="ms", tz="UTC"),
        freq="30s",
    )
    ghi = Location(LAT, LON, tz="UTC").get_clearsky(times, model="ineichen")["ghi"].to_numpy()
    reference_wh = float(np.trapezoid(ghi, dx=30 / 3600)) * 0.8  # 1 kW at 1000 W/m²
    assert samba.expected_energy_wh(until) == pytest.approx(reference_wh, rel=0.01)


def test_nothing_is_expected_before_sunrise(samba: ClearSky) -> None:
    assert samba.expected_energy_wh(ist_ms(6, 21, 0, 0)) == 0.0
    assert samba.expected_energy_wh(ist_ms(6, 21, 5, 0)) == 0.0  # sunrise about 05:25
    assert samba.expected_energy_wh(ist_ms(12, 21, 7, 15)) == 0.0  # sunrise about 07:25
    assert samba.expected_energy_wh(ist_ms(6, 21, 7, 0)) > 0.0


def test_the_expectation_grows_through_the_day_and_stops_at_night(samba: ClearSky) -> None:
    values = [samba.expected_energy_wh(ist_ms(6, 21) + m * 60_000) for m in range(1440)]
    steps = np.diff(values)
    assert (steps >= 0).all()
    noon = 12 * 60
    assert (steps[noon - 120 : noon + 120] > 0).all()
    assert values[-1] == pytest.approx(samba.expected_day_energy_wh(ist_ms(6, 21)), rel=1e-6)
    assert values[23 * 60] == values[-1]  # nothing after dark


def test_local_midnight_starts_a_new_day_at_zero(samba: ClearSky) -> None:
    midnight = ist_ms(6, 22)  # 18:30 UTC on 21 June
    assert samba.local_midnight_ms(midnight - 1) == ist_ms(6, 21)
    assert samba.local_midnight_ms(midnight) == midnight
    assert samba.expected_energy_wh(midnight - 1) == pytest.approx(
        samba.expected_day_energy_wh(ist_ms(6, 21))
    )
    assert samba.expected_energy_wh(midnight) == 0.0
    assert samba.expected_energy_wh(midnight + 3 * 3_600_000) == 0.0


def test_rated_power_and_performance_ratio_scale_the_same_sky(curves: DayCurves) -> None:
    noon = ist_ms(6, 21, 12)
    one_kw = ClearSky(LAT, LON, OFFSET_H, 1000.0, curves=curves)
    three_kw = ClearSky(LAT, LON, OFFSET_H, 3000.0, performance_ratio=0.75, curves=curves)
    assert three_kw.expected_energy_wh(noon) == pytest.approx(
        one_kw.expected_energy_wh(noon) * 3 * 0.75 / 0.8
    )


def test_the_southern_hemisphere_has_its_summer_in_december() -> None:
    cape_town = ClearSky(-33.92, 18.42, 2.0, 1000.0)
    june = int(datetime(2026, 6, 21, 12, tzinfo=UTC).timestamp() * 1000)
    december = int(datetime(2026, 12, 21, 12, tzinfo=UTC).timestamp() * 1000)
    assert cape_town.expected_day_energy_wh(december) > cape_town.expected_day_energy_wh(june)


def test_one_pvlib_run_per_place_and_day_and_identical_answers_from_the_cache() -> None:
    curves = DayCurves(max_curves=2)
    samba = ClearSky(LAT, LON, OFFSET_H, 1000.0, curves=curves)
    other_array = ClearSky(LAT, LON, OFFSET_H, 2000.0, curves=curves)
    at = ist_ms(3, 1, 14, 7)
    first = samba.expected_energy_wh(at)
    for _ in range(1000):
        assert samba.expected_energy_wh(at) == first
    assert other_array.expected_energy_wh(at) == pytest.approx(2 * first)
    assert curves.builds == 1

    samba.expected_energy_wh(ist_ms(3, 2, 9))
    samba.expected_energy_wh(ist_ms(3, 3, 9))  # a third day: 1 March is dropped
    assert (len(curves), curves.builds) == (2, 3)
    assert ClearSky(LAT, LON, OFFSET_H, 1000.0, curves=curves).expected_energy_wh(at) == first
    assert curves.builds == 4


def test_a_curve_warmed_the_evening_before_is_ready_at_midnight() -> None:
    curves = DayCurves()
    samba = ClearSky(LAT, LON, OFFSET_H, 1000.0, curves=curves)
    evening = ist_ms(6, 21, 21)
    samba.expected_energy_wh(evening)
    curves.get(samba.place, samba.place.local_day(evening) + 1)
    builds = curves.builds
    assert samba.expected_energy_wh(ist_ms(6, 22, 0, 5)) == 0.0
    assert samba.expected_energy_wh(ist_ms(6, 22, 12)) > 0.0
    assert curves.builds == builds == 2


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ((95.0, LON, OFFSET_H, 1000.0), "latitude"),
        ((LAT, 181.0, OFFSET_H, 1000.0), "longitude"),
        ((LAT, LON, 15.0, 1000.0), "utc_offset_h"),
        ((LAT, LON, OFFSET_H, -1.0), "rated_power_w"),
        ((LAT, LON, OFFSET_H, float("nan")), "rated_power_w"),
    ],
)
def test_an_impossible_site_is_refused_by_name(
    args: tuple[float, float, float, float], field: str
) -> None:
    with pytest.raises(ValueError, match=field):
        ClearSky(*args)


def test_a_performance_ratio_outside_zero_to_one_is_refused() -> None:
    with pytest.raises(ValueError, match="performance_ratio"):
        ClearSky(LAT, LON, OFFSET_H, 1000.0, performance_ratio=0.0)
