"""Clear-sky expectation for the "expected solar yield" rule.

The rule compares the energy a centre's array made since local midnight with what it
would have made under a clear sky. The sky comes from pvlib, not from a formula of ours:

- global horizontal irradiance (GHI) from the Ineichen-Perez clear-sky model
  (``pvlib.clearsky.ineichen``, through ``Location.get_clearsky(model="ineichen")``);
- the Linke turbidity of the place and date from pvlib's bundled monthly climatology
  (``pvlib.clearsky.lookup_linke_turbidity``, interpolated between months);
- the altitude from pvlib's bundled map (``pvlib.location.lookup_altitude``);
- sun positions from NREL's SPA (``pvlib.solarposition.spa_python``).

Both lookups read HDF5 files shipped inside pvlib with h5py, which pvlib requires, so they
are always there: no fallback (such as a fixed turbidity) is needed or written.

The array is taken as lying horizontal (it sees GHI), rated at STC (1000 W/m²) and
derated by a performance ratio: ``W = GHI / 1000 * rated_power_w * performance_ratio``.
A tilted array makes more than that in winter, so the expectation errs low, which is the
safe side for a rule that fires when the yield falls *below* a share of it.

Speed: the engine asks once per power reading. pvlib runs once per (place, local day) and
yields a :class:`DayCurve`, the day's cumulative clear-sky energy in Wh/m² at 5-minute
steps (trapezoid rule); :class:`DayCurves` keeps them in a bounded LRU (4,096 by default,
under 3 kB each with their keys, so 11 MB when full; least recently used dropped first). A
call is then an index and a linear interpolation in plain Python. The curve does not depend
on the array, so centres at one place share it.
Local time is UTC plus a fixed offset (``utc_offset_h``): no daylight-saving rules.
"""

from __future__ import annotations

import math
from array import array
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pvlib.location import Location, lookup_altitude

MS_PER_DAY = 86_400_000
STEP_MS = 300_000  # 5 minutes
STEPS = MS_PER_DAY // STEP_MS
STC_IRRADIANCE_W_M2 = 1000.0
DEFAULT_MAX_CURVES = 4096


@dataclass(frozen=True, slots=True)
class Place:
    """Where an array stands and its local clock: the key of a day's curve."""

    latitude: float
    longitude: float
    utc_offset_h: float

    def __post_init__(self) -> None:
        if not -90.0 <= self.latitude <= 90.0:
            raise ValueError(f"latitude {self.latitude} is outside -90..90")
        if not -180.0 <= self.longitude <= 180.0:
            raise ValueError(f"longitude {self.longitude} is outside -180..180")
        if not -12.0 <= self.utc_offset_h <= 14.0:
            raise ValueError(f"utc_offset_h {self.utc_offset_h} is outside -12..14")

    @property
    def offset_ms(self) -> int:
        return round(self.utc_offset_h * 3_600_000)

    def local_day(self, ts_ms: int) -> int:
        """The local day containing ``ts_ms``, as whole days since 1970-01-01 local."""
        return (ts_ms + self.offset_ms) // MS_PER_DAY

    def midnight_ms(self, day: int) -> int:
        """The epoch ms of local midnight starting ``day``."""
        return day * MS_PER_DAY - self.offset_ms


@dataclass(frozen=True, slots=True)
class DayCurve:
    """One local day's cumulative clear-sky energy, Wh/m², at ``STEP_MS`` steps."""

    midnight_ms: int
    cumulative_wh_m2: array[float]  # STEPS + 1 doubles, at midnight_ms + i * STEP_MS

    def energy_wh_m2(self, until_ms: int) -> float:
        """Clear-sky energy from local midnight to ``until_ms``, clamped to the day."""
        elapsed = until_ms - self.midnight_ms
        if elapsed <= 0:
            return 0.0
        step, rest = divmod(elapsed, STEP_MS)
        cumulative = self.cumulative_wh_m2
        if step >= STEPS:
            return cumulative[STEPS]
        low = cumulative[step]
        return low + (cumulative[step + 1] - low) * (rest / STEP_MS)

    @property
    def total_wh_m2(self) -> float:
        return self.cumulative_wh_m2[STEPS]


