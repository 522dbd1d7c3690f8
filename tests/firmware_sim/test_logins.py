"""Per-device logins from the credentials CSV (real dynamic-security clients); stopping promptly."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from contract.topics import Channel
from firmware_sim.credentials import HEADER, load_credentials, load_sheet
from firmware_sim.devices import centre_layout
from firmware_sim.errors import ConfigError
from firmware_sim.fleet import FleetConfig
from gramlink.services import MosquittoService
from tests.factories import Received, admin_client, close, unique_id, wait_for
from tests.firmware_sim.conftest import FleetFactory
from tests.firmware_sim.test_fleet import decoded, watch

DYNSEC = "$CONTROL/dynamic-security/v1"


def dynsec(broker: MosquittoService, commands: list[dict[str, object]]) -> None:
    """Run dynamic-security commands as the admin; fail on any error in the response."""
    client = admin_client(broker)
    got = Received()
    client.on_message = got.on_message
    try:
        client.subscribe(f"{DYNSEC}/response", qos=1)
        client.publish(DYNSEC, json.dumps({"commands": commands}), qos=1).wait_for_publish(5)
        wait_for(lambda: bool(got.payloads()), 10, "dynsec response")
        responses = json.loads(got.payloads()[0])["responses"]
        errors = [r for r in responses if r.get("error")]
        assert not errors, errors
    finally:
        close(client)


def provision(broker: MosquittoService, centre: str, devices: list[str], path: Path) -> None:
    """One dynsec client per device, allowed only on its own topics; the CSV the API exports."""
    commands: list[dict[str, object]] = []
    rows = []
    for device, cls in centre_layout(centre, len(devices)):
        user, role, password = f"u-{device}", f"r-{device}", f"pw-{device}-{os.getpid()}"
        own = f"gl/v1/{centre}/{device}/#"
        commands += [
            {"command": "createRole", "rolename": role},
            {"command": "addRoleACL", "rolename": role, "acltype": "publishClientSend",
             "topic": own, "allow": True},
            {"command": "addRoleACL", "rolename": role, "acltype": "subscribePattern",
             "topic": own, "allow": True},
            {"command": "createClient", "username": user, "password": password},
            {"command": "addClientRole", "username": user, "rolename": role},
        ]  # fmt: skip
        rows.append((centre, device, cls.kind.value, cls.model, user, password))
    dynsec(broker, commands)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        writer.writerows(rows)


def test_each_device_logs_in_with_its_own_account_and_a_wrong_password_stops_that_device(
    mosquitto: MosquittoService, make_fleet: FleetFactory, tmp_path: Path
) -> None:
    centre = unique_id("lg")
    devices = [d for d, _ in centre_layout(centre, 3)]
    path = tmp_path / "devices.csv"
    provision(mosquitto, centre, devices, path)
    text = path.read_text().replace(f"pw-{devices[2]}-", "wrong-")  # the third one is wrong
    path.write_text(text)
    client, got = watch(mosquitto, centre)
    try:
        fleet = make_fleet(
            start=False,
            centre_ids=(centre,),
            devices_per_centre=3,
            username=None,
            password=None,  # no shared account: only the file's logins
            credentials=load_credentials(path),
            accelerate=600,
            interval_s=60,
        )
        fleet.start()
        for device in devices[:2]:
            wait_for(lambda d=device: decoded(got, Channel.TELEMETRY, d), 15, f"{device} data")  # type: ignore[misc]
        bad = fleet.link_for(devices[2])
        wait_for(lambda: bad.fatal is not None, 10, "refused login")
        assert "refused us: 0x8" in (bad.fatal or "")  # 0x86 or 0x87, by the broker's choice
        assert "GRAMLINK_SIM_MQTT_PASSWORD" in (bad.fatal or "")
        assert fleet.fatal() is None, "the other devices carry on"
        errors = fleet.stats().errors
        # no retry loop: more telemetry flows from the good ones, no further login attempts
        seen = len(decoded(got, Channel.TELEMETRY, devices[0]))
        wait_for(lambda: len(decoded(got, Channel.TELEMETRY, devices[0])) > seen + 3, 15, "more")
        assert fleet.stats().errors == errors == 1
        assert not decoded(got, Channel.STATE, devices[2])
    finally:
        close(client)


def test_a_file_of_wrong_passwords_ends_the_command_with_a_clear_error(
    mosquitto: MosquittoService, tmp_path: Path
) -> None:
    prefix = unique_id("lw") + "-"
    centre = f"{prefix}001"  # what --centre-prefix PREFIX --centres 1 simulates
    path = tmp_path / "devices.csv"
    provision(mosquitto, centre, [d for d, _ in centre_layout(centre, 2)], path)
    path.write_text(path.read_text().replace(",pw-", ",nope-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRAMLINK_")}
    result = subprocess.run(
        [sys.executable, "-m", "gramlink", "sim", "--mqtt-url", mosquitto.url,
         "--centre-prefix", prefix, "--centres", "1", "--devices-per-centre", "2",
         "--credentials", str(path)],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 4, result.stderr  # ExitCode.REFUSED
    assert "refused us: 0x8" in result.stderr
    assert "GRAMLINK_SIM_MQTT_PASSWORD" in result.stderr
    assert result.stderr.count("event=link_refused") == 2, "one refusal per device, no retries"


def test_a_sheet_is_the_roster_whatever_the_ids_and_a_kind_it_cannot_simulate_is_refused(
    tmp_path: Path,
) -> None:
    path = tmp_path / "sheet.csv"
    rows = [
        ("spoke-1", "gw-spoke-1", "gateway", "pi4", "spoke-1/gw-spoke-1", "p1", "a2V5"),
        ("spoke-1", "bp-spoke-1-1", "bp_monitor", "omron", "spoke-1/bp-spoke-1-1", "p2", ""),
        ("spoke-2", "meter-9", "power", "victron", "spoke-2/meter-9", "p3", ""),
    ]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow((*HEADER, "centre_key"))
        writer.writerows(rows)
    sheet = load_sheet(path)
    config = FleetConfig(
        roster=tuple((r.centre, r.device, r.kind) for r in sheet),
        credentials={r.device: (r.username, r.password) for r in sheet},
    )
    assert config.centre_list() == ["spoke-1", "spoke-2"]
    kinds = {d: cls.kind.value for ids in config.layouts().values() for d, cls in ids}
    assert kinds == {"bp-spoke-1-1": "bp_monitor", "meter-9": "power"}
    toaster = FleetConfig(roster=(("spoke-1", "t-1", "toaster"),))
    with pytest.raises(ConfigError, match="t-1: kind 'toaster' cannot be simulated"):
        toaster.layouts()
