"""Local enforcement through the running gateway, against a real local and central broker.

The test plays the API: it publishes ``DynsecUpdate`` messages on the central
broker (as ``api/services/provisioning.py`` does) and derives device passwords
with ``contract.provisioning``, exactly as a provisioned device would hold them.
"""

from __future__ import annotations

import argparse
import logging
import secrets
import threading
from collections.abc import Callable, Iterator

import pytest

from contract.codec import encode
from contract.messages import State
from contract.metrics import DeviceKind
from contract.provisioning import (
    DynsecAck,
    DynsecOp,
    DynsecUpdate,
    centre_key,
    device_password,
    dynsec_ack_topic,
    dynsec_topic,
    encode_key,
    mqtt_username,
)
from gateway.__main__ import start
from gateway.app import Gateway
from gramlink.services import MosquittoService
from tests.factories import (
    Received,
    admin_client,
    close,
    connect_client,
    dynsec_admin,
    wait_for,
)
from tests.gateway.conftest import KEY, GatewayFactory
from tests.gateway.sim import Collector, Devices, router_reading, wait_until_flowing

BrokerFactory = Callable[..., MosquittoService]
MASTER = secrets.token_bytes(32)


class FakeApi:
    """The API's side of the downlink: numbered updates on the gateway's dynsec topic."""

    def __init__(self, central: MosquittoService, centre: str) -> None:
        self.centre = centre
        self.key = centre_key(MASTER, centre, 1)
        self.topic = dynsec_topic(centre, f"{centre}-gw")
        self.client = admin_client(central)
        self.client.reconnect_delay_set(0.1, 0.5)
        self.acks = Received()
        self.client.on_message = self.acks.on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.subscribe(dynsec_ack_topic(centre, f"{centre}-gw"), qos=1)
        assert subscribed.wait(5)
        self.seq = 0

    def user(self, device: str) -> str:
        return mqtt_username(self.centre, device)

    def send(
        self, op: DynsecOp, device: str, version: int = 1, kind: DeviceKind = DeviceKind.ROUTER
    ) -> int:
        self.seq += 1
        update = DynsecUpdate(
            op=op, device_id=device, kind=kind, credential_version=version, seq=self.seq
        )
        self.raw(update.model_dump_json().encode())
        return self.seq

    def first(self, device: str, kind: DeviceKind = DeviceKind.ROUTER) -> None:
        """The first upsert, resent until acked: it proves the gateway's subscription exists
        (an update sent before a gateway ever subscribed has no session to wait in)."""
        self.seq += 1
        update = DynsecUpdate(
            op=DynsecOp.UPSERT, device_id=device, kind=kind, credential_version=1, seq=self.seq
        ).model_dump_json()
        for _ in range(40):
            self.raw(update.encode())
            try:
                wait_for(lambda: self.ack(self.seq) is not None, 0.5, "first ack")
                return
            except AssertionError:
                continue
        raise AssertionError("the gateway never applied its first update")

    def raw(self, payload: bytes) -> None:
        info = self.client.publish(self.topic, payload, qos=1)
        info.wait_for_publish(5)
        assert info.is_published()

    def ack(self, seq: int) -> DynsecAck | None:
        for payload in self.acks.payloads():
            ack = DynsecAck.model_validate_json(payload)
            if ack.seq == seq:
                return ack
        return None

    def wait_applied(self, seq: int, timeout: float = 15.0) -> DynsecAck:
        wait_for(lambda: self.ack(seq) is not None, timeout, f"ack of update {seq}")
        ack = self.ack(seq)
        assert ack is not None
        return ack

    def dev(self, name: str) -> str:
        """A device id unique to this test: dynsec user names are per broker, not per centre."""
        return f"{name}-{self.centre}"

    def password(self, device: str, version: int = 1) -> str:
        return device_password(self.key, device, version)

    def close(self) -> None:
        close(self.client)


@pytest.fixture
def api(mosquitto: MosquittoService, centre: str) -> Iterator[FakeApi]:
    fake = FakeApi(mosquitto, centre)
    yield fake
    fake.close()


def start_gateway(
    make_gateway: GatewayFactory, centre: str, local: MosquittoService, central: MosquittoService
) -> Gateway:
    key = encode_key(centre_key(MASTER, centre, 1))
    return make_gateway(centre, local, central, centre_key=key, dynsec_timeout_s=3)


def connects(broker: MosquittoService, user: str, password: str) -> bool:
    client, rc = connect_client(broker, username=user, password=password)
    ok = rc is not None and not rc.is_failure
    if ok:
        close(client)
    else:
        client.loop_stop()
    return ok


