"""Each centre's clock: the newest device time seen from it, advanced by wall time since.

Timers (a device silent past its limit, a Last Will held past ``after``) are
judged on this clock, not on the engine's wall clock, so a centre whose devices
run an accelerated simulated clock, or a gateway whose clock is off, is timed
in its own time; with real devices it is real time. A centre never heard from
is on wall time. Old readings (a backlog) never move a clock back.

The clocks are saved with the engine's states (:meth:`CentreClocks.changed`,
:meth:`CentreClocks.restore`): after a restart a centre's clock goes on from
where it was, advanced by the wall time the engine was down, so a timer that
was running (a Last Will held) fires on time even for a centre that sends
nothing (an offline one) and runs an accelerated clock.
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
        self._changed: set[str] = set()

    def see(self, centre: str, ts_ms: int, monotonic: float | None = None) -> None:
        """A device time from ``centre`` (``monotonic``: now, if the caller has it)."""
        known = self._seen.get(centre)
        mono = self._monotonic() if monotonic is None else monotonic
        if known is None or ts_ms > known[0] + int((mono - known[1]) * 1000):
            self._seen[centre] = (ts_ms, mono)
            self._changed.add(centre)

    def changed(self) -> list[tuple[str, int, int]]:
        """(centre, device ms, wall ms then) of the clocks set since the last call."""
        wall, mono = self._wall(), self._monotonic()
        out = []
        for centre in self._changed:
            ts_ms, at = self._seen[centre]
            out.append((centre, ts_ms, wall - int((mono - at) * 1000)))
        self._changed.clear()
        return out

    def restore(self, centre: str, ts_ms: int, wall_then_ms: int) -> None:
        """A saved clock: ``ts_ms`` was its reading at wall time ``wall_then_ms``."""
        behind_s = max(self._wall() - wall_then_ms, 0) / 1000
        self._seen[centre] = (ts_ms, self._monotonic() - behind_s)

    def now(self, centre: str) -> int:
        known = self._seen.get(centre)
        return self._wall() if known is None else self._now(known)

    def _now(self, known: tuple[int, float]) -> int:
        ts_ms, at = known
        return ts_ms + int((self._monotonic() - at) * 1000)

    def __len__(self) -> int:
        return len(self._seen)
