"""Battery autonomy: hours until the state of charge reaches a floor at the current rate.

The rate is the least-squares slope of SoC over device time across a short
window of readings (a single pair of readings is too noisy: SoC is reported
rounded, and the load steps). The window is a plain list so the engine can
keep it in the registry database between restarts.
"""

from __future__ import annotations

import bisect
import math
from typing import Any

MIN_POINTS = 3
MIN_SPAN_MS = 5 * 60_000
MAX_POINTS = 120


class SocWindow:
    """(device time ms, SoC %) points of the last ``span_s`` seconds, in time order."""

    def __init__(self, span_s: float = 3600, points: list[tuple[int, float]] | None = None) -> None:
        self.span_ms = int(span_s * 1000)
        self.points: list[tuple[int, float]] = points or []

    def add(self, ts_ms: int, soc: float) -> None:
        at = bisect.bisect_left(self.points, (ts_ms, -math.inf))
        if at < len(self.points) and self.points[at][0] == ts_ms:
            return  # a replayed reading
        self.points.insert(at, (ts_ms, soc))
        newest = self.points[-1][0]
        keep = bisect.bisect_left(self.points, (newest - self.span_ms, -math.inf))
        del self.points[: max(keep, len(self.points) - MAX_POINTS)]

    def to_state(self) -> list[list[Any]]:
        return [[t, s] for t, s in self.points]

    @classmethod
    def from_state(cls, state: list[list[Any]] | None, span_s: float = 3600) -> SocWindow:
        return cls(span_s, [(int(t), float(s)) for t, s in state or []])


def slope_per_hour(window: SocWindow) -> float | None:
    """The fitted SoC change per hour; None with too few points or too short a span."""
    points = window.points
    if len(points) < MIN_POINTS or points[-1][0] - points[0][0] < MIN_SPAN_MS:
        return None
    t0 = points[0][0]
    xs = [(t - t0) / 3_600_000 for t, _ in points]
    ys = [s for _, s in points]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mean_x) ** 2 for x in xs)
    if var == 0:
        return None
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / var


def hours_to_floor(window: SocWindow, floor_pct: float) -> float | None:
    """Hours until SoC reaches ``floor_pct``: inf when not discharging, 0 below it already."""
    slope = slope_per_hour(window)
    if slope is None:
        return None
    latest = window.points[-1][1]
    if latest <= floor_pct:
        return 0.0
    if slope >= 0:
        return math.inf
    return (latest - floor_pct) / -slope