def test_an_update_from_the_api_lets_the_device_in_locally_and_its_data_flows(
    local_broker: MosquittoService,
    mosquitto: MosquittoService,
    make_gateway: GatewayFactory,
    centre: str,
    api: FakeApi,
) -> None:
    collector = Collector(mosquitto, centre).start()
    devices = Devices(local_broker, centre)
    start_gateway(make_gateway, centre, local_broker, mosquitto)
    wait_until_flowing(devices, collector)  # also: the dynsec subscription is in place
    device, other_device = api.dev("router-7"), api.dev("router-8")
    assert not connects(local_broker, api.user(device), api.password(device))

    assert api.wait_applied(api.send(DynsecOp.UPSERT, device)).ok

    user, password = api.user(device), api.password(device)
    client, rc = connect_client(local_broker, username=user, password=password)
    assert rc is not None and not rc.is_failure
    own, other = f"gl/v1/{centre}/{device}/telemetry", f"gl/v1/{centre}/{other_device}/telemetry"
    for seq in range(3):
        client.publish(own, router_reading(seq), qos=1).wait_for_publish(5)
    wait_for(lambda: len(collector.of(device)) >= 3, 15, "the device's readings at the centre")
    assert collector.seqs(device) == [0, 1, 2]
    # Its ACL is its own topics only: another device's topic is dropped by the local broker.
    client.publish(other, router_reading(9), qos=1).wait_for_publish(5)
    client.publish(own, router_reading(3), qos=1).wait_for_publish(5)
    wait_for(lambda: len(collector.of(device)) >= 4, 15, "the fourth reading")
    assert collector.of(other_device) == []
    close(client)
    devices.close()
    collector.close()


def test_updates_sent_while_the_gateway_was_stopped_are_applied_when_it_starts(
    local_broker: MosquittoService,
    mosquitto: MosquittoService,
    make_gateway: GatewayFactory,
    centre: str,
    api: FakeApi,
) -> None:
    bp1, router1, power1 = api.dev("bp-1"), api.dev("router-1"), api.dev("power-1")
    gw = start_gateway(make_gateway, centre, local_broker, mosquitto)
    api.first(bp1, kind=DeviceKind.BP_MONITOR)
    gw.stop()  # clean stop: the central broker keeps the session and queues for it

    seqs = [
        api.send(DynsecOp.UPSERT, router1),
        api.send(DynsecOp.UPSERT, power1, kind=DeviceKind.POWER),
        api.send(DynsecOp.UPSERT, router1, version=2),  # a rotation
        api.send(DynsecOp.DISABLE, power1),  # a suspension
    ]
    assert not connects(local_broker, api.user(router1), api.password(router1, 2))
    assert all(api.ack(seq) is None for seq in seqs)

    start_gateway(make_gateway, centre, local_broker, mosquitto)
    for seq in seqs:
        assert api.wait_applied(seq).ok
    assert connects(local_broker, api.user(router1), api.password(router1, 2))
    assert not connects(local_broker, api.user(router1), api.password(router1, 1))
    assert not connects(local_broker, api.user(power1), api.password(power1))
    assert connects(local_broker, api.user(bp1), api.password(bp1))


def test_disable_drops_the_local_connection_and_enable_lets_the_device_back(
    local_broker: MosquittoService,
    mosquitto: MosquittoService,
    make_gateway: GatewayFactory,
    centre: str,
    api: FakeApi,
) -> None:
    start_gateway(make_gateway, centre, local_broker, mosquitto)
    device = api.dev("router-1")
    password = api.password(device)
    api.first(device)
    client, rc = connect_client(local_broker, username=api.user(device), password=password)
    assert rc is not None and not rc.is_failure
    dropped = threading.Event()
    client.on_disconnect = lambda *a: dropped.set()

    api.wait_applied(api.send(DynsecOp.DISABLE, device))
    assert dropped.wait(10), "the suspended device's connection stayed open"
    client.loop_stop()
    assert not connects(local_broker, api.user(device), password)

    api.wait_applied(api.send(DynsecOp.ENABLE, device))
    assert connects(local_broker, api.user(device), password)


