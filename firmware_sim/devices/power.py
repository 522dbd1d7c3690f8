"""The centre's solar power unit: PV panel, battery, inverter and grid connection.

The panel follows the sun for the centre's latitude and date, dimmed by the
day's clouds. The inverter is a zero-export hybrid: PV serves the load first,
its surplus charges the battery, and only what neither takes is curtailed. When
the grid is present it covers what PV does not (the battery is not discharged)
and its charger tops the battery up; during a power cut the battery carries
what PV does not, until the inverter's low-voltage disconnect. The battery's
state of charge integrates charge minus discharge (with a charge efficiency);
its voltage follows SoC, current and temperature. ``energy_today_wh`` is the PV
energy since local midnight, integrated from the same power the readings report.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Final

from contract.metrics import DeviceKind, PowerMetrics
from firmware_sim.devices.base import Device

SUBSTEP_MS: Final = 60_000
CHARGE_EFFICIENCY: Final = 0.9
LVD_SOC: Final = 5.0  # inverter cuts the load below this
RECONNECT_SOC: Final = 15.0
GRID_CHARGER_W: Final = 300.0
INTERNAL_OHM: Final = 0.04
NOMINAL_V: Final = 24.0
MAX_CHARGE_C: Final = 0.25  # the charge controller's limit: a quarter of the capacity per hour
THERMAL_TAU_H: Final = 1.5  # the battery bank's thermal time constant

Events = list[tuple[int, str, dict[str, Any] | None, dict[str, Any] | None]]


class PowerUnit(Device):
    kind: ClassVar = DeviceKind.POWER
    abbr: ClassVar = "pwr"
    model: ClassVar = "GL-SOL24"
    metrics_model: ClassVar = PowerMetrics
    default_interval_s: ClassVar = 60

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        rng = self.rng
        self.panel_wp = 800.0 + 200.0 * int(rng.random() * 8)
        self.capacity_wh = 2400.0 * (1 + int(rng.random() * 2))
        self.base_load_w = 35.0 + 15.0 * rng.random()  # router, lights, fans
        self.peak_load_w = 250.0 + 200.0 * rng.random()  # PCs, printer, devices charging
        self.soc = 60.0 + 30.0 * rng.random()
        self.pv_w = 0.0
        self.load_w = 0.0
        self.batt_w = 0.0  # + charging, - discharging
        self.inverter_on = True
        # an on-grid centre's inverter exports its surplus while the grid is up (net metering);
        # during a cut (anti-islanding) and off-grid, PV beyond load and battery is curtailed
        self.net_metered = self.env.on_grid
        self.grid = self.env.grid_present(self.last_ms)
        self.energy_today_wh = 0.0
        self.day = self.env.local_day(self.last_ms)
        self.temp_c = self.env.ambient_c(self.last_ms) + 2.0

    def demand_w(self, t_ms: int) -> float:
        night_lights = 40.0 if not 6.0 <= self.env.local_hour(t_ms) < 18.5 else 0.0
        return self.base_load_w + night_lights + self.peak_load_w * self.env.activity(t_ms)

    def advance(self, now_ms: int) -> Events:
        events: Events = []
        t = self.last_ms
        while t < now_ms:
            nxt = min(now_ms, t + SUBSTEP_MS)
            self._integrate(nxt, (nxt - t) / 3_600_000, events)
            t = nxt
        return events

    def _integrate(self, t_ms: int, dt_h: float, events: Events) -> None:
        env = self.env
        day = env.local_day(t_ms)
        if day != self.day:
            self.day = day
            self.energy_today_wh = 0.0
        grid = env.grid_present(t_ms)
        if grid != self.grid:
            self.grid = grid
            name = "grid_restored" if grid else "grid_lost"
            events.append((t_ms, name, None, {"soc_pct": round(self.soc, 1)}))
        available_pv = self.panel_wp * 0.8 * env.irradiance_w_m2(t_ms) / 1000.0
        demand = self.demand_w(t_ms)
        if self.inverter_on and self.soc < LVD_SOC and not grid:
            self.inverter_on = False
            events.append((t_ms, "inverter_off", None, {"reason": "low_battery"}))
        elif not self.inverter_on and (grid or self.soc > RECONNECT_SOC):
            self.inverter_on = True
            events.append((t_ms, "inverter_on", None, None))
        load = demand if (self.inverter_on or grid) else 0.0
        # what the battery can still take in this step, as charging power before losses
        room_w = (100.0 - self.soc) / 100.0 * self.capacity_wh / CHARGE_EFFICIENCY / max(dt_h, 1e-9)
        room_w = min(room_w, self.capacity_wh * MAX_CHARGE_C)
        # load first, then the battery; the rest is exported (net metering, grid up) or curtailed
        pv = available_pv if grid and self.net_metered else min(available_pv, load + room_w)
        surplus = pv - load  # > 0: for the battery (and export); < 0: what PV leaves uncovered
        if grid:  # the grid covers the deficit; its charger fills what PV leaves of the room
            to_battery = min(max(0.0, surplus), room_w)
            batt = to_battery + min(GRID_CHARGER_W, room_w - to_battery)
        else:
            batt = surplus
        delta_wh = batt * dt_h * (CHARGE_EFFICIENCY if batt > 0 else 1.0)
        self.soc = min(100.0, max(0.0, self.soc + delta_wh / self.capacity_wh * 100.0))
        self.pv_w, self.load_w, self.batt_w = pv, load, batt
        self.energy_today_wh += pv * dt_h
        # the bank warms towards ambient + its losses with a thermal lag (hours, not minutes)
        target = env.ambient_c(t_ms) + 2.0 + abs(batt) / 100.0
        self.temp_c += (target - self.temp_c) * (1.0 - math.exp(-dt_h / THERMAL_TAU_H))

    def battery_temp_c(self, t_ms: int) -> float:
        return self.temp_c

    def battery_voltage_v(self, t_ms: int) -> float:
        ocv = 23.4 + 2.4 * self.soc / 100.0
        current = self.batt_w / NOMINAL_V
        temp_comp = -0.036 * (self.battery_temp_c(t_ms) - 25.0) * (1 if current > 0 else 0)
        return max(0.0, ocv + current * INTERNAL_OHM + temp_comp)

    def sample(self, now_ms: int) -> dict[str, Any]:
        pv_v = 0.0 if self.pv_w <= 0 else 30.0 + 6.0 * min(1.0, self.pv_w / self.panel_wp)
        return {
            "pv_power_w": round(self.pv_w, 1),
            "pv_voltage_v": round(pv_v, 2),
            "battery_voltage_v": round(self.battery_voltage_v(now_ms), 2),
            "battery_soc_pct": round(self.soc, 2),
            "battery_temp_c": round(self.battery_temp_c(now_ms), 1),
            "load_power_w": round(self.load_w, 1),
            "grid_present": self.grid,
            "inverter_on": self.inverter_on,
            "energy_today_wh": round(self.energy_today_wh, 1),
        }
