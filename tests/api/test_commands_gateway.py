"""Commands through a centre gateway: central broker → gateway → centre broker → device."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from api.schemas import Role
from gateway.app import Gateway
from gramlink.services import MosquittoService
from tests.api.conftest import Api, DeviceFleet
from tests.api.device_sim import command_state, provision, wait_status
from tests.api.mqtt_helpers import Watcher
from tests.factories import unique_id, wait_for
from tests.gateway.conftest import settings_for

StartGateway = Callable[[str], Gateway]


@pytest.fixture(scope="module")
def centre_broker(broker_factory: Callable[..., MosquittoService]) -> MosquittoService:
    return broker_factory(centre=True)


@pytest.fixture
def start_gateway(
    tmp_path: Path, centre_broker: MosquittoService, mosquitto: MosquittoService
) -> Iterator[StartGateway]:
    """A gateway for a centre, as the gateway tests run it; started again: same data, same
    session on the central broker."""
    running: list[Gateway] = []

    clock = tmp_path / "clock"
    clock.write_text("0 synced")  # NTP-synced, as in the field: it may judge ``expires``

    def start(centre: str) -> Gateway:
        settings = settings_for(
            centre, centre_broker, mosquitto, tmp_path / "gw", clock_offset_file=clock
        )
        gateway = Gateway(settings)
        gateway.start()
        running.append(gateway)
        return gateway

    yield start
    for gateway in reversed(running):
        gateway.stop()


def _send(api: Api, device: str, name: str, args: dict[str, object], expires_in_s: int) -> str:
    body = {"name": name, "args": args, "expires_in_s": expires_in_s}
    answer = api.client.post(
        f"/v1/devices/{device}/commands", json=body, headers=api.headers(Role.TECHNICIAN)
    )
    assert answer.status_code == 201, answer.text
    command_id: str = answer.json()["id"]
    return command_id


def _online(api: Api, device: str) -> bool:
    return bool(api.client.get(f"/v1/devices/{device}", headers=api.headers()).json()["online"])


def test_commands_through_a_gateway_and_none_run_late_after_the_gateway_was_offline(
    api: Api,
    centre_broker: MosquittoService,
    start_gateway: StartGateway,
    device_fleet: DeviceFleet,
) -> None:
    centre = api.centre()
    device = unique_id("rtr")
    provision(api, centre, device)
    gateway = start_gateway(centre)
    fleet = device_fleet(centre_broker, [(centre, device, "router")])  # on the centre broker
    wait_for(lambda: _online(api, device), 20, "the device's birth through the gateway")

    first = _send(api, device, "set_interval", {"interval_s": 13}, 120)
    done = wait_status(api, first, "succeeded")
    assert done["detail"] == "interval_s=13"
    assert fleet.devices[device].interval_ms == 13_000

    gateway.stop()  # the centre's uplink is down; its session stays on the central broker
    stale = _send(api, device, "set_interval", {"interval_s": 17}, 1)
    live = _send(api, device, "identify", {"duration_s": 3}, 600)
    expired = wait_status(api, stale, "expired")
    assert command_state(api, live)["status"] == "pending"
    # Mosquitto counts expiry in whole seconds: the gateway stays away past that too.
    at = datetime.fromisoformat(expired["expires_at"])
    past = (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp() + 2
    wait_for(lambda: time.time() >= past, 5, "the broker's expiry of the stale command")

    local = Watcher(centre_broker)
    try:
        start_gateway(centre)
        done = wait_status(api, live, "succeeded")
        relayed = [m for m in local.received.messages if m.topic == f"gl/v1/{centre}/{device}/cmd"]
    finally:
        local.close()
    assert [json.loads(m.payload)["id"] for m in relayed] == [live]
    # held on the central broker while the gateway was away: it arrives with what is left
    assert 0 < relayed[0].properties.MessageExpiryInterval <= 599
    assert done["detail"] == "blinking for 3 s"
    gone = command_state(api, stale)
    assert gone["status"] == "expired" and gone["delivered_at"] is None
    assert fleet.devices[device].interval_ms == 13_000, "the expired command never ran"