def test_a_malformed_update_is_quarantined_and_does_not_block_the_next(
    local_broker: MosquittoService,
    mosquitto: MosquittoService,
    make_gateway: GatewayFactory,
    centre: str,
    api: FakeApi,
) -> None:
    router0, router1, router2 = api.dev("router-0"), api.dev("router-1"), api.dev("router-2")
    gw = start_gateway(make_gateway, centre, local_broker, mosquitto)
    api.first(router0)
    api.raw(b"{not json")
    api.seq += 1
    api.raw(  # a field the contract does not have (a secret must never be sent, nor kept)
        b'{"v":1,"op":"upsert","device_id":"%s","kind":"router",'
        b'"credential_version":1,"seq":%d,"password":"leak"}' % (router1.encode(), api.seq)
    )
    bad_seq = api.seq
    good_seq = api.send(DynsecOp.UPSERT, router2)

    assert api.wait_applied(good_seq).ok
    assert connects(local_broker, api.user(router2), api.password(router2))
    refusal = api.wait_applied(bad_seq)
    assert not refusal.ok
    assert refusal.error is not None and "dynsec_bad_update" in refusal.error
    assert not connects(local_broker, api.user(router1), api.password(router1))
    assert gw.dynsec is not None and gw.dynsec.counters.quarantined == 2
    kept = [r for r in gw.quarantine.recent() if r.reason == "dynsec_bad_update"]
    assert len(kept) == 2
    assert all(b"leak" not in r.payload for r in kept)
    assert any(b"<redacted>" in r.payload for r in kept)


def test_provisioned_devices_still_connect_locally_while_the_central_broker_is_down(
    local_broker: MosquittoService,
    broker_factory: BrokerFactory,
    make_gateway: GatewayFactory,
    centre: str,
) -> None:
    central = broker_factory()
    api = FakeApi(central, centre)
    router1, power1, router9 = api.dev("router-1"), api.dev("power-1"), api.dev("router-9")
    gw = start_gateway(make_gateway, centre, local_broker, central)
    api.first(router1)
    api.wait_applied(api.send(DynsecOp.UPSERT, power1))
    api.close()
    central.stop()  # the uplink is gone
    wait_for(lambda: not gw.central.connected.is_set(), 10, "the gateway to notice")

    stored = gw.local_in.stored_total
    password = api.password(router1)
    client, rc = connect_client(local_broker, username=api.user(router1), password=password)
    assert rc is not None and not rc.is_failure
    own = f"gl/v1/{centre}/{router1}/telemetry"
    client.publish(own, router_reading(0), qos=1).wait_for_publish(5)
    wait_for(lambda: gw.local_in.stored_total > stored, 10, "the reading stored for later")
    close(client)
    assert connects(local_broker, api.user(power1), api.password(power1))
    assert not connects(local_broker, api.user(power1), api.password(router1))
    assert not connects(local_broker, api.user(router9), api.password(router9))


def test_a_malformed_centre_key_stops_the_gateway_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GRAMLINK_GATEWAY_CENTRE", "c-badkey")
    monkeypatch.setenv("GRAMLINK_GATEWAY_UPLINK_URL", "mqtt://127.0.0.1:1")
    monkeypatch.setenv("GRAMLINK_GATEWAY_PSEUDONYM_KEY", KEY)
    for bad in ("not base64 at all!", encode_key(b"short")):
        monkeypatch.setenv("GRAMLINK_GATEWAY_CENTRE_KEY", bad)
        assert start(argparse.Namespace()) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1
        assert "GRAMLINK_GATEWAY_CENTRE_KEY" in lines[0]
        assert bad not in lines[0]


def test_without_a_centre_key_local_enforcement_is_off_and_says_so_once(
    local_broker: MosquittoService,
    mosquitto: MosquittoService,
    make_gateway: GatewayFactory,
    centre: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="gateway.app"):
        gw = make_gateway(centre, local_broker, mosquitto)
    assert gw.dynsec is None
    off = [r for r in caplog.records if "event=local_auth_off" in r.getMessage()]
    assert len(off) == 1


