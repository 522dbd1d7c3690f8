"""Storage receipts: a batch leaves the outbox only when storage (here a stand-in that
receipts what it got) names it; unreceipted batches go again; only ingest's account
may publish receipts and only the gateway itself may read its own."""

from __future__ import annotations

import queue
import secrets
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from contract.codec import encode
from contract.messages import State
from contract.provisioning import client_acls, mqtt_username, role_name
from contract.receipts import encode_receipt, receipt_topic
from gramlink.broker_accounts import ingest_account
from gramlink.services import MosquittoService
from tests.conftest import BrokerFactory
from tests.factories import Received, admin_client, connect_client, dynsec_admin, wait_for
from tests.gateway.conftest import GatewayFactory
from tests.gateway.sim import Collector, Devices, router_reading

pytestmark = pytest.mark.slow


def test_a_batch_is_deleted_only_after_its_receipt(
    local_broker: MosquittoService,
    broker_factory: BrokerFactory,
    make_gateway: GatewayFactory,
    centre: str,
) -> None:
    central = broker_factory()
    collector = Collector(central, centre, receipts=False).start()
    devices = Devices(local_broker, centre)
    gw = make_gateway(centre, local_broker, central)
    wait_for(lambda: gw.central.connected.is_set() and gw.local.connected.is_set(), 10, "up")
    for seq in range(30):
        devices.publish("router-1", "telemetry", router_reading(seq))
    wait_for(lambda: set(collector.seqs("router-1")) == set(range(30)), 20, "batches arrived")
    wait_for(lambda: gw.outbox.stats().unreceipted == 30, 10, "PUBACKs marked them sent")
    stats = gw.outbox.stats()
    assert stats.depth == 30  # the broker has them; storage has not said so: nothing deleted
    assert stats.ready == 0
    gw.report_health()
    # The health reading (via the outbox, in a later batch) carries the count and the age.
    wait_for(lambda: collector.of(gw.settings.gateway_id), 20, "health reading")
    health = collector.of(gw.settings.gateway_id)[-1].payload["metrics"]
    assert health["unreceipted"] == 30
    assert health["unreceipted_oldest_s"] >= 0

    # Storage names the batches (one receipt, all of them): the rows go.
    batch_seqs = _batch_seqs(gw)
    admin = admin_client(central)
    admin.publish(
        receipt_topic(centre, gw.settings.gateway_id),
        encode_receipt(gw.settings.gateway_id, batch_seqs),
        qos=1,
    ).wait_for_publish(5)
    wait_for(lambda: gw.outbox.stats().depth == 0, 10, "rows deleted on the receipt")
    assert gw.outbox.stats().unreceipted == 0
    admin.disconnect()
    devices.close()
    collector.close()


def _batch_seqs(gw: object) -> set[int]:
    outbox = gw.outbox  # type: ignore[attr-defined]
    rows = outbox._u.execute("SELECT DISTINCT batch FROM outbox WHERE batch IS NOT NULL")
    return {int(r[0]) for r in rows}


def test_unreceipted_batches_are_sent_again_after_the_timeout_and_after_a_reconnect(
    local_broker: MosquittoService,
    broker_factory: BrokerFactory,
    make_gateway: GatewayFactory,
    centre: str,
) -> None:
    central = broker_factory()
    collector = Collector(central, centre, receipts=False).start()
    devices = Devices(local_broker, centre)
    gw = make_gateway(centre, local_broker, central, receipt_timeout_s=1.0)
    wait_for(lambda: gw.central.connected.is_set() and gw.local.connected.is_set(), 10, "up")
    for seq in range(10):
        devices.publish("router-1", "telemetry", router_reading(seq))
    wait_for(lambda: collector.seqs("router-1").count(0) >= 2, 20, "a resend after the timeout")
    assert gw.uplink.counters.receipt_timeouts >= 1
    assert gw.outbox.stats().depth == 10
    collector.close()
    # Storage comes back (a reader that receipts): everything is deleted, nothing lost.
    receipting = Collector(central, centre).start()
    wait_for(lambda: gw.outbox.stats().depth == 0, 20, "receipted and deleted")
    assert set(receipting.seqs("router-1")) | set(collector.seqs("router-1")) == set(range(10))
    devices.close()
    receipting.close()


def _client(central: MosquittoService, username: str, password: str) -> mqtt.Client:
    client, rc = connect_client(central, username=username, password=password)
    assert rc is not None and not rc.is_failure, rc
    return client


