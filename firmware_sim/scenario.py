"""Scripted troubles for one centre, so alert rules fire and resolve for real in a demo.

A scenario changes a centre's devices and surroundings at build time, relative
to the simulated start, and is as deterministic as the rest (start, seed and
centre id decide everything). ``demo`` (what ``gramlink demo`` runs on its
first spoke; ``gramlink sim --scenario demo`` on a fleet's first centre):

- the power unit has a small battery (1.5 kWh) and a vaccine refrigerator that
  keeps the base load at 80 W day and night (120 W with the night lights);
- a 12 h grid cut from the first local 19:00 at least 6 h after the start (the
  grid charger has filled the battery by then): the battery drains at the night
  load through the night, falls below 20 % SoC around 05:00 for about two
  hours (above the inverter's 5 % cut-off), and climbs back above 25 % once
  the grid returns at 07:00 (its charger plus the morning sun);
- the pulse oximeter's first measurement at least 1 h after the start is a
  patient at SpO2 86 % (the clinical range is < 90 %); later patients follow
  the usual mix (about 5 % below 90 %);
- the thermometer hangs for 6 h from 2 h after the start: connected, but it
  sends nothing (no telemetry, no measurements), then carries on.

At ``gramlink demo``'s 720x a simulated hour is 5 real seconds: the thermometer
falls silent 10 s into the run, the cut starts 30 s to 2.5 min in and lasts a
minute, and the low-SpO2 patient comes with the first clinic hours after the
first simulated hour.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from firmware_sim.devices import Device, PowerUnit, PulseOximeter, Thermometer
from firmware_sim.environment import HOUR_MS, CentreEnv, Outage
from firmware_sim.errors import ConfigError

CUT_HOUR: Final = 19.0  # local time the demo's grid cut starts
CUT_HOURS: Final = 12.0
CUT_NOT_BEFORE_H: Final = 6.0  # after the start: the grid charger fills the battery first
BATTERY_WH: Final = 1500.0
BASE_LOAD_W: Final = 80.0  # router, lights, a vaccine refrigerator
LOW_SPO2_PCT: Final = 86.0
LOW_SPO2_AFTER_H: Final = 1.0
SILENT_AFTER_H: Final = 2.0
SILENT_HOURS: Final = 6.0


@dataclass(frozen=True)
class DemoTimeline:
    """When the demo scenario's troubles happen, in simulated epoch ms."""

    grid_cut: Outage
    low_spo2_from_ms: int
    silent: Outage


def demo_timeline(env: CentreEnv, start_ms: int) -> DemoTimeline:
    cut_start = env.next_local_time_ms(start_ms + int(CUT_NOT_BEFORE_H * HOUR_MS), CUT_HOUR)
    silent_start = start_ms + int(SILENT_AFTER_H * HOUR_MS)
    return DemoTimeline(
        grid_cut=Outage(cut_start, cut_start + int(CUT_HOURS * HOUR_MS)),
        low_spo2_from_ms=start_ms + int(LOW_SPO2_AFTER_H * HOUR_MS),
        silent=Outage(silent_start, silent_start + int(SILENT_HOURS * HOUR_MS)),
    )


def apply_demo(env: CentreEnv, devices: Sequence[Device], start_ms: int) -> None:
    plan = demo_timeline(env, start_ms)
    env.planned_outages.append(plan.grid_cut)
    for device in devices:
        if isinstance(device, PowerUnit):
            device.capacity_wh = BATTERY_WH
            device.base_load_w = BASE_LOAD_W
        elif isinstance(device, PulseOximeter):
            device.scripted.append((plan.low_spo2_from_ms, {"spo2_pct": LOW_SPO2_PCT}))
        elif isinstance(device, Thermometer):
            device.muted.append((plan.silent.start_ms, plan.silent.end_ms))


Apply = Callable[[CentreEnv, Sequence[Device], int], None]
SCENARIOS: Final[dict[str, Apply]] = {"demo": apply_demo}


def apply_scenario(name: str, env: CentreEnv, devices: Sequence[Device], start_ms: int) -> None:
    """Apply a named scenario to a centre's surroundings and devices (ConfigError: unknown)."""
    scenario = SCENARIOS.get(name)
    if scenario is None:
        raise ConfigError(f"unknown scenario {name!r} (known: {', '.join(SCENARIOS)})")
    scenario(env, devices, start_ms)
