"""Fleet counters.

``messages``/``completed`` (and a link's in-flight count) live on each link
under that link's lock, because several threads publish through one link;
these counters are summed by ``Fleet.stats``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class Counters:
    """Live counters (written by the scheduler or the network thread, read by anyone)."""

    readings: int = 0  # telemetry and events handed to MQTT (scheduler thread)
    dropped: int = 0  # readings refused: a device's queue full while offline (scheduler)
    malformed: int = 0  # deliberately malformed payloads (fault injection)
    duplicates: int = 0
    reordered: int = 0
    errors: int = 0  # connect failures, refused connects, bad commands (net thread)
    undelivered: int = 0  # PUBACKs that are not reasons.delivered(): error codes, 0x10 (net)
    bad_commands: int = 0
    commands: int = 0
    reconnects: int = 0
    cuts: int = 0
    started: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class Stats:
    """A snapshot for progress lines and callers."""

    readings: int
    messages: int
    completed: int
    dropped: int
    errors: int
    malformed: int
    bad_commands: int
    commands: int
    reconnects: int
    connected: int
    links: int
    elapsed_s: float

    @property
    def rate(self) -> float:
        """Readings per second since the start."""
        return self.readings / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def line(self) -> str:
        return (
            f"sent={self.readings} rate={self.rate:,.0f}/s acked={self.completed} "
            f"dropped={self.dropped} errors={self.errors} connected={self.connected}/{self.links} "
            f"elapsed={self.elapsed_s:.0f}s"
        )
