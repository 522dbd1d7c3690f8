"""Device models without a broker: physics, counters, determinism, encoding."""

from __future__ import annotations

from typing import Any

import pytest

from contract.codec import decode
from contract.topics import Channel
from firmware_sim.devices import STANDARD_SET, Device, PowerUnit, Router, centre_layout
from firmware_sim.environment import HOUR_MS, CentreEnv
from tests.firmware_sim.conftest import MONDAY_10_IST

DAY = 24 * HOUR_MS


def run(device: Device, until_ms: int) -> list[Any]:
    decoded = []
    while device.next_due_ms() < until_ms:
        for reading in device.step(device.next_due_ms()):
            channel = Channel.EVENT if reading.is_event else Channel.TELEMETRY
            decoded.append(decode(channel, reading.payload))
    return decoded


def test_layout_ids_cycle_through_the_standard_set() -> None:
    ids = [device_id for device_id, _ in centre_layout("c001", 9)]
    assert ids == [
        "c001-rtr1", "c001-pwr1", "c001-bp1", "c001-ox1", "c001-th1", "c001-gl1", "c001-ws1",
        "c001-rtr2", "c001-pwr2",
    ]  # fmt: skip


@pytest.mark.parametrize("cls", STANDARD_SET, ids=lambda c: c.kind.value)
def test_fast_encoding_decodes_like_the_validated_one(cls: type[Device]) -> None:
    env = CentreEnv(7, "c001")
    fast = cls("c001", f"c001-{cls.abbr}1", env, 7, MONDAY_10_IST, validate=False)
    slow = cls("c001", f"c001-{cls.abbr}1", CentreEnv(7, "c001"), 7, MONDAY_10_IST, validate=True)
    a, b = run(fast, MONDAY_10_IST + DAY), run(slow, MONDAY_10_IST + DAY)
    assert a == b
    assert len(a) > 20


def test_same_seed_gives_the_same_readings_and_another_seed_does_not() -> None:
    def readings(seed: int) -> list[bytes]:
        env = CentreEnv(seed, "c001")
        out = []
        for device_id, cls in centre_layout("c001", 7):
            device = cls("c001", device_id, env, seed, MONDAY_10_IST)
            while device.next_due_ms() < MONDAY_10_IST + DAY:
                out += [r.payload for r in device.step(device.next_due_ms())]
        return out

    assert readings(42) == readings(42)
    assert readings(42) != readings(43)


def test_router_counters_grow_between_reboots_and_restart_after_one() -> None:
    router = Router("c001", "c001-rtr1", CentreEnv(1, "c001"), 1, MONDAY_10_IST)
    values = [m.metrics for m in run(router, MONDAY_10_IST + 4 * DAY) if not hasattr(m, "name")]
    rx = [m.wan_rx_bytes for m in values]
    uptime = [m.uptime_s for m in values]
    assert rx == sorted(rx) and rx[-1] > rx[0]
    assert uptime == sorted(uptime)
    router.boot_ms = router.last_ms
    router.on_reboot(router.last_ms)
    after = [m.metrics for m in run(router, MONDAY_10_IST + 5 * DAY) if not hasattr(m, "name")]
    assert after[0].wan_rx_bytes < rx[-1] and after[0].uptime_s < uptime[-1]
    assert [m.wan_rx_bytes for m in after] == sorted(m.wan_rx_bytes for m in after)


def power_day(cloud: float, peak_load_w: float, soc: float) -> list[Any]:
    env = CentreEnv(3, "c009", on_grid=False, cloud=cloud)
    midnight = env.day_start_ms(env.local_day(MONDAY_10_IST))
    unit = PowerUnit("c009", "c009-pwr1", env, 3, midnight, interval_s=300)
    unit.soc = soc
    unit.peak_load_w = peak_load_w
    return [m for m in run(unit, midnight + DAY) if not hasattr(m, "name")]


def test_battery_charges_with_the_sun_and_drains_with_load_at_night() -> None:
    readings = power_day(cloud=0.0, peak_load_w=250.0, soc=50.0)
    env = CentreEnv(3, "c009")
    soc: dict[int, float] = {}
    pv: dict[int, float] = {}
    for r in readings:  # the first reading of each local hour
        soc.setdefault(int(env.local_hour(r.ts)), r.metrics.battery_soc_pct)
        pv.setdefault(int(env.local_hour(r.ts)), r.metrics.pv_power_w)
    assert all(0.0 <= r.metrics.battery_soc_pct <= 100.0 for r in readings)
    assert pv[3] == 0.0 and pv[22] == 0.0 and pv[12] > 100.0
    assert soc[5] < 50.0  # the night drains
    assert soc[15] > soc[8]  # the sun charges though the clinic is open
    assert soc[23] < soc[18]  # the evening drains again


def test_clouds_and_heavy_load_drain_what_sun_and_light_load_fill() -> None:
    sunny = power_day(cloud=0.0, peak_load_w=100.0, soc=50.0)[-1].metrics.battery_soc_pct
    dark = power_day(cloud=0.9, peak_load_w=450.0, soc=50.0)[-1].metrics.battery_soc_pct
    assert sunny > 50.0 > dark >= 0.0


def test_soc_stays_within_bounds_for_a_month_off_grid() -> None:
    env = CentreEnv(5, "c010", on_grid=False)
    unit = PowerUnit("c010", "c010-pwr1", env, 5, MONDAY_10_IST, interval_s=900)
    readings = [m for m in run(unit, MONDAY_10_IST + 30 * DAY) if not hasattr(m, "name")]
    socs = [r.metrics.battery_soc_pct for r in readings]
    assert min(socs) >= 0.0 and max(socs) <= 100.0
    assert max(socs) - min(socs) > 10.0  # it does move
    energy = [r.metrics.energy_today_wh for r in readings]
    assert max(energy) > 0.0


def test_health_devices_measure_patients_in_clinic_hours_with_some_abnormal() -> None:
    env = CentreEnv(11, "c011")
    ox = STANDARD_SET[3]("c011", "c011-ox1", env, 11, MONDAY_10_IST)
    events = [
        m for m in run(ox, MONDAY_10_IST + 30 * DAY) if getattr(m, "name", None) == "measurement"
    ]
    assert 100 < len(events) < 30 * 40
    assert all(env.is_open(e.ts) for e in events)
    assert all(e.metrics.patient_id and 0 <= e.metrics.battery_pct <= 100 for e in events)
    low = [e for e in events if e.metrics.spo2_pct < 90]
    assert 0 < len(low) < len(events) * 0.2
