"""Fault injection, each off by default and set per fleet.

- ``malformed_rate``: share of readings replaced by a payload that breaks the
  contract (truncated JSON, not JSON, a wrong schema version, a negative ``seq``);
- ``clock_skew_s``: each device's clock is off by a seeded amount within +-this;
- ``duplicate_rate`` / ``reorder_rate``: a reading sent twice / held back and
  sent after the device's next one;
- ``offline_every_s`` / ``offline_s``: connections drop abruptly (no DISCONNECT,
  so Last Wills fire) on average every so many seconds and stay away ``offline_s``;
- ``qos0_burst_every_s`` / ``qos0_burst_size``: now and then a device fires a
  burst of readings back to back at QoS 0.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Final

from firmware_sim.devices.base import Reading
from firmware_sim.seeding import derive_seed, stream

_MALFORMED: Final = (
    b'{"v":1,"kind":',  # truncated JSON
    b'{"v":9,"kind":"router","ts":1,"seq":1,"metrics":{"cpu_pct":1.0}}',  # wrong version
    b"not json at all",
)


@dataclass(frozen=True)
class FaultConfig:
    malformed_rate: float = 0.0
    clock_skew_s: float = 0.0
    duplicate_rate: float = 0.0
    reorder_rate: float = 0.0
    offline_every_s: float = 0.0
    offline_s: float = 30.0
    qos0_burst_every_s: float = 0.0
    qos0_burst_size: int = 100

    def __post_init__(self) -> None:
        for name in ("malformed_rate", "duplicate_rate", "reorder_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within 0..1")
        for name in ("clock_skew_s", "offline_every_s", "offline_s", "qos0_burst_every_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")

    @property
    def any_on(self) -> bool:
        return bool(
            self.malformed_rate
            or self.duplicate_rate
            or self.reorder_rate
            or self.qos0_burst_every_s
        )


class FaultInjector:
    """Turns a device's readings into what actually goes on the wire (scheduler thread)."""

    def __init__(self, config: FaultConfig, seed: int) -> None:
        self.config = config
        self.seed = seed
        self.rng = stream(seed, "faults")
        self._held: dict[str, Reading] = {}  # one held-back reading per device at most

    def skew_ms(self, device_id: str) -> int:
        if not self.config.clock_skew_s:
            return 0
        span = int(self.config.clock_skew_s * 1000)
        return derive_seed(self.seed, device_id, "skew") % (2 * span + 1) - span

    def apply(self, device_id: str, readings: list[Reading]) -> tuple[list[Reading], int, int, int]:
        """(readings to send, malformed, duplicates, reordered)."""
        cfg, rng = self.config, self.rng
        out: list[Reading] = []
        malformed = duplicates = reordered = 0
        for reading in readings:
            if cfg.malformed_rate and rng.random() < cfg.malformed_rate:
                reading = _malformed(reading, rng)
                malformed += 1
            if cfg.reorder_rate and device_id not in self._held and rng.random() < cfg.reorder_rate:
                self._held[device_id] = reading
                reordered += 1
                continue
            out.append(reading)
            if cfg.duplicate_rate and rng.random() < cfg.duplicate_rate:
                out.append(reading)
                duplicates += 1
            held = self._held.pop(device_id, None)
            if held is not None:
                out.append(held)
        return out, malformed, duplicates, reordered


def _malformed(reading: Reading, rng: random.Random) -> Reading:
    choice = rng.randrange(len(_MALFORMED) + 1)
    if choice < len(_MALFORMED):
        payload = _MALFORMED[choice]
    else:  # an out-of-range value in an otherwise valid reading: a negative sequence number
        payload = reading.payload.replace(b'"seq":', b'"seq":-', 1)
    return Reading(reading.topic, payload, reading.seq, reading.ts, reading.is_event)
