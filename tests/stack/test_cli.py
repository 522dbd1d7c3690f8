"""``gramlink stack``: up is idempotent, status tells the truth, down stops only its own."""

from __future__ import annotations

import json
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from gramlink.services.process import free_port
from gramlink.stack import Credentials, Stack
from tests.factories import close, connect_client


def gramlink(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gramlink", *args], capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def stack_home(tmp_path: Path):  # type: ignore[no-untyped-def]
    home = tmp_path / "home"
    yield home
    gramlink("stack", "down", "--home", str(home))


def test_up_twice_status_down(stack_home: Path) -> None:
    mqtt_port, influx_port = free_port(), free_port()
    ports = ["--mqtt-port", str(mqtt_port), "--influx-port", str(influx_port)]
    first = gramlink("stack", "up", "--home", str(stack_home), *ports)
    assert first.returncode == 0, first.stderr
    assert f"mqtt://127.0.0.1:{mqtt_port}" in first.stdout
    assert f"http://127.0.0.1:{influx_port}" in first.stdout
    pids = {p: (stack_home / p).read_text() for p in ("mosquitto/mosquitto.pid",)}

    again = gramlink("stack", "up", "--home", str(stack_home))
    assert again.returncode == 0, again.stderr
    assert pids == {p: (stack_home / p).read_text() for p in pids}, "up restarted a service"

    creds = stack_home / "credentials.json"
    assert stat.S_IMODE(creds.stat().st_mode) == 0o600
    assert set(json.loads(creds.read_text())) == {
        "mqtt_admin_password",
        "influx_admin_password",
        "mqtt_ingest_password",
        "mqtt_alerts_password",
    }

    # ingest's own account (not the admin) logs in; the admin's password is not its.
    ingest_password = json.loads(creds.read_text())["mqtt_ingest_password"]
    stack = Stack(stack_home)
    for password, refused in ((ingest_password, False), (stack.mosquitto.admin_password, True)):
        client, rc = connect_client(stack.mosquitto, username="ingest", password=password)
        close(client)
        assert rc is not None and rc.is_failure is refused

    status = gramlink("stack", "status", "--home", str(stack_home))
    assert status.returncode == 0
    assert "mosquitto    up" in status.stdout and "influxdb     up" in status.stdout

    down = gramlink("stack", "down", "--home", str(stack_home))
    assert "mosquitto" in down.stdout and "influxdb" in down.stdout
    status = gramlink("stack", "status", "--home", str(stack_home))
    assert status.returncode == 3
    assert "mosquitto    down" in status.stdout and "influxdb     down" in status.stdout


def test_port_in_use_is_one_line_naming_the_port(stack_home: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = gramlink("stack", "up", "--home", str(stack_home), "--mqtt-port", str(port))
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: port {port} is already in use (mosquitto)"


def test_down_leaves_a_foreign_pid_alone(stack_home: Path) -> None:
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        (stack_home / "mosquitto").mkdir(parents=True)
        (stack_home / "mosquitto" / "mosquitto.pid").write_text(f"{sleeper.pid}\n")
        result = gramlink("stack", "down", "--home", str(stack_home))
        assert "nothing was running" in result.stdout
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()


def test_an_older_home_gets_the_ingest_password_added(tmp_path: Path) -> None:
    old = {"mqtt_admin_password": "a" * 20, "influx_admin_password": "b" * 20}
    (tmp_path / "credentials.json").write_text(json.dumps(old))
    creds = Credentials.load_or_create(tmp_path)
    assert (creds.mqtt_admin_password, creds.influx_admin_password) == ("a" * 20, "b" * 20)
    assert len(creds.mqtt_ingest_password) >= 24
    assert stat.S_IMODE((tmp_path / "credentials.json").stat().st_mode) == 0o600
    assert Credentials.load_or_create(tmp_path) == creds  # kept from now on
