"""Telemedicine devices: BP monitor, pulse oximeter, thermometer, glucometer, weighing scale.

Patients are measured during clinic hours (a seeded Poisson number per day,
a few to tens); each measurement is an ``event`` named ``measurement`` with
values from plausible population distributions, a small share abnormal
(SpO2 below 90, systolic above 160, fever, high glucose), a local
``patient_id`` and the device's battery, which drains slowly and is replaced
when nearly flat. Periodic telemetry carries only ``battery_pct``.
"""

from __future__ import annotations

import random
from typing import Any, ClassVar, Final

from contract.metrics import (
    BpMonitorMetrics,
    DeviceKind,
    GlucometerMetrics,
    PulseOximeterMetrics,
    ThermometerMetrics,
    WeighingScaleMetrics,
)
from firmware_sim.devices.base import Device
from firmware_sim.environment import CLOSE_HOUR, HOUR_MS, OPEN_HOUR, poisson
from firmware_sim.seeding import stream

DRAIN_PER_MEASUREMENT: Final = 0.05
DRAIN_PER_DAY: Final = 0.4
REPLACE_AT_PCT: Final = 3.0
PATIENTS_PER_CENTRE: Final = 400
LOOKAHEAD_DAYS: Final = 14

Events = list[tuple[int, str, dict[str, Any] | None, dict[str, Any] | None]]


class HealthDevice(Device):
    default_interval_s: ClassVar = 900
    visits_per_day: ClassVar[float] = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.battery_pct = 40.0 + 60.0 * self.rng.random()
        self._day = self.env.local_day(self.last_ms)
        self._visits: list[int] = [t for t in self._day_visits(self._day) if t > self.last_ms]
        # (from device time, metrics): the first measurement at or after the time takes these
        # values instead of the drawn ones (a scenario's scripted patient)
        self.scripted: list[tuple[int, dict[str, Any]]] = []

    def draw(self, rng: random.Random) -> dict[str, Any]:
        """One patient's readings."""
        raise NotImplementedError

    def _day_visits(self, day: int) -> list[int]:
        rng = stream(self.seed, self.device_id, "visits", day)
        start = self.env.day_start_ms(day)
        open_ms = start + int(OPEN_HOUR * HOUR_MS)
        span = int((CLOSE_HOUR - OPEN_HOUR) * HOUR_MS)
        times = sorted(
            open_ms + int(rng.random() * span) for _ in range(poisson(rng, self.visits_per_day))
        )
        return [t for t in times if self.env.is_open(t)]

    def next_event_ms(self) -> int | None:
        ahead = 0
        while not self._visits and ahead < LOOKAHEAD_DAYS:
            self._day += 1
            ahead += 1
            self._visits = self._day_visits(self._day)
        return self._visits[0] if self._visits else None

    def advance(self, now_ms: int) -> Events:
        events: Events = []
        days = max(0.0, (now_ms - self.last_ms) / 86_400_000)
        self._drain(DRAIN_PER_DAY * days, now_ms, events)
        while True:
            nxt = self.next_event_ms()
            if nxt is None or nxt > now_ms:
                break
            self._visits.pop(0)
            rng = self.rng
            metrics = self.draw(rng)
            if self.scripted and self.scripted[0][0] <= nxt:
                metrics.update(self.scripted.pop(0)[1])
            metrics["patient_id"] = f"p{1 + int(rng.random() * PATIENTS_PER_CENTRE):04d}"
            self._drain(DRAIN_PER_MEASUREMENT, nxt, events)
            metrics["battery_pct"] = round(self.battery_pct, 1)
            events.append((nxt, "measurement", metrics, None))
        return events

    def _drain(self, pct: float, t_ms: int, events: Events) -> None:
        self.battery_pct = max(0.0, self.battery_pct - pct)
        if self.battery_pct <= REPLACE_AT_PCT:
            events.append((t_ms, "battery_replaced", None, {"old_pct": round(self.battery_pct, 1)}))
            self.battery_pct = 100.0

    def sample(self, now_ms: int) -> dict[str, Any]:
        return {"battery_pct": round(self.battery_pct, 1)}


class BpMonitor(HealthDevice):
    kind: ClassVar = DeviceKind.BP_MONITOR
    abbr: ClassVar = "bp"
    model: ClassVar = "GL-BP2"
    metrics_model: ClassVar = BpMonitorMetrics
    visits_per_day: ClassVar = 18.0

    def draw(self, rng: random.Random) -> dict[str, Any]:
        if rng.random() < 0.08:  # hypertensive
            systolic = rng.gauss(172.0, 12.0)
            diastolic = rng.gauss(104.0, 8.0)
        else:
            systolic = rng.gauss(121.0, 13.0)
            diastolic = 0.55 * systolic + rng.gauss(12.0, 5.0)
        return {
            "systolic_mmhg": float(round(min(260.0, max(70.0, systolic)))),
            "diastolic_mmhg": float(round(min(160.0, max(40.0, diastolic)))),
            "pulse_bpm": float(round(min(200.0, max(35.0, rng.gauss(77.0, 10.0))))),
        }


class PulseOximeter(HealthDevice):
    kind: ClassVar = DeviceKind.PULSE_OXIMETER
    abbr: ClassVar = "ox"
    model: ClassVar = "GL-OX1"
    metrics_model: ClassVar = PulseOximeterMetrics
    visits_per_day: ClassVar = 14.0

    def draw(self, rng: random.Random) -> dict[str, Any]:
        spo2 = rng.uniform(82.0, 89.9) if rng.random() < 0.05 else min(100.0, rng.gauss(97.2, 1.2))
        return {
            "spo2_pct": round(max(70.0, spo2), 1),
            "pulse_bpm": float(round(min(200.0, max(35.0, rng.gauss(80.0, 12.0))))),
        }


class Thermometer(HealthDevice):
    kind: ClassVar = DeviceKind.THERMOMETER
    abbr: ClassVar = "th"
    model: ClassVar = "GL-TH1"
    metrics_model: ClassVar = ThermometerMetrics
    visits_per_day: ClassVar = 12.0

    def draw(self, rng: random.Random) -> dict[str, Any]:
        temp = rng.uniform(38.0, 40.2) if rng.random() < 0.08 else rng.gauss(36.7, 0.3)
        return {"body_temp_c": round(min(42.0, max(34.5, temp)), 1)}


class Glucometer(HealthDevice):
    kind: ClassVar = DeviceKind.GLUCOMETER
    abbr: ClassVar = "gl"
    model: ClassVar = "GL-GLU1"
    metrics_model: ClassVar = GlucometerMetrics
    visits_per_day: ClassVar = 6.0

    def draw(self, rng: random.Random) -> dict[str, Any]:
        median = 230.0 if rng.random() < 0.1 else 102.0
        return {"glucose_mg_dl": float(round(min(600.0, rng.lognormvariate(0.0, 0.18) * median)))}


class WeighingScale(HealthDevice):
    kind: ClassVar = DeviceKind.WEIGHING_SCALE
    abbr: ClassVar = "ws"
    model: ClassVar = "GL-WS1"
    metrics_model: ClassVar = WeighingScaleMetrics
    visits_per_day: ClassVar = 10.0

    def draw(self, rng: random.Random) -> dict[str, Any]:
        weight = rng.uniform(8.0, 35.0) if rng.random() < 0.2 else rng.gauss(57.0, 10.0)
        return {"weight_kg": round(min(180.0, max(3.0, weight)), 1)}
