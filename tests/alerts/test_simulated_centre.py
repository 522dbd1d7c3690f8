"""End to end: a simulated centre's devices (the demo scenario) straight to the central
broker, the engine with the default pack, the webhook worker, a real HTTP receiver.

The scenario (firmware_sim/scenario.py) drains a small battery below 20 % in a long grid
cut at night and shows a patient at SpO2 86 %; the clock runs at 3,600x, so a simulated
day passes in 24 s.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from api.alerts.webhook import DeliveryOptions, WebhookWorker
from api.db.models import Centre, Device, NotificationChannel
from api.services.alert_pack import install
from firmware_sim.environment import HOUR_MS
from firmware_sim.fleet import Fleet, FleetConfig
from firmware_sim.scenario import LOW_SPO2_AFTER_H
from gramlink.services import MosquittoService
from tests.alerts.conftest import EngineFactory, Registry
from tests.api.webhook_receiver import Receiver
from tests.factories import unique_id, wait_for

pytestmark = pytest.mark.slow
SECRET = "k" * 40


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver(SECRET) as found:
        yield found


def bodies(receiver: Receiver) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in list(receiver.received)]


def events_of(receiver: Receiver, rule: str) -> list[str]:
    return [b["event"] for b in bodies(receiver) if b["alert"]["rule_id"] == rule]


def spo2_firings(receiver: Receiver) -> list[dict[str, Any]]:
    """The ``firing`` notifications of low SpO2, in the order they came."""
    return [
        b["alert"]
        for b in bodies(receiver)
        if b["alert"]["rule_id"] == "spo2-low" and b["event"] == "firing"
    ]


def scenario_spo2(receiver: Receiver, from_ms: int) -> list[dict[str, Any]]:
    """The firings at 86 % from the scenario's time on, earliest first: the scenario's patient
    is the first (another simulated patient may also happen to measure 86.0, a few % of runs)."""
    found = [a for a in spo2_firings(receiver) if a["value"] == 86.0 and a["started_ms"] >= from_ms]
    return sorted(found, key=lambda a: a["started_ms"])


def test_the_demo_scenario_fires_and_resolves_battery_low_and_fires_spo2_once_each(
    registry: Registry,
    mosquitto: MosquittoService,
    start_engine: EngineFactory,
    receiver: Receiver,
) -> None:
    centre = unique_id("sim")
    start_ms = time.time_ns() // 1_000_000
    config = FleetConfig(
        port=mosquitto.port,
        centre_ids=(centre,),
        username=mosquitto.admin_user,
        password=mosquitto.admin_password,
        accelerate=3600.0,
        start_ms=start_ms,
        seed=5,
        scenario="demo",
        session_expiry_s=0,  # nothing of these devices outlives the test on the shared broker
    )
    fleet = Fleet(config)
    low_spo2_from_ms = start_ms + int(LOW_SPO2_AFTER_H * HOUR_MS)
    site = fleet.sites[centre]
    registry_centre = {
        "latitude": site.latitude,
        "longitude": site.longitude,
        "utc_offset_h": site.utc_offset_h,
        "pv_rated_w": site.pv_rated_w,
    }
    with registry.sessions.begin() as s:
        s.add(Centre(id=centre, name=centre, **registry_centre))
        for device in fleet.devices.values():
            s.add(Device(id=device.device_id, centre_id=centre, kind=device.kind, model="m"))
        install(s, "test")
        s.add(NotificationChannel(name="district", url=receiver.url, secret=SECRET))
    start_engine()
    webhook = WebhookWorker(
        registry.sessions, DeliveryOptions(concurrency=2, backoff_min_s=0.2, poll_s=0.2)
    )
    webhook.start()
    fleet.start()
    try:
        wait_for(
            lambda: scenario_spo2(receiver, low_spo2_from_ms), 60, "the scenario's clinical alert"
        )
        wait_for(
            lambda: events_of(receiver, "battery-low") == ["firing", "resolved"],
            150,
            "battery-low fired and resolved",
        )
    finally:
        fleet.stop(drain_s=2)
        webhook.close()
    assert all(r.verified for r in receiver.received), "a signature did not verify"
    assert len(set(receiver.deliveries())) == len(receiver.deliveries())
    # every low SpO2 notified once (the simulator's other patients follow the usual mix)
    firing_ids = [a["id"] for a in spo2_firings(receiver)]
    assert len(firing_ids) == len(set(firing_ids))
    scenario = scenario_spo2(receiver, low_spo2_from_ms)[0]
    assert scenario["clinical"] is True
    # straight to the central broker there is no gateway to pseudonymise: no patient at all
    assert scenario["patient_ref"] is None
    assert "patient_id" not in json.dumps(bodies(receiver))
    battery = [b["alert"] for b in bodies(receiver) if b["alert"]["rule_id"] == "battery-low"]
    assert battery[0]["id"] == battery[1]["id"]  # one alert, notified twice: fired, resolved
    assert battery[1]["resolved_ms"] - battery[1]["started_ms"] >= 10 * 60_000
