"""The centre's cellular Wi-Fi router.

Uptime since boot; a WAN link with outages of minutes (a pure function of the
day, seeded per router); latency that degrades in the evening peak; byte
counters that only grow and restart at zero on a reboot; Wi-Fi clients
following opening hours; a slowly wandering cellular signal; CPU, memory and
temperature following load and ambient heat.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from contract.metrics import DeviceKind, RouterMetrics
from firmware_sim.devices.base import Device
from firmware_sim.environment import DAY_MS, Outage, poisson
from firmware_sim.seeding import stream


class Router(Device):
    kind: ClassVar = DeviceKind.ROUTER
    abbr: ClassVar = "rtr"
    model: ClassVar = "GL-R4G"
    metrics_model: ClassVar = RouterMetrics
    default_interval_s: ClassVar = 60

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rx_bytes = 0
        self.tx_bytes = 0
        self.rssi_dbm = -70.0 - 25.0 * self.rng.random()
        self.capacity = 8 + int(self.rng.random() * 20)
        self._wan: dict[int, list[Outage]] = {}
        self._was_up = True

    def on_reboot(self, now_ms: int) -> None:
        self.rx_bytes = 0
        self.tx_bytes = 0

    def _outages(self, day: int) -> list[Outage]:
        cached = self._wan.get(day)
        if cached is None:
            rng = stream(self.seed, self.device_id, "wan", day)
            start = self.env.day_start_ms(day)
            cached = []
            for _ in range(poisson(rng, 2.0)):
                begin = start + int(rng.random() * DAY_MS)
                minutes = min(240.0, rng.lognormvariate(math.log(6.0), 1.0))
                cached.append(Outage(begin, begin + int(minutes * 60_000)))
            if len(self._wan) >= 4:
                self._wan.pop(next(iter(self._wan)))
            self._wan[day] = cached
        return cached

    def wan_up(self, t_ms: int) -> bool:
        day = self.env.local_day(t_ms)
        return not any(
            o.start_ms <= t_ms < o.end_ms for d in (day - 1, day) for o in self._outages(d)
        )

    def advance(
        self, now_ms: int
    ) -> list[tuple[int, str, dict[str, Any] | None, dict[str, Any] | None]]:
        dt_s = max(0.0, (now_ms - self.last_ms) / 1000)
        up = self.wan_up(now_ms)
        events: list[tuple[int, str, dict[str, Any] | None, dict[str, Any] | None]] = []
        if up != self._was_up:
            events.append((now_ms, "wan_up" if up else "wan_down", None, None))
            self._was_up = up
        if up and dt_s:
            clients = self.capacity * self.env.activity(now_ms)
            rate = 2_000 + clients * self.rng.uniform(4_000, 12_000)  # bytes/s down
            self.rx_bytes += int(rate * dt_s)
            self.tx_bytes += int(rate * dt_s * self.rng.uniform(0.15, 0.3))
        self.rssi_dbm = min(-55.0, max(-113.0, self.rssi_dbm + self.rng.gauss(0.0, 0.8)))
        return events

    def sample(self, now_ms: int) -> dict[str, Any]:
        rng = self.rng
        hour = self.env.local_hour(now_ms)
        activity = self.env.activity(now_ms)
        clients = (
            max(0, round(self.capacity * activity + rng.gauss(0.0, 1.0)))
            if activity
            else (1 if rng.random() < 0.1 else 0)
        )
        cpu = min(100.0, max(1.0, 4.0 + clients * 2.2 + rng.gauss(0.0, 2.0)))
        metrics: dict[str, Any] = {
            "uptime_s": max(0, (now_ms - self.boot_ms) // 1000),
            "wan_up": self._was_up,
            "wan_rx_bytes": self.rx_bytes,
            "wan_tx_bytes": self.tx_bytes,
            "wifi_clients": clients,
            "rssi_dbm": round(self.rssi_dbm, 1),
            "cpu_pct": round(cpu, 1),
            "mem_pct": round(min(100.0, 38.0 + clients * 0.9 + rng.gauss(0.0, 1.0)), 1),
            "temp_c": round(self.env.ambient_c(now_ms) + 12.0 + cpu * 0.15, 1),
        }
        if self._was_up:
            peak = 2.6 if 18.0 <= hour < 23.0 else 1.0  # evening peak on the cell
            base = 70.0 + (-self.rssi_dbm - 60.0) * 2.0
            metrics["wan_latency_ms"] = round(base * peak * rng.lognormvariate(0.0, 0.25), 1)
        return metrics
