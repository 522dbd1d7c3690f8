"""The power unit's energy flows as a technician would read them off its readings."""

from __future__ import annotations

from typing import Any

import pytest

from contract.codec import decode
from contract.topics import Channel
from firmware_sim.devices import PowerUnit
from firmware_sim.environment import HOUR_MS, CentreEnv, Outage
from tests.firmware_sim.conftest import MONDAY_10_IST

NOON = MONDAY_10_IST + 2 * HOUR_MS  # Monday 12:00 IST, January: a clear sky at cloud 0
NIGHT = MONDAY_10_IST + 12 * HOUR_MS  # Monday 22:00 IST


def unit_at(
    start_ms: int,
    *,
    load_w: float,
    soc: float,
    on_grid: bool = True,
    net_metered: bool = False,
    cut: bool = False,
) -> PowerUnit:
    """A 2 kWp / 2.4 kWh unit under a clear sky with a constant load (no clinic peak)."""
    env = CentreEnv(3, "c009", on_grid=on_grid, cloud=0.0)
    if cut:
        env.planned_outages.append(Outage(start_ms - HOUR_MS, start_ms + 24 * HOUR_MS))
    unit = PowerUnit("c009", "c009-pwr1", env, 3, start_ms, interval_s=60)
    unit.panel_wp = 2000.0
    unit.capacity_wh = 2400.0
    unit.net_metered = net_metered
    unit.soc = soc
    unit.peak_load_w = 0.0
    # the night lights add 40 W outside 06:00-18:30
    unit.base_load_w = load_w - (0.0 if 6.0 <= env.local_hour(start_ms) < 18.5 else 40.0)
    unit.grid = env.grid_present(start_ms)
    return unit


def telemetry(unit: PowerUnit, until_ms: int) -> list[Any]:
    out = []
    while unit.next_due_ms() < until_ms:
        for reading in unit.step(unit.next_due_ms()):
            if not reading.is_event:
                out.append(decode(Channel.TELEMETRY, reading.payload).metrics)
    return out


@pytest.mark.parametrize("grid", [True, False], ids=["grid", "grid_cut"])
def test_a_full_battery_at_a_sunny_noon_still_runs_the_load_from_the_panel(grid: bool) -> None:
    unit = unit_at(NOON, load_w=300.0, soc=100.0, cut=not grid)
    readings = telemetry(unit, NOON + HOUR_MS)
    assert len(readings) >= 50
    assert all(r.grid_present is grid for r in readings)
    assert all(r.load_power_w == pytest.approx(300.0, abs=0.1) for r in readings)
    # the panel could give more than 1 kW: it serves the load, the rest is curtailed
    assert all(r.pv_power_w == pytest.approx(300.0, abs=0.1) for r in readings)
    assert all(r.battery_soc_pct == 100.0 for r in readings)
    gained = readings[-1].energy_today_wh - readings[0].energy_today_wh
    minutes = len(readings) - 1
    assert gained == pytest.approx(300.0 * minutes / 60, rel=0.02)


def test_a_half_full_battery_takes_the_sun_the_load_leaves() -> None:
    unit = unit_at(NOON, load_w=300.0, soc=50.0, cut=True)
    readings = telemetry(unit, NOON + HOUR_MS)
    # 2 kWp x 0.8 at a January noon has more; the controller charges at most C/4 (600 W)
    assert all(r.pv_power_w == pytest.approx(300.0 + 600.0, abs=0.5) for r in readings[1:])
    gained = readings[-1].battery_soc_pct - readings[0].battery_soc_pct
    assert gained == pytest.approx(600.0 * 0.9 / 2400.0 * 100.0, abs=1.0)  # 22.5 % in the hour


def test_the_battery_warms_with_a_lag_not_at_once() -> None:
    unit = unit_at(NOON, load_w=300.0, soc=50.0, cut=True)
    readings = telemetry(unit, NOON + HOUR_MS)
    at_rest = unit.env.ambient_c(NOON) + 2.0  # before the 600 W of charging (+6 °C at length)
    assert readings[0].battery_temp_c < at_rest + 0.5  # not at once
    assert readings[10].battery_temp_c - readings[0].battery_temp_c < 2.0  # the pack's rate rule
    assert readings[-1].battery_temp_c > readings[0].battery_temp_c + 1.5  # but it warms


def test_a_net_metered_centre_exports_its_surplus_while_the_grid_is_up() -> None:
    unit = unit_at(NOON, load_w=300.0, soc=100.0, net_metered=True)
    exporting = telemetry(unit, NOON + HOUR_MS)
    assert all(r.pv_power_w > 900.0 for r in exporting)  # not curtailed to the load
    assert all(r.battery_soc_pct == 100.0 for r in exporting)
    cut = unit_at(NOON, load_w=300.0, soc=100.0, net_metered=True, cut=True)
    islanded = telemetry(cut, NOON + HOUR_MS)  # anti-islanding: no export without the grid
    assert all(r.pv_power_w == pytest.approx(300.0, abs=0.1) for r in islanded)


def test_a_night_without_grid_drains_the_battery_at_the_load_rate() -> None:
    unit = unit_at(NIGHT, load_w=120.0, soc=80.0, on_grid=False)
    readings = telemetry(unit, NIGHT + 4 * HOUR_MS)
    assert all(r.pv_power_w == 0.0 and not r.grid_present for r in readings)
    hours = (len(readings) - 1) / 60
    expected = 80.0 - 120.0 * hours / 2400.0 * 100.0  # 120 W from 2.4 kWh: 5 % an hour
    assert readings[-1].battery_soc_pct == pytest.approx(expected, abs=0.1)


def test_with_the_grid_at_night_the_battery_is_not_discharged_and_the_charger_fills_it() -> None:
    unit = unit_at(NIGHT, load_w=120.0, soc=50.0)
    readings = telemetry(unit, NIGHT + 2 * HOUR_MS)
    socs = [r.battery_soc_pct for r in readings]
    assert socs == sorted(socs)
    hours = (len(readings) - 1) / 60
    # the 300 W grid charger at 90 % efficiency: 270 Wh an hour into 2.4 kWh
    assert socs[-1] - socs[0] == pytest.approx(270.0 * hours / 2400.0 * 100.0, abs=0.2)


def test_a_flat_battery_at_night_without_grid_switches_the_inverter_off() -> None:
    unit = unit_at(NIGHT, load_w=120.0, soc=12.0, on_grid=False)
    readings = telemetry(unit, NIGHT + 3 * HOUR_MS)
    assert readings[-1].inverter_on is False and readings[-1].load_power_w == 0.0
    assert min(r.battery_soc_pct for r in readings) >= 4.5  # stops near the 5 % cut-off