def build_day_curve(location: Location, midnight_ms: int) -> DayCurve:
    """Run pvlib for one local day starting at ``midnight_ms`` (vectorised, ~10 ms)."""
    start = pd.Timestamp(midnight_ms, unit="ms", tz="UTC")
    times = pd.date_range(start, periods=STEPS + 1, freq=pd.Timedelta(milliseconds=STEP_MS))
    ghi = np.nan_to_num(location.get_clearsky(times, model="ineichen")["ghi"].to_numpy())
    ghi = np.clip(ghi, 0.0, None)
    step_h = STEP_MS / 3_600_000
    cumulative = np.concatenate(([0.0], np.cumsum((ghi[1:] + ghi[:-1]) * (step_h / 2))))
    return DayCurve(midnight_ms, array("d", cumulative.tolist()))


class DayCurves:
    """Bounded LRU of :class:`DayCurve` by (place, local day).

    One per engine, used from one thread. ``builds`` counts pvlib runs. Each place's
    pvlib ``Location`` (its altitude looked up once) is kept beside, under the same bound.

    A build takes about 10 ms, and every place of one time zone needs a new curve at the
    same local midnight (1,000 places: about 10 s of CPU). An engine with many places can
    warm tomorrow's curves at idle moments of the evening with
    ``get(place, place.local_day(now_ms) + 1)``.
    """

    def __init__(self, max_curves: int = DEFAULT_MAX_CURVES) -> None:
        if max_curves < 1:
            raise ValueError("max_curves must be at least 1")
        self._max = max_curves
        self._curves: OrderedDict[tuple[Place, int], DayCurve] = OrderedDict()
        self._locations: OrderedDict[Place, Location] = OrderedDict()
        self.builds = 0

    def __len__(self) -> int:
        return len(self._curves)

    def get(self, place: Place, day: int) -> DayCurve:
        key = (place, day)
        curve = self._curves.get(key)
        if curve is not None:
            self._curves.move_to_end(key)
            return curve
        curve = build_day_curve(self._location(place), place.midnight_ms(day))
        self.builds += 1
        self._curves[key] = curve
        if len(self._curves) > self._max:
            self._curves.popitem(last=False)
        return curve

    def _location(self, place: Place) -> Location:
        location = self._locations.get(place)
        if location is None:
            altitude = float(lookup_altitude(place.latitude, place.longitude))
            location = Location(place.latitude, place.longitude, tz="UTC", altitude=altitude)
            self._locations[place] = location
            if len(self._locations) > self._max:
                self._locations.popitem(last=False)
        else:
            self._locations.move_to_end(place)
        return location


class ClearSky:
    """The clear-sky energy one array should have made today, in Wh.

    ``curves`` is the engine's shared cache; without it the instance keeps its own.
    """

    def __init__(
        self,
        latitude: float,
        longitude: float,
        utc_offset_h: float,
        rated_power_w: float,
        performance_ratio: float = 0.8,
        *,
        curves: DayCurves | None = None,
    ) -> None:
        if not (math.isfinite(rated_power_w) and rated_power_w >= 0):
            raise ValueError(f"rated_power_w {rated_power_w} must be a finite number >= 0")
        if not 0.0 < performance_ratio <= 1.0:
            raise ValueError(f"performance_ratio {performance_ratio} is outside (0, 1]")
        self.place = Place(latitude, longitude, utc_offset_h)
        self.rated_power_w = rated_power_w
        self.performance_ratio = performance_ratio
        self._scale = rated_power_w / STC_IRRADIANCE_W_M2 * performance_ratio
        self._offset_ms = self.place.offset_ms
        self._curves = curves if curves is not None else DayCurves()
        self._last: tuple[int, DayCurve] | None = None

    def expected_energy_wh(self, until_ms: int) -> float:
        """Clear-sky Wh from local midnight of the day containing ``until_ms`` up to it."""
        return self._curve(until_ms).energy_wh_m2(until_ms) * self._scale

    def expected_day_energy_wh(self, day_ms: int) -> float:
        """Clear-sky Wh over the whole local day containing ``day_ms``."""
        return self._curve(day_ms).total_wh_m2 * self._scale

    def local_midnight_ms(self, ts_ms: int) -> int:
        """Local midnight starting the day of ``ts_ms``: where today's energy restarts."""
        return self.place.midnight_ms(self.place.local_day(ts_ms))

    def _curve(self, ts_ms: int) -> DayCurve:
        day = (ts_ms + self._offset_ms) // MS_PER_DAY  # Place.local_day, inlined: hot path
        last = self._last
        if last is not None and last[0] == day:
            return last[1]
        curve = self._curves.get(self.place, day)
        self._last = (day, curve)
        return curve
