"""Central logins kept in the broker's password and ACL files (api/broker_files.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from api.broker import BrokerAccess
from api.broker_files import BrokerFilesError, FileLogins
from api.logins import LoginChange
from api.settings import ApiSettings
from contract.metrics import DeviceKind
from contract.provisioning import DynsecOp
from mqttlink.endpoint import Endpoint, TlsFiles
from tests.api.conftest import MASTER, ApiFactory
from tests.api.mqtt_helpers import refused
from tests.conftest import BrokerFactory
from tests.factories import unique_id, wait_for

ROOT = Path(__file__).resolve().parents[2]


def test_a_restarted_api_rewrites_lost_broker_files_from_the_registry(
    api_factory: ApiFactory, broker_factory: BrokerFactory, tmp_path: Path
) -> None:
    broker = broker_factory(login_files=True)
    db_url = f"sqlite:///{tmp_path / 'registry.sqlite'}"
    api = api_factory(db_url, broker)
    centre, device = api.centre(), unique_id("d")
    answer = api.post_device(centre, device)
    assert answer.status_code == 201, answer.text
    creds = answer.json()["credentials"]
    assert not refused(broker, creds["username"], creds["password"])

    broker.password_file.write_text("")
    os.kill(int(broker.process.pid or 0), signal.SIGHUP)
    wait_for(lambda: refused(broker, creds["username"], creds["password"]), 10, "login lost")

    api_factory(db_url, broker)
    assert not refused(broker, creds["username"], creds["password"])
    assert "\n" + creds["username"] + ":$7$101$" in "\n" + broker.password_file.read_text()
    assert creds["password"] not in broker.password_file.read_text()


def test_a_broker_that_cannot_be_reloaded_refuses_provisioning_and_keeps_nothing(
    api_factory: ApiFactory, broker_factory: BrokerFactory
) -> None:
    broker = broker_factory(login_files=True)
    api = api_factory(broker=broker)
    centre = api.centre()
    broker.stop()
    device = unique_id("d")
    answer = api.post_device(centre, device)
    assert answer.status_code == 503
    assert answer.headers["content-type"] == "application/problem+json"
    assert "broker" in answer.json()["detail"]
    assert api.client.get(f"/v1/devices/{device}", headers=api.headers()).status_code == 404


def test_a_files_directory_that_does_not_exist_stops_the_api_in_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "GRAMLINK_API_MASTER_SECRET": MASTER}
    result = subprocess.run(
        [sys.executable, "-m", "gramlink", "api", "--broker-files-dir", str(tmp_path / "none")],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=ROOT,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: GRAMLINK_API_BROKER_FILES_DIR Value error, {tmp_path / 'none'} is not a directory"
    ]


def test_the_pid_file_defaults_to_the_files_directory(tmp_path: Path) -> None:
    settings = ApiSettings(broker_files_dir=tmp_path, master_secret=MASTER)  # type: ignore[arg-type]
    assert settings.broker_pid_file == tmp_path / "mosquitto.pid"


def test_a_pid_file_naming_another_process_is_never_signalled(
    broker_factory: BrokerFactory, tmp_path: Path
) -> None:
    broker = broker_factory(login_files=True)
    stale = tmp_path / "stale.pid"
    stale.write_text(str(os.getpid()))  # SIGHUP would end this very test process
    access = BrokerAccess(
        Endpoint.parse(broker.url), broker.admin_user, broker.admin_password, TlsFiles(), 2
    )
    files = FileLogins(broker.home, stale, access)
    change = LoginChange(DynsecOp.UPSERT, "c-1", "d-1", DeviceKind.ROUTER, "a-password")
    with pytest.raises(BrokerFilesError, match="not a mosquitto process"):
        files.apply([change])


def test_a_rotation_the_broker_missed_leaves_the_old_passwords_working(
    api_factory: ApiFactory, broker_factory: BrokerFactory
) -> None:
    broker = broker_factory(login_files=True)
    api = api_factory(broker=broker)
    centre, device = api.centre(), unique_id("d")
    answer = api.post_device(centre, device)
    creds = answer.json()["credentials"]
    broker.stop()
    rotation = api.client.post(f"/v1/centres/{centre}/rotate-key", headers=api.headers())
    assert rotation.status_code == 503
    assert rotation.headers["content-type"] == "application/problem+json"
    broker.start()  # it reads the files as the API left them
    assert not refused(broker, creds["username"], creds["password"])
    view = api.client.get(f"/v1/devices/{device}", headers=api.headers()).json()
    assert view["credential_version"] == 1
