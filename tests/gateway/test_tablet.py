"""A centre tablet's read-only login (``gramlink centre-broker tablet``), with real brokers.

The centre broker is the shipped configuration (dynsec, deny by default), the
gateway runs with an SpO2 rule sent the way the API sends it, and the tablet
logs in with the account the command made: it gets the retained clinical alert
the gateway raised, and nothing it publishes or asks for beyond that goes
through.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
import pytest

from contract.codec import encode
from contract.edge import EdgeRules, decode_alert, local_alert_filter, rules_ack_topic, rules_topic
from contract.messages import telemetry
from contract.metrics import PulseOximeterMetrics
from gramlink.services import MosquittoService
from mqttlink.reasons import delivered
from tests.factories import Received, admin_client, close, connect_client, unique_id, wait_for
from tests.gateway.conftest import GatewayFactory
from tests.gateway.test_edge_units import spo2_rule

pytestmark = pytest.mark.timeout(120)


def make_tablet(
    local: MosquittoService, centre: str, username: str, password: str, *extra: str
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "GRAMLINK_GATEWAY_LOCAL_URL": local.url,
        "GRAMLINK_GATEWAY_LOCAL_USERNAME": local.admin_user,
        "GRAMLINK_GATEWAY_LOCAL_PASSWORD": local.admin_password,
        "GRAMLINK_CENTRE_TABLET_PASSWORD": password,
    }
    argv = ["centre-broker", "tablet", "--centre", centre, "--username", username, *extra]
    return subprocess.run(
        [sys.executable, "-m", "gramlink", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


@dataclass
class Answers:
    """PUBACK and SUBACK reason codes by message id."""

    pubacks: dict[int, int] = field(default_factory=dict)
    subacks: dict[int, list[int]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_publish(self, _c: object, _u: object, mid: int, rc: mqtt.ReasonCode, _p: object) -> None:
        with self.lock:
            self.pubacks[mid] = rc.value

    def on_subscribe(self, _c: object, _u: object, mid: int, codes: list, _p: object) -> None:
        with self.lock:
            self.subacks[mid] = [c.value for c in codes]

    def puback(self, mid: int) -> int:
        wait_for(lambda: mid in self.pubacks, 10, f"PUBACK {mid}")
        return self.pubacks[mid]

    def suback(self, mid: int | None) -> list[int]:
        assert mid is not None
        wait_for(lambda: mid in self.subacks, 10, f"SUBACK {mid}")
        return self.subacks[mid]


def login(local: MosquittoService, username: str, password: str) -> mqtt.ReasonCode | None:
    client, rc = connect_client(local, username=username, password=password)
    close(client)
    return rc


def oximeter(seq: int, patient: str) -> bytes:
    metrics = PulseOximeterMetrics(spo2_pct=85.0, pulse_bpm=110.0, patient_id=patient)
    return encode(telemetry("pulse_oximeter", ts=int(time.time() * 1000), seq=seq, metrics=metrics))


def raise_alert_at_the_centre(
    local: MosquittoService, central: MosquittoService, centre: str, gateway: str
) -> bytes:
    """Send the gateway an SpO2 rule (as the API does), then an SpO2 of 85 until the
    firing alert is retained on the centre broker; returns its payload."""
    upstream = admin_client(central)
    acks = Received()
    upstream.on_message = acks.on_message
    upstream.subscribe(rules_ack_topic(centre, gateway), qos=1)
    rules = EdgeRules(seq=1, rules=[spo2_rule()]).model_dump_json().encode()

    def acked() -> bool:
        if not acks.payloads():
            upstream.publish(rules_topic(centre, gateway), rules, qos=1)
        return bool(acks.payloads())

    wait_for(acked, 30, "the gateway's EdgeRulesAck")
    watcher = admin_client(local)
    alerts = Received()
    watcher.on_message = alerts.on_message
    watcher.subscribe(local_alert_filter(centre), qos=1)
    seq = [0]

    def firing() -> bool:
        if not alerts.payloads():
            seq[0] += 1
            watcher.publish(f"gl/v1/{centre}/oxi-1/telemetry", oximeter(seq[0], "p-7"), qos=1)
            time.sleep(0.2)  # a reading every 0.2 s until the gateway subscribed
        return any(decode_alert(p).state == "firing" for p in alerts.payloads() if p)

    try:
        wait_for(firing, 30, "the gateway's firing alert on the centre broker")
        return next(p for p in alerts.payloads() if p)
    finally:
        close(watcher)
        close(upstream)


def test_a_tablet_follows_the_centres_alerts_and_can_do_nothing_else(
    local_broker: MosquittoService,
    mosquitto: MosquittoService,
    make_gateway: GatewayFactory,
    centre: str,
) -> None:
    other = unique_id("c")
    username, password = unique_id("tablet"), "tablet-password-" + unique_id("p")
    made = make_tablet(local_broker, centre, username, password)
    assert made.returncode == 0, made.stderr
    assert f"subscribe={local_alert_filter(centre)}" in made.stdout.splitlines()
    gw = make_gateway(centre, local_broker, mosquitto)
    alert = decode_alert(
        raise_alert_at_the_centre(local_broker, mosquitto, centre, gw.settings.gateway_id)
    )
    assert alert.state == "firing"

    # the tablet logs in after the alert was raised: it is retained for it
    tablet, rc = connect_client(local_broker, username=username, password=password)
    assert rc is not None and not rc.is_failure, rc
    answers = Answers()
    got = Received()
    tablet.on_message = got.on_message
    tablet.on_publish = answers.on_publish
    tablet.on_subscribe = answers.on_subscribe
    try:
        _, mid = tablet.subscribe(local_alert_filter(centre), qos=1)
        assert answers.suback(mid) == [1]
        wait_for(lambda: bool(got.payloads()), 10, "the retained alert at the tablet")
        seen = decode_alert(got.payloads()[0])
        assert (seen.alert_id, seen.state, seen.rule_id) == (alert.alert_id, "firing", "spo2")
        assert got.messages[0].retain

        # nothing else to read: another centre's alerts, every topic, the credentials
        for refused in (
            local_alert_filter(other),
            "#",
            f"gl/v1/{centre}/#",
            f"gl/v1/{centre}/oxi-1/telemetry",  # readings: only with --readings
            "$CONTROL/dynamic-security/v1",  # createClient commands carry passwords
            "$CONTROL/dynamic-security/#",
        ):
            _, mid = tablet.subscribe(refused, qos=1)
            assert answers.suback(mid)[0] >= 0x80, refused

        # nothing to write: a reading, a forged alert, a dynsec command
        watcher = admin_client(local_broker)
        heard = Received()
        watcher.on_message = heard.on_message
        watcher.subscribe([(f"gl/v1/{centre}/#", 1), (f"gl/v1/{other}/#", 1)])
        marker = f"gl/v1/{centre}/marker/telemetry"

        def marked(n: int) -> None:
            def arrived() -> bool:
                if sum(m.topic == marker for m in heard.messages) < n:
                    watcher.publish(marker, b"marker", qos=1)
                    time.sleep(0.1)
                return sum(m.topic == marker for m in heard.messages) >= n

            wait_for(arrived, 10, "the marker")

        try:
            marked(1)  # the watcher hears the centre's topics
            forged = f"gl/v1/{centre}/{gw.settings.gateway_id}/_gateway/alert/al-{'0' * 24}"
            for topic, payload in (
                (f"gl/v1/{centre}/oxi-1/telemetry", oximeter(999, "p-8")),
                (forged, b'{"forged":true}'),
                (f"gl/v1/{other}/oxi-1/telemetry", oximeter(1, "p-9")),
                (
                    "$CONTROL/dynamic-security/v1",
                    b'{"commands":[{"command":"createClient","username":"intruder",'
                    b'"password":"intruder-password"}]}',
                ),
            ):
                info = tablet.publish(topic, payload, qos=1, retain=True)
                assert not delivered(answers.puback(info.mid)), topic
            marked(len([m for m in heard.messages if m.topic == marker]) + 1)
            live = [m.topic for m in heard.messages if not m.retain and m.topic != marker]
            assert live == [], live  # none of the tablet's publishes reached anyone
        finally:
            close(watcher)
        intruder = login(local_broker, "intruder", "intruder-password")
        assert intruder is None or intruder.is_failure  # the dynsec command did nothing
    finally:
        close(tablet)


def test_running_it_again_rotates_the_password_and_readings_are_opt_in(
    local_broker: MosquittoService, centre: str
) -> None:
    username = unique_id("display")
    first, second = "display-password-1-" + unique_id("p"), "display-password-2-" + unique_id("p")
    assert make_tablet(local_broker, centre, username, first).returncode == 0
    again = make_tablet(local_broker, centre, username, second, "--readings")
    assert again.returncode == 0, again.stderr
    readings = f"gl/v1/{centre}/+/telemetry"
    assert f"subscribe={readings}" in again.stdout.splitlines()
    old = login(local_broker, username, first)
    assert old is None or old.is_failure
    display, rc = connect_client(local_broker, username=username, password=second)
    assert rc is not None and not rc.is_failure, rc
    answers = Answers()
    got = Received()
    display.on_message = got.on_message
    display.on_subscribe = answers.on_subscribe
    try:
        _, mid = display.subscribe(readings, qos=1)
        assert answers.suback(mid) == [1]
        device = admin_client(local_broker)
        try:
            device.publish(f"gl/v1/{centre}/oxi-1/telemetry", oximeter(1, "p-1"), qos=1)
            wait_for(lambda: bool(got.payloads()), 10, "the reading at the display")
        finally:
            close(device)
    finally:
        close(display)


def test_a_device_login_cannot_be_taken_for_a_tablet(local_broker: MosquittoService) -> None:
    refused = make_tablet(local_broker, "c1", "c1/oxi-1", "whatever-password-123")
    assert refused.returncode == 2
    assert "--username" in refused.stderr
    wrong = subprocess.run(
        [sys.executable, "-m", "gramlink", "centre-broker", "tablet", "--centre", "c1"],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("GRAMLINK_GATEWAY_LOCAL")},
    )
    assert wrong.returncode == 2
    assert "GRAMLINK_GATEWAY_LOCAL_PASSWORD" in wrong.stderr
