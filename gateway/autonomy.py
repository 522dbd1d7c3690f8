"""Hours of autonomy: how long an uplink outage the outbox can still absorb.

``autonomy_h = room / inflow``: ``room`` is what the outbox may still take (its
disk budget minus what it holds, and never more than the free space on its
disk); ``inflow`` the bytes it stored per hour over the last ``window_s``
(sampled at every health reading; the window is shorter just after a start).
While the uplink is up the outbox also drains, but an outage is what the figure
is for, so only the inflow counts. No inflow at all gives ``MAX_H``; fewer than
two samples, or under a second apart, give None (not reported yet).
"""

from __future__ import annotations

import time
from collections import deque
from typing import Final

MAX_H: Final = 10_000.0  # "no inflow": over a year


class InflowMeter:
    """Samples of the outbox's cumulative stored bytes, kept for ``window_s``."""

    def __init__(self, window_s: float = 900.0) -> None:
        self.window_s = window_s
        self._samples: deque[tuple[float, int]] = deque()

    def sample(self, appended_bytes: int, now: float | None = None) -> float | None:
        """Record the cumulative count; the inflow in bytes/s over the window (None: not yet)."""
        now = time.monotonic() if now is None else now
        samples = self._samples
        samples.append((now, appended_bytes))
        # keep one sample at or beyond the window's start, so the window stays full
        while len(samples) > 2 and samples[1][0] <= now - self.window_s:
            samples.popleft()
        first_at, first = samples[0]
        if now - first_at < 1.0:
            return None
        return max(0, appended_bytes - first) / (now - first_at)


def autonomy_h(room_bytes: int, inflow_bytes_per_s: float | None) -> float | None:
    if inflow_bytes_per_s is None:
        return None
    if inflow_bytes_per_s <= 0:
        return MAX_H
    return round(min(MAX_H, max(0, room_bytes) / inflow_bytes_per_s / 3600), 2)
