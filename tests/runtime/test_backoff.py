"""The retry policy every client shares (runtime/backoff.py)."""

from __future__ import annotations

import random

from runtime.backoff import Backoff


def test_backoff_is_jittered_capped_and_growing() -> None:
    backoff = Backoff(0.5, 8.0)
    delays = [backoff.next() for _ in range(10)]
    assert all(0.25 <= d <= 8.0 for d in delays)
    assert delays[-1] >= 4.0  # capped at 8, never below half the cap
    assert len(set(delays)) > 1
    backoff.reset()
    assert backoff.next() <= 0.5


def test_a_seeded_backoff_repeats_and_two_seeds_do_not_retry_in_lockstep() -> None:
    def delays(seed: int) -> list[float]:
        backoff = Backoff(1.0, 30.0, random.Random(seed))
        return [backoff.next() for _ in range(6)]

    assert delays(1) == delays(1)
    assert delays(1) != delays(2)