@pytest.mark.slow
def test_an_update_waits_unacknowledged_while_the_local_broker_is_down(
    broker_factory: BrokerFactory,
    mosquitto: MosquittoService,
    make_gateway: GatewayFactory,
    centre: str,
    api: FakeApi,
) -> None:
    local = broker_factory(centre=True)
    gw = start_gateway(make_gateway, centre, local, mosquitto)
    router1 = api.dev("router-1")
    api.first(api.dev("router-0"))
    assert gw.dynsec is not None and gw.admin is not None
    counters = gw.dynsec.counters
    wait_for(lambda: counters.applied == counters.received, 10, "nothing left in hand")
    local.stop()  # the centre's broker restarts (power cut, upgrade)
    wait_for(lambda: not gw.admin.connected.is_set(), 10, "the gateway to notice")

    received = gw.dynsec.counters.received
    seq = api.send(DynsecOp.UPSERT, router1)
    rotation = api.send(DynsecOp.UPSERT, router1, version=2)
    wait_for(lambda: gw.dynsec.counters.received >= received + 2, 10, "the updates")
    # The worker holds the first (waiting for the local broker), the second waits behind it.
    wait_for(lambda: gw.dynsec.queue.qsize() == 1, 10, "the first update taken")
    assert api.ack(seq) is None

    local.start()
    assert api.wait_applied(seq).ok
    assert api.wait_applied(rotation).ok
    assert connects(local, api.user(router1), api.password(router1, 2))
    assert not connects(local, api.user(router1), api.password(router1, 1))


@pytest.mark.slow
def test_without_dynsec_rights_updates_are_retried_unacknowledged_until_granted(
    broker_factory: BrokerFactory,
    mosquitto: MosquittoService,
    make_gateway: GatewayFactory,
    centre: str,
    api: FakeApi,
) -> None:
    local = broker_factory(centre=True)
    relay_password = secrets.token_urlsafe(16)
    acls = [
        {"acltype": t, "topic": "gl/#", "allow": True}
        for t in ("publishClientSend", "publishClientReceive", "subscribePattern")
    ]
    dynsec_admin(
        local,
        [
            {"command": "createRole", "rolename": "relay", "acls": acls},
            {
                "command": "createClient",
                "username": "relay",
                "password": relay_password,
                "roles": [{"rolename": "relay"}],
            },
        ],
    )
    key = encode_key(centre_key(MASTER, centre, 1))
    gw = make_gateway(
        centre,
        local,
        mosquitto,
        centre_key=key,
        local_username="relay",
        local_password=relay_password,
        dynsec_timeout_s=0.5,
    )
    assert gw.dynsec is not None
    device = api.dev("router-1")
    update = DynsecUpdate(
        op=DynsecOp.UPSERT, device_id=device, kind=DeviceKind.ROUTER, credential_version=1, seq=1
    )
    api.seq = 1
    for _ in range(40):  # resent until the gateway's subscription exists (same seq: harmless)
        api.raw(update.model_dump_json().encode())
        try:
            wait_for(lambda: gw.dynsec.counters.received > 0, 0.5, "update received")
            break
        except AssertionError:
            continue
    wait_for(lambda: gw.dynsec.counters.retries >= 2, 15, "retries of the refused commands")
    assert api.ack(1) is None
    assert not connects(local, api.user(device), api.password(device))

    dynsec_admin(  # the fix in the field: make the gateway's local account a dynsec admin
        local,
        [{"command": "addClientRole", "username": "relay", "rolename": "admin"}],
    )
    assert api.wait_applied(1).ok
    assert connects(local, api.user(device), api.password(device))


def test_each_record_carries_the_model_the_registry_gave_the_device(
    local_broker: MosquittoService,
    mosquitto: MosquittoService,
    make_gateway: GatewayFactory,
    centre: str,
    api: FakeApi,
) -> None:
    collector = Collector(mosquitto, centre).start()
    devices = Devices(local_broker, centre)
    gw = start_gateway(make_gateway, centre, local_broker, mosquitto)
    wait_until_flowing(devices, collector)
    device = api.dev("router-5")
    api.seq += 1
    update = DynsecUpdate(
        op=DynsecOp.UPSERT,
        device_id=device,
        kind=DeviceKind.ROUTER,
        credential_version=1,
        seq=api.seq,
        model="mikrotik-hap",
    )
    api.raw(update.model_dump_json().encode())
    assert api.wait_applied(api.seq).ok
    client, rc = connect_client(
        local_broker, username=api.user(device), password=api.password(device)
    )
    assert rc is not None and not rc.is_failure
    # A birth naming another model does not change the record's: the registry's wins.
    birth = encode(State(online=True, kind="router", model="what-the-device-says"))
    client.publish(f"gl/v1/{centre}/{device}/state", birth, qos=1).wait_for_publish(5)
    client.publish(f"gl/v1/{centre}/{device}/telemetry", router_reading(0), qos=1).wait_for_publish(
        5
    )
    wait_for(lambda: len(collector.of(device)) >= 1, 15, "the device's reading")
    assert [a.model for a in collector.of(device)] == ["mikrotik-hap"]
    assert gw.devices is not None and gw.devices.model_of(device) == "mikrotik-hap"
    close(client)
    devices.close()
    collector.close()
