"""Ten routers behind one gateway update with one download over the uplink."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from firmware_sim.fleet import Fleet, FleetConfig
from gramlink.services import MosquittoService
from gramlink.services.process import free_port
from tests.factories import unique_id, wait_for
from tests.firmware.conftest import ROUTER_MODEL, LiveApiFactory
from tests.gateway.conftest import GatewayFactory, local_broker, make_gateway

__all__ = ["local_broker", "make_gateway"]  # the gateway tests' fixtures, used here

ROUTERS = 10
STANDARD_SET_SIZE = 7  # a router every seventh device of a simulated centre

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def centre_fleet() -> Iterator[list[Fleet]]:
    fleets: list[Fleet] = []
    yield fleets
    for fleet in fleets:
        fleet.stop()


def test_ten_routers_behind_a_gateway_cause_one_uplink_download(
    live_api_factory: LiveApiFactory,
    local_broker: MosquittoService,
    make_gateway: GatewayFactory,
    centre_fleet: list[Fleet],
) -> None:
    api = live_api_factory()
    centre = unique_id("c")
    routers = [f"{centre}-rtr{i}" for i in range(1, ROUTERS + 1)]
    rows = [f"{centre},Centre {centre},{r},router,{ROUTER_MODEL},1.0.0" for r in routers]
    csv = "centre_id,centre_name,device_id,kind,model,firmware_version\n" + "\n".join(rows)
    with api.http as http:
        assert http.post("/v1/devices/bulk", content=csv, headers=api.headers()).status_code == 201
        made = http.post(
            "/v1/gateways",
            json={"id": f"{centre}-gw", "centre_id": centre, "model": "gw-1"},
            headers=api.headers(),
        )
    assert made.status_code == 201, made.text
    login = made.json()["credentials"]
    gateway = make_gateway(
        centre,
        local_broker,
        api.broker,
        gateway_id=f"{centre}-gw",
        uplink_username=login["username"],
        uplink_password=login["password"],
        firmware_port=free_port(),
        firmware_host="127.0.0.1",
    )
    fleet = Fleet(
        FleetConfig(
            port=local_broker.port,
            centre_ids=(centre,),
            devices_per_centre=ROUTERS * STANDARD_SET_SIZE,
            mode="centre",
            username=local_broker.admin_user,
            password=local_broker.admin_password,
            interval_s=3600,
            will_delay_s=1,
            ota_timeout_s=10.0,
        )
    )
    centre_fleet.append(fleet)
    fleet.start()
    assert fleet.wait_connected(30)
    assert {d for d in fleet.devices if "-rtr" in d} == set(routers)

    fw = api.upload("4.0.0", os.urandom(300_000))
    campaign = api.campaign(
        name="centre",
        firmware_id=fw["id"],
        target={"centre_id": [centre]},
        stages=[100],
        deadline=(datetime.now(UTC) + timedelta(minutes=10)).isoformat(),
        respect_window=False,
    )
    assert len(campaign["devices"]) == ROUTERS
    wait_for(
        lambda: api.get_campaign(campaign["id"])["status"] in ("completed", "halted"),
        90,
        "the campaign through the gateway",
    )

    done = api.get_campaign(campaign["id"])
    assert done["status"] == "completed", done
    assert all(fleet.devices[r].fw == "4.0.0" for r in routers)
    assert api.store.served[fw["id"]] == 1  # one download over the uplink for ten routers
    assert gateway.firmware is not None
    assert gateway.firmware.cache.fetched == 1
    assert gateway.firmware.served >= ROUTERS  # every router got the gateway's copy
