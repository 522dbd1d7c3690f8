"""The demo scenario, generated without a broker: what the alert rules will see.

Every assertion is about readings inside the first two simulated days, which
``gramlink demo``'s 720x clock plays in four real minutes.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import pytest

from contract.codec import decode
from contract.topics import Channel
from firmware_sim.devices import Device, PowerUnit, PulseOximeter, Thermometer
from firmware_sim.environment import HOUR_MS
from firmware_sim.errors import ConfigError
from firmware_sim.fleet import Fleet, FleetConfig
from firmware_sim.site import build_centre, site_facts
from gramlink.demo import centre_seed
from tests.firmware_sim.conftest import MONDAY_10_IST

MINUTE = 60_000
DAY = 24 * HOUR_MS
SATURDAY_16_IST = MONDAY_10_IST - 42 * HOUR_MS  # clinic closed until Monday 09:00
JUNE_MIDNIGHT_IST = MONDAY_10_IST + 150 * DAY - 10 * HOUR_MS  # early sunrise, monsoon
DEMO_SEED = centre_seed("spoke1")  # the centre gramlink demo runs the scenario on


def readings(device: Device, until_ms: int) -> list[Any]:
    out = []
    while device.next_due_ms() < until_ms:
        for reading in device.step(device.next_due_ms()):
            channel = Channel.EVENT if reading.is_event else Channel.TELEMETRY
            out.append(decode(channel, reading.payload))
    return out


def of_kind(devices: list[Device], cls: type[Device]) -> Device:
    return next(d for d in devices if isinstance(d, cls))


def runs(items: list[Any], inside: Any) -> list[list[Any]]:
    """Maximal runs of consecutive items for which ``inside`` holds."""
    out: list[list[Any]] = []
    current: list[Any] = []
    for item in items:
        if inside(item):
            current.append(item)
        elif current:
            out.append(current)
            current = []
    if current:
        out.append(current)
    return out


@pytest.mark.parametrize(
    ("seed", "start_ms"),
    [(DEMO_SEED, MONDAY_10_IST), (DEMO_SEED, SATURDAY_16_IST), (7, JUNE_MIDNIGHT_IST)],
    ids=["monday-10h", "saturday-16h", "june-0h"],
)
def test_the_demo_scenario_drains_cuts_and_measures_a_low_spo2_within_two_days(
    seed: int, start_ms: int
) -> None:
    end = start_ms + 2 * DAY
    _, devices = build_centre("spoke1", seed, start_ms, 7, scenario="demo")

    power = [r for r in readings(of_kind(devices, PowerUnit), end) if not hasattr(r, "name")]
    cuts = runs(power, lambda r: r.metrics.grid_present is False)
    longest_cut = max(cuts, key=lambda run: run[-1].ts - run[0].ts)
    assert longest_cut[-1].ts - longest_cut[0].ts > 4 * HOUR_MS

    low = runs(power, lambda r: r.metrics.battery_soc_pct < 20.0)
    assert low, "the battery never went below 20 %"
    episode = low[0]
    assert episode[-1].ts - episode[0].ts > 10 * MINUTE
    assert all(r.metrics.grid_present is False for r in episode[:10])  # during the cut
    assert all(r.metrics.inverter_on for r in episode)  # above the 5 % cut-off
    after = [r for r in power if r.ts > episode[-1].ts]
    assert any(r.metrics.battery_soc_pct > 25.0 for r in after), "it never recovered above 25 %"

    spo2 = [
        r
        for r in readings(of_kind(devices, PulseOximeter), end)
        if getattr(r, "name", None) == "measurement" and r.metrics.spo2_pct < 90.0
    ]
    assert spo2 and spo2[0].metrics.spo2_pct == 86.0 and spo2[0].metrics.patient_id

    thermometer = readings(of_kind(devices, Thermometer), end)
    gaps = [b.ts - a.ts for a, b in pairwise(thermometer)]
    assert max(gaps) > 5 * HOUR_MS  # silent for hours, every 15 min otherwise
    assert thermometer[-1].ts > start_ms + 8 * HOUR_MS  # and back afterwards


def test_without_the_scenario_the_same_centre_keeps_its_grid_at_night() -> None:
    _, plain = build_centre("spoke1", DEMO_SEED, MONDAY_10_IST, 7)
    _, demo = build_centre("spoke1", DEMO_SEED, MONDAY_10_IST, 7, scenario="demo")
    night = MONDAY_10_IST + 12 * HOUR_MS  # 22:00, inside the demo's 19:00-07:00 cut
    assert of_kind(plain, PowerUnit).env.grid_present(night)
    assert not of_kind(demo, PowerUnit).env.grid_present(night)


def test_an_unknown_scenario_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown scenario 'storm' .*demo"):
        build_centre("c001", 1, MONDAY_10_IST, 7, scenario="storm")


def test_a_fleet_applies_the_scenario_to_one_centre_and_knows_every_site() -> None:
    config = FleetConfig(
        centre_ids=("c001", "c002"), seed=5, start_ms=MONDAY_10_IST, scenario="demo"
    )
    fleet = Fleet(config)  # built, never started: no broker needed
    capacities = {
        d.centre: d.capacity_wh for d in fleet.devices.values() if isinstance(d, PowerUnit)
    }
    assert capacities["c001"] == 1500.0 and capacities["c002"] != 1500.0
    assert fleet.sites == {c: site_facts(5, c, 7) for c in ("c001", "c002")}
    with pytest.raises(ConfigError, match="scenario centre 'c009'"):
        Fleet(FleetConfig(centre_ids=("c001",), scenario="demo", scenario_centre="c009"))


def test_site_facts_are_the_seeded_location_and_the_panel_the_power_unit_reports() -> None:
    facts = site_facts(5, "c001", 7)
    _, devices = build_centre("c001", 5, MONDAY_10_IST, 7)
    unit = of_kind(devices, PowerUnit)
    assert facts.pv_rated_w == unit.panel_wp  # type: ignore[attr-defined]
    assert (facts.latitude, facts.longitude) == (unit.env.latitude, unit.env.longitude)
    assert 10.0 <= facts.latitude <= 26.0 and 72.0 <= facts.longitude <= 88.0
    assert facts.utc_offset_h == 5.5
    assert site_facts(5, "c001", 7) == facts
    assert site_facts(6, "c001", 7) != facts
    assert site_facts(5, "c001", 1).pv_rated_w is None  # a router alone: no panel
