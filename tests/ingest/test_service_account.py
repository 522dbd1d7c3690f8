"""Least privilege on the central broker: ingest runs with its own account, not the admin.

The account stores readings through the shared subscription, but cannot publish
telemetry, cannot administer dynamic security and does not receive commands.
"""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from contract.topics import Channel, topic
from gramlink.broker_accounts import DynsecSession, ensure_account, ingest_account
from gramlink.commands.broker import ADMIN_PASSWORD_ENV
from tests.factories import Received, admin_client, close, connect_client, unique_id, wait_for
from tests.ingest.conftest import REPO, Publisher, count, now_ms, power_reading, worker_settings

NOT_AUTHORIZED = 0x87


def make_account(broker, username: str, group: str, password: str) -> list[str]:
    with DynsecSession(broker.url, broker.admin_user, broker.admin_password) as session:
        return ensure_account(session, ingest_account(username, group), password)


def publish_reason(client: mqtt.Client, topic_: str, payload: bytes) -> int:
    """The PUBACK reason code of one QoS 1 publish."""
    codes: list[int] = []
    done = threading.Event()

    def on_publish(_c: object, _u: object, _mid: int, rc: mqtt.ReasonCode, _p: object) -> None:
        codes.append(rc.value)
        done.set()

    client.on_publish = on_publish
    client.publish(topic_, payload, qos=1)
    assert done.wait(5), "no PUBACK"
    return codes[0]


def test_ingest_account_stores_readings_and_may_do_nothing_else(
    mosquitto, influx, start_worker
) -> None:
    username, group, password = unique_id("ingest"), unique_id("g"), unique_id("pw")
    assert make_account(mosquitto, username, group, password)
    assert make_account(mosquitto, username, group, password) == []  # idempotent, no kick

    centre = unique_id("c")
    settings = worker_settings(
        mosquitto, influx, mqtt_username=username, mqtt_password=password, share_group=group
    )
    worker = start_worker(settings)
    pub = Publisher(mosquitto)
    sent = pub.readings(centre, ["pw-1", "pw-2"], range(200), now_ms() - 60_000)
    pub.flush()
    wait_for(lambda: count(influx, "power", centre) == sent, 30, "stored with its account")
    pub.close()
    assert worker.worker.fatal is None

    client, rc = connect_client(mosquitto, username=username, password=password)
    assert rc is not None and not rc.is_failure
    try:
        reading = power_reading(1, now_ms())
        tele = topic(centre, "pw-1", Channel.TELEMETRY)
        assert publish_reason(client, tele, reading) == NOT_AUTHORIZED
        command = {"commands": [{"command": "listClients"}]}
        control = "$CONTROL/dynamic-security/v1"
        assert publish_reason(client, control, json.dumps(command).encode()) == NOT_AUTHORIZED

        # Subscribed to everything, it still receives only what ingest reads: the
        # command published before the marker birth never arrives.
        received = Received()
        client.on_message = received.on_message
        subscribed = threading.Event()
        client.on_subscribe = lambda *a: subscribed.set()
        client.subscribe([("gl/#", 1), ("$CONTROL/#", 1)])
        assert subscribed.wait(5)
        admin = admin_client(mosquitto)
        admin.publish(topic(centre, "pw-1", Channel.CMD), b"{}", qos=1).wait_for_publish(5)
        marker = topic(centre, "pw-1", Channel.STATE)
        admin.publish(marker, b"{}", qos=1).wait_for_publish(5)
        close(admin)
        wait_for(lambda: marker in [m.topic for m in received.messages], 5, "marker")
        # (retained births other tests left on this shared broker arrive on subscribing)
        assert [m.topic for m in received.messages if not m.retain] == [marker]
    finally:
        close(client)


def test_account_rights_are_corrected_and_extra_roles_removed(mosquitto) -> None:
    username, group, password = unique_id("ingest"), unique_id("g"), unique_id("pw")
    make_account(mosquitto, username, group, password)
    with DynsecSession(mosquitto.url, mosquitto.admin_user, mosquitto.admin_password) as s:
        s.must("addClientRole", username=username, rolename="admin")  # someone widened it
        s.must(
            "addRoleACL",
            rolename=f"gl-{username}",
            acltype="publishClientSend",
            topic="gl/#",
            allow=True,
        )
    changed = make_account(mosquitto, username, group, password)
    assert "removed role admin from client " + username in changed
    assert f"removed publishClientSend gl/# from role gl-{username}" in changed
    client, rc = connect_client(mosquitto, username=username, password=password)
    assert rc is not None and not rc.is_failure
    try:
        tele = topic(unique_id("c"), "pw-1", Channel.TELEMETRY)
        assert publish_reason(client, tele, b"{}") == NOT_AUTHORIZED
    finally:
        close(client)


def broker_command(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gramlink", "broker", *args],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_service_account_command_writes_a_working_login(mosquitto, tmp_path: Path) -> None:
    username = unique_id("ingest")
    env_file = tmp_path / "ingest.env"
    env_file.write_text("GRAMLINK_INGEST_INFLUX_URL=http://db:8086\n")
    args = ["service-account", "ingest", "--mqtt-url", mosquitto.url, "--username", username]
    admin = {ADMIN_PASSWORD_ENV: mosquitto.admin_password}

    first = broker_command(*args, "--env-file", str(env_file), env=admin)
    assert first.returncode == 0, first.stderr
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    values = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
    assert values["GRAMLINK_INGEST_INFLUX_URL"] == "http://db:8086"  # kept
    assert values["GRAMLINK_INGEST_MQTT_USERNAME"] == username
    old = values["GRAMLINK_INGEST_MQTT_PASSWORD"]
    client, rc = connect_client(mosquitto, username=username, password=old)
    close(client)
    assert rc is not None and not rc.is_failure

    again = broker_command(*args, env=admin)  # rotates; prints the settings instead
    assert again.returncode == 0, again.stderr
    printed = dict(line.split("=", 1) for line in again.stdout.splitlines())
    assert printed["GRAMLINK_INGEST_MQTT_PASSWORD"] != old
    client, rc = connect_client(mosquitto, username=username, password=old)
    close(client)
    assert rc is not None and rc.is_failure


@pytest.mark.parametrize(
    ("env", "expected"),
    [({}, ADMIN_PASSWORD_ENV), ({ADMIN_PASSWORD_ENV: "wrong"}, "refused the dynsec admin")],
)
def test_service_account_command_fails_in_one_line(mosquitto, env, expected) -> None:
    done = broker_command("service-account", "ingest", "--mqtt-url", mosquitto.url, env=env)
    assert done.returncode != 0
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert expected in done.stderr
