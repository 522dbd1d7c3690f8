"""``gramlink centre-broker install`` and what the brokers' configurations promise.

The install runs into a temporary directory laid out like a Debian box
(``etc/mosquitto/{mosquitto.conf,conf.d}``, ``var/lib/mosquitto``); nothing
under /etc is touched. Mosquitto is then started from the installed files.
"""

from __future__ import annotations

import getpass
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from gateway.settings import GatewaySettings
from gramlink.services import MosquittoService
from gramlink.services.centre_broker import CentreBroker, render, template_text
from gramlink.services.process import free_port, port_in_use, wait_until
from ingest.settings import IngestSettings
from tests.factories import unique_id, wait_for

SMALLEST_READING = 60  # bytes: a valid reading with one metric


def gramlink(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gramlink", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def settings(path: Path) -> dict[str, list[str]]:
    """A Mosquitto config file as {option: [values]} (comments and blanks skipped)."""
    found: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.strip().partition(" ")
            found.setdefault(key, []).append(value.strip())
    return found


def one(found: dict[str, list[str]], key: str) -> str:
    assert len(found.get(key, [])) == 1, f"{key}: {found.get(key)}"
    return found[key][0]


def duration_s(text: str) -> int:
    number, unit = int(text[:-1]), text[-1]
    return number * {"h": 3600, "d": 86400, "w": 7 * 86400, "m": 30 * 86400, "y": 365 * 86400}[unit]


@dataclass
class DebianBox:
    """A temporary root laid out like a Debian box's Mosquitto."""

    root: Path
    port: int

    @property
    def conf_dir(self) -> Path:
        return self.root / "etc/mosquitto/conf.d"

    @property
    def main_conf(self) -> Path:
        return self.root / "etc/mosquitto/mosquitto.conf"

    @property
    def dynsec_file(self) -> Path:
        return self.root / "var/lib/mosquitto/dynamic-security.json"

    @property
    def env_file(self) -> Path:
        return self.root / "etc/gramlink/gateway.env"

    def install(
        self, *extra: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return gramlink(
            "centre-broker",
            "install",
            "--conf-dir",
            str(self.conf_dir),
            "--dynsec-file",
            str(self.dynsec_file),
            "--listen",
            f"127.0.0.1:{self.port}",
            "--env-file",
            str(self.env_file),
            *extra,
            env=env,
        )

    def write_stock_main_conf(self) -> None:
        """Debian's stock mosquitto.conf, with this root's paths (and run as the test's
        user: Debian's broker drops root for ``mosquitto``, who owns its directories)."""
        (self.root / "var/lib/mosquitto").mkdir(parents=True, exist_ok=True)
        self.main_conf.write_text(
            f"user {getpass.getuser()}\n"
            f"pid_file {self.root}/mosquitto.pid\n"
            "persistence true\n"
            f"persistence_location {self.root}/var/lib/mosquitto/\n"
            f"log_dest file {self.root}/mosquitto.log\n"
            f"include_dir {self.conf_dir}\n"
        )

    def env(self) -> dict[str, str]:
        lines = self.env_file.read_text().splitlines()
        return dict(line.split("=", 1) for line in lines)


@pytest.fixture
def box(tmp_path: Path) -> DebianBox:
    return DebianBox(tmp_path / "box", free_port())


def test_install_writes_the_drop_in_and_dynsec_once_and_is_idempotent(box: DebianBox) -> None:
    first = box.install()
    assert first.returncode == 0, first.stderr
    conf = box.conf_dir / "gramlink-centre.conf"
    assert f"wrote {conf}" in first.stdout
    assert f"created {box.dynsec_file}" in first.stdout
    assert "restart mosquitto" in first.stdout
    assert "include_dir" in first.stdout  # there is no main mosquitto.conf here yet: said so
    env = box.env()
    assert env["GRAMLINK_GATEWAY_LOCAL_URL"] == f"mqtt://127.0.0.1:{box.port}"
    assert env["GRAMLINK_GATEWAY_LOCAL_USERNAME"] == "admin"
    password = env["GRAMLINK_GATEWAY_LOCAL_PASSWORD"]
    assert password not in first.stdout + first.stderr  # with --env-file, not shown
    assert stat.S_IMODE(box.env_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(box.dynsec_file.stat().st_mode) == 0o600
    dynsec = box.dynsec_file.read_bytes()

    box.write_stock_main_conf()
    again = box.install()
    assert again.returncode == 0, again.stderr
    assert f"unchanged {conf}" in again.stdout
    assert f"kept {box.dynsec_file}" in again.stdout
    assert "include_dir" not in again.stdout  # the main file loads conf.d now
    assert box.dynsec_file.read_bytes() == dynsec
    assert box.env()["GRAMLINK_GATEWAY_LOCAL_PASSWORD"] == password

    other_port = box.install("--listen", "127.0.0.1:1884")
    assert f"updated {conf}" in other_port.stdout
    assert "listener 1884 127.0.0.1" in conf.read_text()


def test_install_adds_the_tls_listener_when_asked(box: DebianBox) -> None:
    cert, key = box.root / "centre.pem", box.root / "centre.key"
    result = box.install("--tls-port", "8883", "--certfile", str(cert), "--keyfile", str(key))
    assert result.returncode == 0, result.stderr
    found = settings(box.conf_dir / "gramlink-centre.conf")
    assert found["listener"] == [f"{box.port} 127.0.0.1", "8883 127.0.0.1"]
    assert found["certfile"] == [str(cert)] and found["keyfile"] == [str(key)]


def test_install_refuses_a_partial_tls_listener(box: DebianBox) -> None:
    result = box.install("--tls-port", "8883")
    assert result.returncode == 2
    assert "--certfile" in result.stderr
    assert not box.conf_dir.exists()


@pytest.fixture
def started(box: DebianBox) -> Iterator[DebianBox]:
    """Install, then run ``mosquitto -c`` on the stock main file that includes the drop-in."""
    result = box.install(env={"GRAMLINK_CENTRE_BROKER_ADMIN_PASSWORD": "centre-admin-pw-1"})
    assert result.returncode == 0, result.stderr
    box.write_stock_main_conf()
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    proc = subprocess.Popen(
        [binary, "-c", str(box.main_conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_until(
            lambda: proc.poll() is not None or port_in_use("127.0.0.1", box.port), 20, "mosquitto"
        )
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        yield box
    finally:
        proc.terminate()
        proc.wait(15)


def connack(port: int, username: str | None, password: str | None) -> mqtt.ReasonCode:
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=unique_id("probe"), protocol=mqtt.MQTTv5
    )
    if username is not None:
        client.username_pw_set(username, password)
    outcome: list[mqtt.ReasonCode] = []
    client.on_connect = lambda c, u, flags, rc, props: outcome.append(rc)
    client.connect("127.0.0.1", port, keepalive=10)
    client.loop_start()
    try:
        wait_for(lambda: bool(outcome), 10, "CONNACK")
    finally:
        client.disconnect()
        client.loop_stop()
    return outcome[0]


def test_mosquitto_runs_the_installed_file_with_dynsec_and_no_anonymous_access(
    started: DebianBox,
) -> None:
    env = started.env()
    assert env["GRAMLINK_GATEWAY_LOCAL_PASSWORD"] == "centre-admin-pw-1"
    assert not connack(started.port, "admin", "centre-admin-pw-1").is_failure
    assert connack(started.port, None, None).is_failure  # anonymous
    assert connack(started.port, "admin", "wrong").is_failure
    # Saved within seconds (Mosquitto's default would wait 30 minutes), where Debian's
    # main file puts it: the drop-in does not fight the stock settings.
    database = started.root / "var/lib/mosquitto/mosquitto.db"
    wait_for(database.exists, 10, "persistence file written by autosave")


def test_the_installed_file_is_the_template_with_only_site_values_filled_in(
    box: DebianBox,
) -> None:
    assert box.install().returncode == 0
    installed = (box.conf_dir / "gramlink-centre.conf").read_text().splitlines()
    template = template_text().splitlines()
    assert len(installed) == len(template)
    differing = [(t, i) for t, i in zip(template, installed, strict=True) if t != i]
    assert differing, "nothing substituted"
    for template_line, _ in differing:
        assert "${" in template_line, template_line


def test_the_gateway_tests_centre_broker_is_the_shipped_configuration(tmp_path: Path) -> None:
    broker = MosquittoService(tmp_path / "m", free_port(), "pw-" + "x" * 12, centre=True)
    drop_in = broker.centre_broker.conf_file
    assert broker.centre_broker == CentreBroker(
        tmp_path / "m" / "conf.d", broker.dynsec_file, "127.0.0.1", broker.port
    )
    broker.start()
    try:
        assert drop_in.read_text() == render(broker.centre_broker)
        assert f"include_dir {drop_in.parent}" in broker.config_file.read_text()
    finally:
        broker.stop()


def test_centre_configuration_holds_minutes_of_outage_and_outlives_the_gateway_session(
    box: DebianBox,
) -> None:
    assert box.install().returncode == 0
    found = settings(box.conf_dir / "gramlink-centre.conf")
    assert one(found, "allow_anonymous") == "false"
    assert one(found, "plugin").endswith("mosquitto_dynamic_security.so")
    assert one(found, "persistence") == "true"
    assert one(found, "autosave_on_changes") == "false"
    assert int(one(found, "autosave_interval")) <= 2  # seconds of acknowledged data at risk
    queued_bytes = int(one(found, "max_queued_bytes"))
    # Minutes of outage at the rate the tests kill the gateway at (300 readings/s,
    # at most 260 payload bytes each): at least five minutes.
    assert queued_bytes >= 300 * 260 * 300
    # The byte bound, not the message count, binds first, even for the smallest readings.
    assert int(one(found, "max_queued_messages")) * SMALLEST_READING >= queued_bytes
    gateway_expiry = GatewaySettings.model_fields["session_expiry_s"].default
    assert duration_s(one(found, "persistent_client_expiration")) >= gateway_expiry
    for debian_owned in ("pid_file", "persistence_location", "log_dest", "include_dir"):
        assert debian_owned not in found  # Mosquitto refuses a second value


def test_central_configuration_has_what_delivery_needs(mosquitto: MosquittoService) -> None:
    """Issue #11 item 3: the broker ``gramlink stack`` runs keeps what it acknowledged
    (persistence, saved promptly) and queues by bytes for an offline ingest session."""
    found = settings(mosquitto.config_file)
    assert one(found, "persistence") == "true"
    assert one(found, "persistence_location")
    assert int(one(found, "autosave_interval")) <= 2
    assert found.get("autosave_on_changes", ["false"]) == ["false"]
    queued_bytes = int(one(found, "max_queued_bytes"))
    assert queued_bytes >= 64 * 1024 * 1024  # minutes of every centre's batches
    assert int(one(found, "max_queued_messages")) * SMALLEST_READING >= queued_bytes
    assert one(found, "allow_anonymous") == "false"
    # The broker caps every session at this: it must not end ingest's or a gateway's
    # session (and the messages queued for it) before their own expiry does.
    cap = duration_s(one(found, "persistent_client_expiration"))
    assert cap >= IngestSettings.model_fields["session_expiry_s"].default
    assert cap >= GatewaySettings.model_fields["session_expiry_s"].default
