"""Battery autonomy for the forecast rule: hours until the charge reaches a floor.

The rule fires when a centre would run flat within N hours while the grid is absent. The
rate is the net discharge measured, not a model: an ordinary least-squares line of
``battery_soc_pct`` against device time, fitted over the last readings of one subject, kept
in a :class:`SocWindow`. The estimate is ``(latest_soc - floor) / -slope`` hours.

The window is bounded twice (a span of device time, 60 minutes by default, and a number of
points, 120 by default; the oldest go first) and is plain data, so the engine keeps it in its
database between restarts (:meth:`SocWindow.to_state` / :meth:`SocWindow.from_state`).
Readings are kept in device-time order whatever order they come in; a reading repeated by a
replay (same device time) is ignored, the first one kept. Pure Python: a fit over at most a
few hundred points needs no numpy.
"""

from __future__ import annotations

import bisect
import itertools
import math
import operator
from collections.abc import Mapping, Sequence

MS_PER_HOUR = 3_600_000
DEFAULT_MAX_SPAN_MS = 60 * 60_000
DEFAULT_MAX_POINTS = 120
MIN_POINTS = 3
MIN_SPAN_MS = 5 * 60_000


class SocWindow:
    """The last (device ts_ms, soc_pct) readings of one subject, in device-time order."""

    def __init__(
        self, max_span_ms: int = DEFAULT_MAX_SPAN_MS, max_points: int = DEFAULT_MAX_POINTS
    ) -> None:
        if max_span_ms < MIN_SPAN_MS:
            raise ValueError(f"max_span_ms {max_span_ms} is below {MIN_SPAN_MS}")
        if max_points < MIN_POINTS:
            raise ValueError(f"max_points {max_points} is below {MIN_POINTS}")
        self.max_span_ms = max_span_ms
        self.max_points = max_points
        self._ts: list[int] = []
        self._soc: list[float] = []

    def __len__(self) -> int:
        return len(self._ts)

    @property
    def points(self) -> list[tuple[int, float]]:
        return list(zip(self._ts, self._soc, strict=True))

    def add(self, ts_ms: int, soc_pct: float) -> bool:
        """Keep a reading; False when it repeats a device time or is older than the window."""
        if not math.isfinite(soc_pct):
            raise ValueError(f"soc_pct {soc_pct} is not a finite number")
        ts = self._ts
        if ts and ts_ms < ts[-1] - self.max_span_ms:
            return False
        at = bisect.bisect_left(ts, ts_ms)
        if at < len(ts) and ts[at] == ts_ms:
            return False
        ts.insert(at, ts_ms)
        self._soc.insert(at, float(soc_pct))
        return at >= self._trim()

    def extend(self, ts_ms: Sequence[int], soc_pct: Sequence[float]) -> None:
        """:meth:`add` of readings in device-time order (one trim for the lot)."""
        if not all(map(math.isfinite, soc_pct)):
            raise ValueError(f"soc_pct {list(soc_pct)} has a number that is not finite")
        ts = self._ts
        if ts and ts_ms and ts_ms[0] <= ts[-1]:
            for t, s in zip(ts_ms, soc_pct, strict=True):
                self.add(t, s)  # not all newer than the window: one at a time
            return
        ts.extend(ts_ms)
        self._soc.extend(map(float, soc_pct))
        if ts:
            self._trim()

    def _trim(self) -> int:
        """Drop what falls out of the span or the count, oldest first; say how many."""
        ts = self._ts
        drop = bisect.bisect_left(ts, ts[-1] - self.max_span_ms)
        drop = max(drop, len(ts) - self.max_points)
        if drop > 0:
            del ts[:drop]
            del self._soc[:drop]
        return drop

    @property
    def latest_soc(self) -> float:
        """The SoC of the latest reading in device time; IndexError when empty."""
        return self._soc[-1]

    def slope_per_hour(self) -> float | None:
        """Least-squares slope of SoC in %/h; None below 3 points or a 5-minute span."""
        ts, soc = self._ts, self._soc
        n = len(ts)
        if n < MIN_POINTS or ts[-1] - ts[0] < MIN_SPAN_MS:
            return None
        # offsets from the first point: the times' sums stay exact integers, and a flat
        # charge gives a slope of exactly 0 (every offset 0.0); the passes run in C
        dt = list(map(operator.sub, ts, itertools.repeat(ts[0], n)))
        ds = list(map(operator.sub, soc, itertools.repeat(soc[0], n)))
        sum_t = sum(dt)
        spread = n * sum(map(operator.mul, dt, dt)) - sum_t * sum_t
        covary = n * sum(map(operator.mul, dt, ds)) - sum_t * sum(ds)
        return covary / spread * MS_PER_HOUR

    def copy(self) -> SocWindow:
        twin = SocWindow.__new__(SocWindow)
        twin.max_span_ms, twin.max_points = self.max_span_ms, self.max_points
        twin._ts, twin._soc = self._ts[:], self._soc[:]
        return twin

    def to_state(self) -> dict[str, object]:
        """A JSON-able dict; :meth:`from_state` reads it back.

        Two flat lists rather than a pair per point: a saved state is written after
        every round, and a list of pairs costs a list object per point to build and
        to encode.
        """
        return {
            "max_span_ms": self.max_span_ms,
            "max_points": self.max_points,
            "ts": self._ts[:],
            "soc": self._soc[:],
        }

    @classmethod
    def from_state(cls, state: Mapping[str, object]) -> SocWindow:
        """Rebuild a window from :meth:`to_state` (or the earlier ``points`` form of
        ``[ts_ms, soc_pct]`` pairs); ValueError names what is malformed."""
        span, most = state.get("max_span_ms"), state.get("max_points")
        if not isinstance(span, int) or not isinstance(most, int):
            raise ValueError("state needs integer max_span_ms and max_points")
        window = cls(span, most)
        times: list[int] = []
        charges: list[float] = []
        for t, s in zip(*_series(state), strict=True):
            if (
                not isinstance(t, int)
                or not isinstance(s, int | float)
                or (times and t <= times[-1])
            ):
                raise ValueError(f"state point {[t, s]!r} is not [ts_ms, soc_pct] in time order")
            times.append(t)
            charges.append(float(s))
        # written by to_state, in order and within bounds: taken as they are
        window._ts, window._soc = times, charges
        return window


def _series(state: Mapping[str, object]) -> tuple[list[object], list[object]]:
    """The (device times, charges) of a saved window, in either form."""
    if "points" in state:
        points = state["points"]
        if not isinstance(points, list):
            raise ValueError("state needs a points list")
        for point in points:
            if not isinstance(point, list | tuple) or len(point) != 2:
                raise ValueError(f"state point {point!r} is not [ts_ms, soc_pct] in time order")
        return [p[0] for p in points], [p[1] for p in points]
    ts, soc = state.get("ts"), state.get("soc")
    if not isinstance(ts, list) or not isinstance(soc, list) or len(ts) != len(soc):
        raise ValueError("state needs ts and soc lists of one length")
    return ts, soc


def hours_to_floor(window: SocWindow, floor_pct: float) -> float | None:
    """Hours until SoC reaches ``floor_pct`` at the fitted rate.

    None when the window cannot tell yet (fewer than 3 points, or under 5 minutes of device
    time); ``math.inf`` when the battery is not discharging (slope >= 0), even below the
    floor: it is not running out; 0.0 when discharging at or below the floor already.
    """
    slope = window.slope_per_hour()
    if slope is None:
        return None
    if slope >= 0:
        return math.inf
    latest = window.latest_soc
    if latest <= floor_pct:
        return 0.0
    return (latest - floor_pct) / -slope
