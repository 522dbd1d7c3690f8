"""Each centre's clock: the newest device time seen from it, advanced by wall time since.

Timers (a device silent past its limit, a Last Will held past ``after``) are
judged on this clock, not on the engine's wall clock, so a centre whose devices
run an accelerated simulated clock, or a gateway whose clock is off, is timed
in its own time; with real devices it is real time. A centre never heard from
is on wall time. Old readings (a backlog) never move a clock back.
"""

from __future__ import annotations

import time
from collections.abc import Callable


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


class CentreClocks:
    def __init__(
        self,
        wall: Callable[[], int] = wall_ms,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._wall = wall
        self._monotonic = monotonic
        self._seen: dict[str, tuple[int, float]] = {}  # centre -> (device ms, monotonic at)

    def see(self, centre: str, ts_ms: int) -> None:
        known = self._seen.get(centre)
        if known is None or ts_ms > self._now(known):
            self._seen[centre] = (ts_ms, self._monotonic())

    def now(self, centre: str) -> int:
        known = self._seen.get(centre)
        return self._wall() if known is None else self._now(known)

    def _now(self, known: tuple[int, float]) -> int:
        ts_ms, at = known
        return ts_ms + int((self._monotonic() - at) * 1000)

    def __len__(self) -> int:
        return len(self._seen)
