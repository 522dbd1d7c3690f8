"""The retry policy of every GramLink client: jittered, capped exponential backoff.

DESIGN: "reconnects with jittered backoff". Devices, gateways and ingest workers
reconnect (and ingest retries InfluxDB) with the same rule, owned by us rather
than by paho, so a fleet coming back after an outage never retries in lockstep.
"""

from __future__ import annotations

import random


class Backoff:
    """Delays ``min * 2**n`` capped at ``max``, each drawn uniformly from [delay/2, delay].

    ``attempt`` counts the delays handed out since the last :meth:`reset`.
    """

    def __init__(self, minimum: float, maximum: float, rng: random.Random | None = None) -> None:
        self.minimum = minimum
        self.maximum = maximum
        self.attempt = 0
        self._rng = rng or random.Random()

    def next(self) -> float:
        value = delay(self.minimum, self.maximum, self.attempt, self._rng)
        self.attempt += 1
        return value

    def reset(self) -> None:
        self.attempt = 0


def delay(minimum: float, maximum: float, attempt: int, rng: random.Random) -> float:
    """The delay after ``attempt`` earlier ones (0-based), the same rule as :class:`Backoff`.

    For retries whose count is stored rather than held in an object (a queued
    webhook notification carries its own attempt count).
    """
    ceiling = min(maximum, minimum * (2 ** min(attempt, 30)))
    return rng.uniform(ceiling / 2, ceiling)
