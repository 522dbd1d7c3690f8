"""Least privilege: the engine's own broker account reads the data and state topics
(plain subscriptions) and may do nothing else."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

from contract.topics import Channel, topic
from gramlink.commands.broker import ADMIN_PASSWORD_ENV
from gramlink.services import MosquittoService
from tests.alerts.test_restart import REPO
from tests.factories import Received, admin_client, close, connect_client, unique_id, wait_for
from tests.ingest.test_service_account import NOT_AUTHORIZED, publish_reason


def test_the_alerts_account_reads_readings_and_states_and_may_do_nothing_else(
    mosquitto: MosquittoService,
) -> None:
    username = unique_id("alerts")
    command = ["broker", "service-account", "alerts", "--mqtt-url", mosquitto.url]
    done = subprocess.run(
        [sys.executable, "-m", "gramlink", *command, "--username", username],
        cwd=REPO,
        env={"PATH": os.environ["PATH"], ADMIN_PASSWORD_ENV: mosquitto.admin_password},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    values = dict(line.split("=", 1) for line in done.stdout.splitlines())
    assert values["GRAMLINK_ALERTS_MQTT_USERNAME"] == username
    password = values["GRAMLINK_ALERTS_MQTT_PASSWORD"]

    client, rc = connect_client(mosquitto, username=username, password=password)
    assert rc is not None and not rc.is_failure
    try:
        centre = unique_id("c")
        reading = topic(centre, "pw-1", Channel.TELEMETRY)
        assert publish_reason(client, reading, b"{}") == NOT_AUTHORIZED
        control = "$CONTROL/dynamic-security/v1"
        listing = json.dumps({"commands": [{"command": "listClients"}]}).encode()
        assert publish_reason(client, control, listing) == NOT_AUTHORIZED

        received = Received()
        client.on_message = received.on_message
        subscribed = threading.Event()
        client.on_subscribe = lambda *a: subscribed.set()
        client.subscribe([("gl/#", 1), ("$CONTROL/#", 1)])
        assert subscribed.wait(5)
        admin = admin_client(mosquitto)
        wanted = [
            topic(centre, "gw-1", Channel.GATEWAY_BATCH),
            topic(centre, "pw-1", Channel.TELEMETRY),
            topic(centre, "ox-1", Channel.EVENT),
        ]
        for name in [topic(centre, "pw-1", Channel.CMD), *wanted]:
            admin.publish(name, b"{}", qos=1).wait_for_publish(5)
        marker = topic(centre, "pw-1", Channel.STATE)
        admin.publish(marker, b"{}", qos=1).wait_for_publish(5)
        close(admin)
        wait_for(lambda: marker in [m.topic for m in received.messages], 5, "marker")
        # (retained births other tests left on this shared broker arrive on subscribing)
        assert [m.topic for m in received.messages if not m.retain] == [*wanted, marker]
    finally:
        close(client)
