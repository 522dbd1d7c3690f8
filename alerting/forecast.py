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

The fit's sums are made from the points when a fit first needs them and kept from then
on as the window moves a reading at a time (a reading adds its terms, a reading trimmed
takes them away), so a fit per reading costs the same whatever the window holds; a window
moved a batch at a time (grid present: no fit needed) keeps none. They are exact
integers (device times in ms; charges in units of 2**-32 %, a multiplication by a power of
two and one rounding), so they are the same whatever order the readings came and went in,
and a window read back from its state fits exactly as the one that was saved.
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
SOC_UNITS = 2.0**32  # exact charges: one unit is 2**-32 % (about 2.3e-10)


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
        # the fit's sums over the points: t, t*t, q, t*q (q: the charge in SOC_UNITS);
        # None: not kept (made from the points when a fit needs them)
        self._sums: list[int] | None = None

    def _count(self, t: int, soc: float, sign: int) -> None:
        """Add (``sign`` 1) or take away (-1) one point's terms, when the sums are kept."""
        sums = self._sums
        if sums is not None:
            q = round(soc * SOC_UNITS)
            sums[0] += sign * t
            sums[1] += sign * t * t
            sums[2] += sign * q
            sums[3] += sign * t * q

    def _made_sums(self) -> list[int]:
        """The sums from the points (passes in C); kept from then on."""
        ts = self._ts
        q = list(map(round, map(operator.mul, self._soc, itertools.repeat(SOC_UNITS))))
        self._sums = [
            sum(ts),
            sum(map(operator.mul, ts, ts)),
            sum(q),
            sum(map(operator.mul, ts, q)),
        ]
        return self._sums

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
        soc = float(soc_pct)
        ts.insert(at, ts_ms)
        self._soc.insert(at, soc)
        self._count(ts_ms, soc, 1)
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
        self._sums = None  # a batch: made again if a fit needs them
        if ts:
            self._trim()

    def _trim(self) -> int:
        """Drop what falls out of the span or the count, oldest first; say how many."""
        ts = self._ts
        drop = bisect.bisect_left(ts, ts[-1] - self.max_span_ms)
        drop = max(drop, len(ts) - self.max_points)
        if drop > 0:
            if drop == 1:
                self._count(ts[0], self._soc[0], -1)
            else:
                self._sums = None
            del ts[:drop]
            del self._soc[:drop]
        return drop

    @property
    def latest_soc(self) -> float:
        """The SoC of the latest reading in device time; IndexError when empty."""
        return self._soc[-1]

    def slope_per_hour(self) -> float | None:
        """Least-squares slope of SoC in %/h; None below 3 points or a 5-minute span."""
        ts = self._ts
        n = len(ts)
        if n < MIN_POINTS or ts[-1] - ts[0] < MIN_SPAN_MS:
            return None
        st, stt, sq, stq = self._sums or self._made_sums()
        spread = n * stt - st * st  # exact: n * n times the variance of the times
        covary = n * stq - st * sq
        # one correctly rounded division; a flat charge gives exactly 0 (covary is 0)
        return covary * MS_PER_HOUR / (spread * SOC_UNITS)

    def copy(self) -> SocWindow:
        twin = SocWindow.__new__(SocWindow)
        twin.max_span_ms, twin.max_points = self.max_span_ms, self.max_points
        twin._ts, twin._soc = self._ts[:], self._soc[:]
        twin._sums = None if self._sums is None else self._sums[:]
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
