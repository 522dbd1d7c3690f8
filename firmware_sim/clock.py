"""Simulated time: real, accelerated (xN) or backfill (a past period, as fast as possible).

Devices only ever ask the clock for "now" in epoch milliseconds; the fleet's
scheduler asks it to wait until a simulated instant. Readings are pure functions
of simulated time and a seeded random stream, so the speed of the clock never
changes what is sent, only when.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    """Simulated time in epoch ms; ``end_ms`` is where a bounded run stops (None: never)."""

    end_ms: int | None

    def now_ms(self) -> int: ...

    def wait_until(self, sim_ms: int, wake: threading.Event) -> bool:
        """Block until simulated time reaches ``sim_ms``; False if ``wake`` was set meanwhile."""
        ...


class RealClock:
    """Wall-clock time."""

    end_ms: int | None = None

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def wait_until(self, sim_ms: int, wake: threading.Event) -> bool:
        delay = (sim_ms - self.now_ms()) / 1000
        if delay > 0:
            return not wake.wait(delay)
        return not wake.is_set()


class AcceleratedClock:
    """Simulated time runs ``factor`` times faster than the wall clock, from ``start_ms``."""

    def __init__(self, factor: float, start_ms: int | None = None) -> None:
        if factor <= 0:
            raise ValueError("accelerate factor must be > 0")
        self.factor = factor
        self.end_ms: int | None = None
        self._start_ms = start_ms if start_ms is not None else time.time_ns() // 1_000_000
        self._mono0 = time.monotonic()

    def now_ms(self) -> int:
        return self._start_ms + int((time.monotonic() - self._mono0) * 1000 * self.factor)

    def wait_until(self, sim_ms: int, wake: threading.Event) -> bool:
        delay = (sim_ms - self.now_ms()) / 1000 / self.factor
        if delay > 0:
            return not wake.wait(delay)
        return not wake.is_set()


class BackfillClock:
    """A past period from ``start_ms`` to ``end_ms``: time jumps to each due instant at once."""

    def __init__(self, start_ms: int, end_ms: int) -> None:
        if end_ms <= start_ms:
            raise ValueError("backfill end must be after its start")
        self.end_ms: int | None = end_ms
        self._now = start_ms
        self._lock = threading.Lock()

    def now_ms(self) -> int:
        return self._now

    def wait_until(self, sim_ms: int, wake: threading.Event) -> bool:
        with self._lock:
            if sim_ms > self._now:
                self._now = sim_ms
        return not wake.is_set()
