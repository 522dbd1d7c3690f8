"""A batch the central broker did not deliver stays in the outbox: PUBACK 0x10 (nobody
subscribed) and 0x87 (the account may not publish there) keep it, count it, retry it."""

from __future__ import annotations

import logging
import secrets

import pytest

from gramlink.services import MosquittoService
from tests.conftest import BrokerFactory
from tests.factories import dynsec_admin, wait_for
from tests.gateway.conftest import GatewayFactory
from tests.gateway.sim import Collector, Devices, router_reading, wait_until_received

pytestmark = pytest.mark.slow


def test_puback_no_matching_subscribers_keeps_the_batch_until_a_reader_subscribes(
    local_broker: MosquittoService,
    broker_factory: BrokerFactory,
    make_gateway: GatewayFactory,
    centre: str,
) -> None:
    central = broker_factory()  # nobody reads the centre's batches yet
    devices = Devices(local_broker, centre)
    gw = make_gateway(centre, local_broker, central)
    wait_for(gw.central.connected.is_set, 10, "uplink up")
    wait_until_received(devices, lambda: gw.local_in.stored_total)
    seq = 0

    def rejected() -> bool:
        nonlocal seq
        devices.publish("router-1", "telemetry", router_reading(seq))
        seq += 1
        return gw.outbox.rejected_total >= 2

    wait_for(rejected, 20, "batches answered 0x10")
    assert gw.outbox.stats().depth >= 1  # nothing deleted
    assert gw.uplink.counters.records_acked == 0
    gw.report_health()  # the health reading carries the counter (it waits in the outbox too)

    collector = Collector(central, centre).start()
    wait_for(lambda: gw.outbox.stats().depth == 0, 30, "outbox drained once someone reads")
    assert set(collector.seqs("router-1")) == set(range(seq))
    health = collector.of(gw.settings.gateway_id)[-1].payload["metrics"]
    assert health["uplink_rejected_total"] >= 2
    devices.close()
    collector.close()


def test_puback_not_authorized_keeps_the_batch_counts_it_and_sends_it_once_granted(
    local_broker: MosquittoService,
    broker_factory: BrokerFactory,
    make_gateway: GatewayFactory,
    centre: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR)
    central = broker_factory()
    password = secrets.token_urlsafe(16)
    own = f"gl/v1/{centre}/#"
    acls = [  # it may follow its centre and publish states, not batches
        {"acltype": "subscribePattern", "topic": own, "allow": True},
        {"acltype": "publishClientReceive", "topic": own, "allow": True},
        {"acltype": "publishClientSend", "topic": f"gl/v1/{centre}/+/state", "allow": True},
    ]
    role = f"gw-{centre}"
    dynsec_admin(
        central,
        [
            {"command": "createRole", "rolename": role, "acls": acls},
            {
                "command": "createClient",
                "username": role,
                "password": password,
                "roles": [{"rolename": role}],
            },
        ],
    )
    collector = Collector(central, centre).start()
    devices = Devices(local_broker, centre)
    gw = make_gateway(centre, local_broker, central, uplink_username=role, uplink_password=password)
    wait_for(gw.central.connected.is_set, 10, "uplink up")
    # a reading sent before the gateway subscribed is not its own
    wait_until_received(devices, lambda: gw.local_in.received_total)
    for seq in range(20):
        devices.publish("router-1", "telemetry", router_reading(seq))
    wait_for(lambda: gw.outbox.rejected_total >= 2, 20, "batches answered 0x87")
    wait_for(lambda: gw.local_in.received_total >= 21, 10, "a probe and the 20 readings in")
    kept = lambda: gw.outbox.stats().depth == gw.local_in.received_total  # noqa: E731
    wait_for(kept, 10, "every reading kept in the outbox")
    assert collector.of("router-1") == []
    assert gw.central.refusal is None  # a PUBACK error does not stop the link
    lines = [r.getMessage() for r in caplog.records if "event=uplink_rejected" in r.getMessage()]
    assert len(lines) == 1, lines  # rate-limited: one line a minute
    assert "0x87 not authorized" in lines[0]

    dynsec_admin(  # the fix in the field: grant the right
        central,
        [
            {
                "command": "addRoleACL",
                "rolename": role,
                "acltype": "publishClientSend",
                "topic": own,
                "allow": True,
            }
        ],
    )
    wait_for(lambda: gw.outbox.stats().depth == 0, 30, "outbox drained once granted")
    assert collector.seqs("router-1") == list(range(20))
    devices.close()
    collector.close()