def test_only_ingest_publishes_receipts_and_a_gateway_reads_only_its_own(
    broker_factory: BrokerFactory, centre: str
) -> None:
    central = broker_factory()
    password = secrets.token_urlsafe(16)
    commands: list[dict[str, object]] = []
    for gw in ("gw-a", "gw-b"):
        commands += [
            {
                "command": "createRole",
                "rolename": role_name(gw),
                "acls": client_acls(centre, gw, "gateway"),
            },
            {
                "command": "createClient",
                "username": mqtt_username(centre, gw),
                "password": password,
                "roles": [{"rolename": role_name(gw), "priority": 1}],
            },
        ]
    account = ingest_account(username=f"ingest-{centre}")
    commands += [
        {
            "command": "createRole",
            "rolename": account.rolename,
            "acls": [a.as_dict() for a in account.acls],
        },
        {
            "command": "createClient",
            "username": account.username,
            "password": password,
            "roles": [{"rolename": account.rolename}],
        },
    ]
    dynsec_admin(central, commands)

    a_got, b_got = Received(), Received()
    subscribed = threading.Semaphore(0)
    clients = []
    for gw, got in (("gw-a", a_got), ("gw-b", b_got)):
        client = _client(central, mqtt_username(centre, gw), password)
        client.on_message = got.on_message
        client.on_subscribe = lambda *a: subscribed.release()
        # gw-b tries to follow every receipt of the centre (the whole subtree, as it may)
        client.subscribe(f"gl/v1/{centre}/#" if gw == "gw-b" else receipt_topic(centre, gw), qos=1)
        clients.append(client)
    for _ in clients:
        assert subscribed.acquire(timeout=5)

    ingest = _client(central, account.username, password)
    acks: queue.Queue[int] = queue.Queue()
    ingest.on_publish = lambda c, u, mid, rc, p: acks.put(rc.value)
    ingest.publish(receipt_topic(centre, "gw-a"), encode_receipt("gw-a", [1]), qos=1)
    assert acks.get(timeout=5) == 0  # delivered to gw-a
    ingest.publish(receipt_topic(centre, "gw-b"), encode_receipt("gw-b", [2]), qos=1)  # marker
    wait_for(lambda: len(b_got.payloads()) == 1, 5, "gw-b's own receipt")
    wait_for(lambda: len(a_got.payloads()) == 1, 5, "gw-a's receipt")
    assert [m.topic for m in b_got.messages] == [receipt_topic(centre, "gw-b")]  # never gw-a's

    # A gateway may not publish a receipt, not even for itself.
    gw_a = clients[0]
    gw_acks: queue.Queue[int] = queue.Queue()
    gw_a.on_publish = lambda c, u, mid, rc, p: gw_acks.put(rc.value)
    gw_a.publish(receipt_topic(centre, "gw-a"), encode_receipt("gw-a", [3]), qos=1)
    assert gw_acks.get(timeout=5) == 0x87  # not authorized
    ingest.publish(receipt_topic(centre, "gw-a"), encode_receipt("gw-a", [4]), qos=1)  # marker
    wait_for(lambda: len(a_got.payloads()) == 2, 5, "the marker receipt")
    assert b'"seqs":[[3,3]]' not in b"".join(a_got.payloads())
    for client in [*clients, ingest]:
        client.disconnect()
        client.loop_stop()


def test_each_record_carries_the_model_of_the_last_birth_across_a_restart(
    local_broker: MosquittoService,
    broker_factory: BrokerFactory,
    make_gateway: GatewayFactory,
    centre: str,
    tmp_path: Path,
) -> None:
    central = broker_factory()
    collector = Collector(central, centre).start()
    devices = Devices(local_broker, centre)
    gw = make_gateway(centre, local_broker, central, data_dir=tmp_path / "gw")
    wait_for(lambda: gw.central.connected.is_set() and gw.local.connected.is_set(), 10, "up")
    devices.publish("router-1", "telemetry", router_reading(0))  # before any birth: no model
    wait_for(lambda: len(collector.of("router-1")) >= 1, 15, "first reading")
    birth = encode(State(online=True, kind="router", model="rb951"))
    devices.publish("router-1", "state", birth)
    devices.publish("router-1", "telemetry", router_reading(1))
    wait_for(lambda: len(collector.of("router-1")) >= 2, 15, "second reading")
    gw.stop()
    # Restarted, the gateway still knows the model (kept in its database).
    again = make_gateway(centre, local_broker, central, data_dir=tmp_path / "gw")
    wait_for(lambda: again.central.connected.is_set() and again.local.connected.is_set(), 10, "up")
    devices.publish("router-1", "telemetry", router_reading(2))
    wait_for(lambda: len(collector.of("router-1")) >= 3, 15, "third reading")
    assert [a.model for a in collector.of("router-1")] == [None, "rb951", "rb951"]
    devices.close()
    collector.close()
