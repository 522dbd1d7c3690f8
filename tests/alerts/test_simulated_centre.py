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
from api.db.models import Alert, Centre, Device, NotificationChannel
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


def scenario_alert(registry: Registry, centre: str, from_ms: int) -> Alert | None:
    """The low-SpO2 alert that holds the scenario's 86 %, the oximeter's first reading from
    ``from_ms`` on: the earliest started of those seen since. Its own alert, or, when the
    oximeter's reading before it was low too (the simulator draws 5 % of its readings
    low), the one still firing that it folded into: one trouble, one alert."""
    seen = [
        a
        for a in registry.alerts(centre, "spo2-low")
        if a.last_seen_ms is not None and a.last_seen_ms >= from_ms
    ]
    return min(seen, key=lambda a: a.started_ms, default=None)


def firing_body(receiver: Receiver, alert_id: str) -> dict[str, Any] | None:
    """The alert as its ``firing`` notification told it, None before that came."""
    return next((a for a in spo2_firings(receiver) if a["id"] == alert_id), None)


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

        def notified() -> dict[str, Any] | None:
            alert = scenario_alert(registry, centre, low_spo2_from_ms)
            return None if alert is None else firing_body(receiver, alert.id)

        wait_for(lambda: notified() is not None, 60, "the scenario's clinical alert notified")
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
    # every low SpO2 alert notified once (the simulator's other patients follow the usual mix)
    firing_ids = [a["id"] for a in spo2_firings(receiver)]
    assert len(firing_ids) == len(set(firing_ids))
    scenario = notified()
    assert scenario is not None and scenario["clinical"] is True
    if scenario["started_ms"] >= low_spo2_from_ms:  # its own alert: fired at the 86 %
        assert scenario["value"] == 86.0
    # straight to the central broker there is no gateway to pseudonymise: no patient at all
    assert scenario["patient_ref"] is None
    assert "patient_id" not in json.dumps(bodies(receiver))
    battery = [b["alert"] for b in bodies(receiver) if b["alert"]["rule_id"] == "battery-low"]
    assert battery[0]["id"] == battery[1]["id"]  # one alert, notified twice: fired, resolved
    assert battery[1]["resolved_ms"] - battery[1]["started_ms"] >= 10 * 60_000
