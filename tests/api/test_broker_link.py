"""The API's broker connections: over ``mqtts://`` with the programme's CA, and the
one line (and exit code) of ``gramlink api`` when its broker is down, refuses the
admin login or presents a certificate of another CA; the downlink's PUBACK codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from api.broker import BrokerAccess
from api.dynsec import DownlinkRefused, DynsecClient
from contract.topics import Channel, topic
from gramlink.services import MosquittoService
from gramlink.services.process import free_port
from mqttlink.endpoint import Endpoint, TlsFiles
from tests.api.conftest import MASTER, ApiFactory
from tests.api.mqtt_helpers import refused
from tests.conftest import BrokerFactory
from tests.factories import admin_client, close, unique_id, wait_for
from tests.tls import Pki


def test_the_api_provisions_a_device_and_follows_presence_over_mqtts(
    api_factory: ApiFactory, tls_mosquitto: MosquittoService, pki: Pki
) -> None:
    api = api_factory(broker=tls_mosquitto, mqtt_url=tls_mosquitto.tls_url, mqtt_ca_file=pki.ca)
    centre, device = api.centre(), unique_id("d")
    answer = api.post_device(centre, device, kind="router")
    assert answer.status_code == 201, answer.text
    credentials = answer.json()["credentials"]
    # the login probe (over TLS) saw the broker load the new login: it works at once
    assert not refused(tls_mosquitto, credentials["username"], credentials["password"])

    publisher = admin_client(tls_mosquitto)
    try:
        payload = json.dumps({"v": 1, "online": True}).encode()
        publisher.publish(topic(centre, device, Channel.STATE), payload, qos=1).wait_for_publish(5)

        def online() -> bool:
            seen = api.client.get(f"/v1/devices/{device}", headers=api.headers()).json()
            return seen["online"] is True

        wait_for(online, 10, "presence over mqtts")
    finally:
        close(publisher)


def _api_process(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("GRAMLINK_")}
    environ.update(
        {
            "GRAMLINK_API_MASTER_SECRET": MASTER,
            "GRAMLINK_API_DB_URL": f"sqlite:///{tmp_path / 'api.sqlite'}",
            "GRAMLINK_API_PORT": str(free_port()),
            "GRAMLINK_API_MQTT_TIMEOUT_S": "2",
            **env,
        }
    )
    return subprocess.run(
        [sys.executable, "-m", "gramlink", "api"],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_a_broker_that_is_down_stops_the_api_with_one_line_and_exit_3(tmp_path: Path) -> None:
    result = _api_process(tmp_path, GRAMLINK_API_MQTT_URL=f"mqtt://127.0.0.1:{free_port()}")
    assert result.returncode == 3
    line = _one_line(result)
    assert "did not answer" in line and line.endswith("check GRAMLINK_API_MQTT_URL")
    assert not (tmp_path / "api.sqlite").exists()  # nothing started before the broker


def test_a_refused_admin_login_stops_the_api_with_one_line_and_exit_4(
    tmp_path: Path, mosquitto: MosquittoService
) -> None:
    result = _api_process(
        tmp_path,
        GRAMLINK_API_MQTT_URL=mosquitto.url,
        GRAMLINK_API_MQTT_ADMIN_PASSWORD="not-the-admin-password",
    )
    assert result.returncode == 4
    line = _one_line(result)
    assert "refused us: 0x8" in line
    assert line.endswith("check GRAMLINK_API_MQTT_ADMIN_USER / GRAMLINK_API_MQTT_ADMIN_PASSWORD")


def test_a_broker_certificate_from_another_ca_stops_the_api_naming_the_ca_setting(
    tmp_path: Path, tls_mosquitto: MosquittoService, pki: Pki
) -> None:
    result = _api_process(
        tmp_path,
        GRAMLINK_API_MQTT_URL=tls_mosquitto.tls_url,
        GRAMLINK_API_MQTT_CA_FILE=str(pki.other_ca),
        GRAMLINK_API_MQTT_ADMIN_PASSWORD=tls_mosquitto.admin_password,
    )
    assert result.returncode == 3
    line = _one_line(result)
    assert "certificate" in line and line.endswith("check GRAMLINK_API_MQTT_CA_FILE")


@pytest.fixture
def dynsec(broker_factory: BrokerFactory) -> DynsecClient:
    broker = broker_factory()
    access = BrokerAccess(
        Endpoint.parse(broker.url), broker.admin_user, broker.admin_password, TlsFiles(), 5
    )
    client = DynsecClient(access)
    client.start()
    return client


def test_a_downlink_nobody_subscribed_to_is_counted_not_delivered(dynsec: DynsecClient) -> None:
    try:
        dynsec.publish(f"gl/v1/{unique_id('c')}/gw/_gateway/dynsec", b"{}")  # 0x10
        assert dynsec.undelivered_total == 1
    finally:
        dynsec.close()


def test_a_downlink_the_broker_refuses_raises_with_its_reason(dynsec: DynsecClient) -> None:
    try:
        with pytest.raises(DownlinkRefused, match="0x87 not authorized"):
            dynsec.publish_many([("not-ours/anything", b"{}")])  # the admin may publish gl/#
    finally:
        dynsec.close()


def test_an_admin_login_refused_while_serving_stops_the_api_with_one_line_and_exit_4(
    tmp_path: Path, broker_factory: BrokerFactory
) -> None:
    broker = broker_factory()  # its admin is disabled below
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("GRAMLINK_")}
    environ.update(
        {
            "GRAMLINK_API_MASTER_SECRET": MASTER,
            "GRAMLINK_API_DB_URL": f"sqlite:///{tmp_path / 'api.sqlite'}",
            "GRAMLINK_API_PORT": str(port),
            "GRAMLINK_API_MQTT_URL": broker.url,
            "GRAMLINK_API_MQTT_ADMIN_PASSWORD": broker.admin_password,
            "GRAMLINK_API_LOG_LEVEL": "error",
        }
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "gramlink", "api"],
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def serving() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code < 500
            except httpx.HTTPError:
                return False

        wait_for(serving, 30, "API serving")
        admin = admin_client(broker)  # kicked too: nobody waits for the answer
        command = {"commands": [{"command": "disableClient", "username": broker.admin_user}]}
        admin.publish("$CONTROL/dynamic-security/v1", json.dumps(command), qos=1)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 4
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].endswith(
        "check GRAMLINK_API_MQTT_ADMIN_USER / GRAMLINK_API_MQTT_ADMIN_PASSWORD"
    )
