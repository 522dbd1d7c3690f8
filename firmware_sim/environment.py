"""A centre's surroundings as pure functions of time: sun, weather, grid, opening hours.

Everything here is computed from (fleet seed, centre id, local day), never from
the order in which devices ask, so every device of a centre sees the same sky
and the same power cuts, and a rerun with the same seed sees them again.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Final

from firmware_sim.seeding import stream

DAY_MS: Final = 86_400_000
HOUR_MS: Final = 3_600_000
OPEN_HOUR: Final = 9.0
CLOSE_HOUR: Final = 17.0
_CACHE_DAYS: Final = 8  # bounded per-day caches: older days are recomputed if asked again


@dataclass(frozen=True)
class Outage:
    start_ms: int
    end_ms: int


@dataclass
class CentreEnv:
    """Sun, weather, grid and activity of one centre (latitude/longitude from the seed)."""

    seed: int
    centre: str
    latitude: float = 0.0
    longitude: float = 0.0
    utc_offset_h: float = 5.5
    on_grid: bool = True  # False: an off-grid centre, solar and battery only
    cloud: float | None = None  # fixed cloudiness 0..0.9 for every day (None: seeded weather)
    planned_outages: list[Outage] = field(default_factory=list)  # grid cuts besides the seeded ones
    _weather: dict[int, tuple[float, float]] = field(default_factory=dict, repr=False)
    _grid: dict[int, list[Outage]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        rng = stream(self.seed, self.centre, "site")
        # India's plains and plateaus (below ~900 m, so a clear-sky model that looks the
        # altitude up agrees with this sky), on Indian Standard Time
        if not self.latitude:
            self.latitude = round(rng.uniform(10.0, 26.0), 3)
        if not self.longitude:
            self.longitude = round(rng.uniform(72.0, 88.0), 3)

    # --- calendar -------------------------------------------------------------------------
    def local_hour(self, t_ms: int) -> float:
        return ((t_ms / HOUR_MS) + self.utc_offset_h) % 24.0

    def local_day(self, t_ms: int) -> int:
        return int((t_ms + self.utc_offset_h * HOUR_MS) // DAY_MS)

    def day_start_ms(self, day: int) -> int:
        return int(day * DAY_MS - self.utc_offset_h * HOUR_MS)

    def next_local_time_ms(self, after_ms: int, hour: float) -> int:
        """The first instant at or after ``after_ms`` when the local clock shows ``hour``."""
        day = self.local_day(after_ms)
        t = self.day_start_ms(day) + int(hour * HOUR_MS)
        return t if t >= after_ms else t + DAY_MS

    def is_open(self, t_ms: int) -> bool:
        """Clinic hours: 09:00-17:00 local, closed on Sundays."""
        day = self.local_day(t_ms)
        sunday = day % 7 == 3  # 1970-01-01 was a Thursday: day 3 was a Sunday
        return not sunday and OPEN_HOUR <= self.local_hour(t_ms) < CLOSE_HOUR

    def activity(self, t_ms: int) -> float:
        """0..1: how busy the centre is (visitors, PCs, lights)."""
        if not self.is_open(t_ms):
            return 0.0
        x = (self.local_hour(t_ms) - OPEN_HOUR) / (CLOSE_HOUR - OPEN_HOUR)
        return 0.35 + 0.65 * math.sin(math.pi * x) ** 1.5

    # --- sun and weather ------------------------------------------------------------------
    def _day_weather(self, day: int) -> tuple[float, float]:
        """(cloudiness 0..0.9, ambient offset C) for a local day."""
        cached = self._weather.get(day)
        if cached is None:
            rng = stream(self.seed, self.centre, "weather", day)
            month = int(((day % 365.25) / 365.25) * 12)
            monsoon = 5 <= month <= 8
            cloudy = rng.random() < (0.6 if monsoon else 0.2)
            cloud = rng.uniform(0.4, 0.9) if cloudy else rng.uniform(0.0, 0.15)
            cached = (cloud, rng.gauss(0.0, 1.5))
            if len(self._weather) >= _CACHE_DAYS:
                self._weather.pop(next(iter(self._weather)))
            self._weather[day] = cached
        return cached

    def cloudiness(self, t_ms: int) -> float:
        if self.cloud is not None:
            return self.cloud
        return self._day_weather(self.local_day(t_ms))[0]

    def solar_elevation_sin(self, t_ms: int) -> float:
        """sin(solar elevation) for the centre's latitude, longitude and date (>= 0)."""
        days = t_ms / DAY_MS
        doy = days % 365.25
        decl = math.radians(23.44) * math.sin(2 * math.pi * (doy - 81) / 365.0)
        solar_hour = ((t_ms / HOUR_MS) + self.longitude / 15.0) % 24.0
        hour_angle = math.radians(15.0 * (solar_hour - 12.0))
        lat = math.radians(self.latitude)
        s = math.sin(lat) * math.sin(decl) + math.cos(lat) * math.cos(decl) * math.cos(hour_angle)
        return max(0.0, s)

    def irradiance_w_m2(self, t_ms: int) -> float:
        """Global horizontal irradiance: a clear-sky curve dimmed by the day's clouds."""
        s = self.solar_elevation_sin(t_ms)
        if s <= 0.0:
            return 0.0
        clear = 1050.0 * s**1.15
        cloud = self.cloudiness(t_ms)
        if cloud < 0.2:
            return clear * (1.0 - cloud)
        # passing clouds: a deterministic flicker in 10-minute slots on cloudy days
        slot = int(t_ms // 600_000)
        flicker = ((slot * 2654435761) % 1000) / 1000.0
        return clear * (1.0 - 0.75 * cloud * (0.6 + 0.4 * flicker))

    def ambient_c(self, t_ms: int) -> float:
        doy = (t_ms / DAY_MS) % 365.25
        seasonal = 26.0 + 6.0 * math.sin(2 * math.pi * (doy - 100) / 365.25)
        diurnal = 5.0 * math.sin(2 * math.pi * (self.local_hour(t_ms) - 9.0) / 24.0)
        return seasonal + diurnal + self._day_weather(self.local_day(t_ms))[1]

    # --- grid -----------------------------------------------------------------------------
    def _day_outages(self, day: int) -> list[Outage]:
        cached = self._grid.get(day)
        if cached is None:
            rng = stream(self.seed, self.centre, "grid", day)
            start = self.day_start_ms(day)
            cached = []
            n = poisson(rng, 1.6)
            for _ in range(n):
                begin = start + int(rng.random() * DAY_MS)
                minutes = min(8 * 60.0, rng.lognormvariate(math.log(35.0), 1.0))  # minutes..hours
                cached.append(Outage(begin, begin + int(minutes * 60_000)))
            cached.sort(key=lambda o: o.start_ms)
            if len(self._grid) >= _CACHE_DAYS:
                self._grid.pop(next(iter(self._grid)))
            self._grid[day] = cached
        return cached

    def grid_present(self, t_ms: int) -> bool:
        if not self.on_grid:
            return False
        if any(o.start_ms <= t_ms < o.end_ms for o in self.planned_outages):
            return False
        day = self.local_day(t_ms)
        for d in (day - 1, day):
            for outage in self._day_outages(d):
                if outage.start_ms <= t_ms < outage.end_ms:
                    return False
        return True


def poisson(rng: random.Random, mean: float) -> int:
    """A Poisson draw (Knuth's method; means here are small)."""
    limit = math.exp(-mean)
    k, p = 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1
