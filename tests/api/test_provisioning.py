"""Provisioning end to end against real Mosquitto: the central broker and a centre's
local broker (through gateway/local_auth applying the API's downlink updates)."""

from __future__ import annotations

import queue
import threading

import httpx
import paho.mqtt.client as mqtt
import pytest

from contract.provisioning import decode_key, dynsec_topic, mqtt_username
from contract.receipts import encode_receipt, receipt_topic
from contract.topics import Channel, topic
from gateway.local_auth import LocalAuth
from gramlink.services import MosquittoService
from tests.api.conftest import Api, ApiFactory
from tests.api.mqtt_helpers import Connection, Watcher, publishes, refused
from tests.conftest import BrokerFactory
from tests.factories import admin_client, close, connect_client, unique_id, wait_for


@pytest.fixture(params=["files", "dynsec"])
def central(request: pytest.FixtureRequest, api_factory: ApiFactory) -> Api:
    """An API keeping central logins in the broker's files, and one using dynsec."""
    return api_factory(logins=request.param)


def provision(api: Api, centre: str, kind: str = "pulse_oximeter") -> tuple[str, str]:
    """Provision a device; return its MQTT username and password."""
    device = unique_id("d")
    response = api.post_device(centre, device, kind)
    assert response.status_code == 201, response.text
    creds = response.json()["credentials"]
    assert creds["username"] == f"{centre}/{device}"
    return creds["username"], creds["password"]


def act(api: Api, device: str, action: str) -> httpx.Response:
    """POST a lifecycle action (suspend, resume, rotate, decommission) as admin."""
    return api.client.post(f"/v1/devices/{device}/{action}", headers=api.headers())


def device_of(username: str) -> str:
    return username.split("/")[1]


def test_a_device_publishes_only_its_own_topics_on_the_central_broker(
    central: Api, mosquitto: MosquittoService
) -> None:
    api = central
    centre, other_centre = api.centre(), api.centre()
    user, password = provision(api, centre)
    device, neighbour = device_of(user), device_of(provision(api, centre)[0])
    watcher = Watcher(mosquitto)
    try:
        own = [topic(centre, device, ch) for ch in (Channel.TELEMETRY, Channel.STATE)]
        foreign = [
            topic(centre, neighbour, Channel.TELEMETRY),
            topic(other_centre, device, Channel.TELEMETRY),
            topic(centre, device, Channel.CMD),
        ]
        marker = topic(centre, device, Channel.EVENT)
        arrived = publishes(mosquitto, user, password, own + foreign, marker, watcher)
    finally:
        watcher.close()
    assert arrived == set(own)


def test_a_gateway_has_its_centres_subtree_only(central: Api, mosquitto: MosquittoService) -> None:
    api = central
    centre, other_centre = api.centre(), api.centre()
    gateway = unique_id("gw")
    response = api.client.post(
        "/v1/gateways",
        json={"id": gateway, "centre_id": centre, "model": "pi4"},
        headers=api.headers(),
    )
    assert response.status_code == 201, response.text
    creds = response.json()["credentials"]
    assert creds["username"] == f"{centre}/{gateway}"
    watcher = Watcher(mosquitto)
    try:
        # what it relays for any device of its centre (never a storage receipt: see
        # tests/gateway/test_receipts.py)
        own = [
            topic(centre, "any-device", Channel.TELEMETRY),
            topic(centre, "any-device", Channel.CMD_ACK),
        ]
        foreign = [topic(other_centre, "any-device", Channel.TELEMETRY)]
        marker = topic(centre, gateway, Channel.STATE)
        arrived = publishes(
            mosquitto, creds["username"], creds["password"], own + foreign, marker, watcher
        )
    finally:
        watcher.close()
    assert arrived == set(own)


def test_wrong_password_and_anonymous_are_refused(
    central: Api, mosquitto: MosquittoService
) -> None:
    device, password = provision(central, central.centre())
    assert refused(mosquitto, device, password[:-2] + "xx")
    assert refused(mosquitto, None, None)
    assert not refused(mosquitto, device, password)


def test_suspend_drops_the_connection_and_resume_lets_it_back(
    central: Api, mosquitto: MosquittoService
) -> None:
    api = central
    user, password = provision(api, api.centre())
    device = device_of(user)
    connection = Connection(mosquitto, user, password)
    try:
        answer = act(api, device, "suspend")
        assert answer.status_code == 200
        assert answer.json()["status"] == "suspended"
        assert connection.dropped.wait(5), "the open connection was not closed"
        assert refused(mosquitto, user, password)
    finally:
        connection.close()
    assert act(api, device, "resume").status_code == 200
    assert not refused(mosquitto, user, password)
    again = act(api, device, "resume")
    assert again.status_code == 409


def test_rotation_replaces_the_password(central: Api, mosquitto: MosquittoService) -> None:
    api = central
    user, old = provision(api, api.centre())
    answer = act(api, device_of(user), "rotate")
    assert answer.status_code == 200
    new = answer.json()["password"]
    assert new != old
    assert refused(mosquitto, user, old)
    assert not refused(mosquitto, user, new)


def test_a_suspended_device_stays_refused_after_rotation(
    central: Api, mosquitto: MosquittoService
) -> None:
    api = central
    user, _ = provision(api, api.centre())
    device = device_of(user)
    assert act(api, device, "suspend").is_success
    rotated = act(api, device, "rotate")
    assert rotated.status_code == 200
    assert refused(mosquitto, user, rotated.json()["password"])
    assert act(api, device, "resume").is_success
    assert not refused(mosquitto, user, rotated.json()["password"])


def test_decommissioned_device_is_refused_for_good(
    central: Api, mosquitto: MosquittoService
) -> None:
    api = central
    user, password = provision(api, api.centre())
    device = device_of(user)
    assert act(api, device, "decommission").is_success
    assert refused(mosquitto, user, password)
    assert act(api, device, "resume").status_code == 409
    assert act(api, device, "rotate").status_code == 409


class GatewayHarness:
    """The parts of a gateway this issue owns: a persistent session on the central
    broker following its dynsec topic, and LocalAuth applying updates locally."""

    def __init__(
        self,
        central: MosquittoService,
        local: MosquittoService,
        centre: str,
        gateway: str,
        password: str,
        centre_key: bytes,
    ) -> None:
        self.central, self.centre, self.gateway, self.password = central, centre, gateway, password
        self.updates: queue.Queue[bytes] = queue.Queue(maxsize=1000)
        self.local_admin = admin_client(local)
        self.auth = LocalAuth(self.local_admin, centre, centre_key)
        self.errors: list[Exception] = []
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._apply, daemon=True)
        self._worker.start()
        self.uplink: mqtt.Client | None = None

    def connect(self) -> None:
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"gw-{self.gateway}", protocol=mqtt.MQTTv5
        )
        client.username_pw_set(mqtt_username(self.centre, self.gateway), self.password)
        client.on_message = lambda c, u, msg: self.updates.put(msg.payload)
        subscribed = threading.Event()
        client.on_subscribe = lambda *a: subscribed.set()
        props = mqtt.Properties(mqtt.PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600

        def on_connect(
            c: mqtt.Client, u: object, f: object, rc: mqtt.ReasonCode, p: object
        ) -> None:
            assert not rc.is_failure, rc
            c.subscribe(dynsec_topic(self.centre, self.gateway), qos=1)

        client.on_connect = on_connect
        client.connect(self.central.bind, self.central.port, clean_start=False, properties=props)
        client.loop_start()
        assert subscribed.wait(5), "gateway could not subscribe to its dynsec topic"
        self.uplink = client

    def disconnect(self) -> None:
        assert self.uplink is not None
        close(self.uplink)
        self.uplink = None

    def _apply(self) -> None:
        while not self._stop.is_set():
            try:
                payload = self.updates.get(timeout=0.1)
            except queue.Empty:
                continue
            try:
                self.auth.apply(payload)
            except Exception as exc:  # recorded for the test to see
                self.errors.append(exc)

    def close(self) -> None:
        self._stop.set()
        self._worker.join(5)
        if self.uplink is not None:
            self.disconnect()
        close(self.local_admin)


@pytest.fixture
def local_site(api: Api, broker_factory: BrokerFactory, mosquitto: MosquittoService):  # type: ignore[no-untyped-def]
    local = broker_factory()
    centre = api.centre()
    gateway = unique_id("gw")
    response = api.client.post(
        "/v1/gateways",
        json={"id": gateway, "centre_id": centre, "model": "pi4"},
        headers=api.headers(),
    )
    assert response.status_code == 201, response.text
    creds = response.json()["credentials"]
    harness = GatewayHarness(
        mosquitto, local, centre, gateway, creds["password"], decode_key(creds["centre_key"])
    )
    harness.connect()
    yield local, centre, harness
    harness.close()


def test_local_broker_enforces_the_same_credentials(api: Api, local_site) -> None:  # type: ignore[no-untyped-def]
    local, centre, harness = local_site
    user, password = provision(api, centre)
    device = device_of(user)
    wait_for(lambda: not refused(local, user, password), 10, "device accepted locally")
    other = device_of(provision(api, centre)[0])
    watcher = Watcher(local)
    try:
        own = topic(centre, device, Channel.TELEMETRY)
        foreign = topic(centre, other, Channel.TELEMETRY)
        marker = topic(centre, device, Channel.EVENT)
        assert publishes(local, user, password, [own, foreign], marker, watcher) == {own}
    finally:
        watcher.close()
    assert refused(local, user, password[:-2] + "xx")
    assert refused(local, None, None)
    connection = Connection(local, user, password)
    try:
        assert act(api, device, "suspend").is_success
        assert connection.dropped.wait(10), "the local connection was not closed"
        assert refused(local, user, password)
    finally:
        connection.close()
    assert act(api, device, "resume").is_success
    wait_for(lambda: not refused(local, user, password), 10, "device accepted again")
    assert harness.errors == []


def test_an_offline_gateway_applies_the_changes_when_it_comes_back(
    api: Api,
    local_site,  # type: ignore[no-untyped-def]
) -> None:
    local, centre, harness = local_site
    harness.disconnect()
    user, password = provision(api, centre)
    device = device_of(user)
    rotated = act(api, device, "rotate").json()
    assert refused(local, user, password)
    harness.connect()
    wait_for(lambda: not refused(local, user, rotated["password"]), 10, "queued updates applied")
    assert refused(local, user, password)
    assert harness.errors == []


def test_a_device_receives_nothing_of_other_devices(
    central: Api, mosquitto: MosquittoService
) -> None:
    api = central
    centre = api.centre()
    spy, spy_password = provision(api, centre)
    victim, _ = provision(api, centre)
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=unique_id("spy"), protocol=mqtt.MQTTv5
    )
    client.username_pw_set(spy, spy_password)
    received: list[str] = []
    client.on_message = lambda c, u, msg: received.append(msg.topic)
    subscribed = threading.Event()
    client.on_subscribe = lambda *a: subscribed.set()
    client.connect(mosquitto.bind, mosquitto.port)
    client.loop_start()
    try:
        client.subscribe("gl/#", qos=1)
        client.subscribe(topic(centre, device_of(victim), Channel.TELEMETRY), qos=1)
        assert subscribed.wait(5)
        admin = admin_client(mosquitto)
        own = topic(centre, device_of(spy), Channel.CMD)
        for name in (topic(centre, device_of(victim), Channel.TELEMETRY), own):
            admin.publish(name, b"{}", qos=1).wait_for_publish(5)
        close(admin)
        wait_for(lambda: own in received, 10, "the spy's own command")
    finally:
        close(client)
    assert set(received) == {own}


def test_rotation_drops_a_connection_made_with_the_old_password(
    central: Api, mosquitto: MosquittoService
) -> None:
    api = central
    user, old = provision(api, api.centre())
    connection = Connection(mosquitto, user, old)
    try:
        assert act(api, device_of(user), "rotate").status_code == 200
        assert connection.dropped.wait(5), "the connection with the old password stayed"
    finally:
        connection.close()


def test_rotating_a_centre_key_changes_every_password_of_that_centre_only(
    central: Api, mosquitto: MosquittoService
) -> None:
    api = central
    centre, other_centre = api.centre(), api.centre()
    gateway = api.client.post(
        "/v1/gateways",
        json={"id": unique_id("gw"), "centre_id": centre, "model": "pi4"},
        headers=api.headers(),
    ).json()["credentials"]
    device, device_password = provision(api, centre)
    neighbour, neighbour_password = provision(api, other_centre)
    stolen = Connection(mosquitto, gateway["username"], gateway["password"])
    try:
        answer = api.client.post(f"/v1/centres/{centre}/rotate-key", headers=api.headers())
        assert answer.status_code == 200, answer.text
        assert stolen.dropped.wait(5), "the old gateway's connection stayed open"
    finally:
        stolen.close()
    rotation = answer.json()
    assert rotation["centre_key"] != gateway["centre_key"]
    fresh = {row["username"]: row["password"] for row in rotation["credentials"]}
    assert set(fresh) == {gateway["username"], device}
    for username, old in ((gateway["username"], gateway["password"]), (device, device_password)):
        assert refused(mosquitto, username, old)
        assert not refused(mosquitto, username, fresh[username])
    assert not refused(mosquitto, neighbour, neighbour_password)
    audit = api.client.get("/v1/audit", params={"entity_id": centre}, headers=api.headers())
    assert "centre.rotate_key" in [entry["action"] for entry in audit.json()["items"]]


def test_a_gateway_reads_only_its_own_storage_receipts_and_publishes_none(
    central: Api, mosquitto: MosquittoService
) -> None:
    api = central
    centre = api.centre()
    logins = {}
    for gateway in (unique_id("gw"), unique_id("gw")):
        response = api.client.post(
            "/v1/gateways",
            json={"id": gateway, "centre_id": centre, "model": "pi4"},
            headers=api.headers(),
        )
        assert response.status_code == 201, response.text
        creds = response.json()["credentials"]
        logins[gateway] = (creds["username"], creds["password"])
    (a, (a_user, a_pw)), (b, (b_user, b_pw)) = logins.items()

    got: dict[str, queue.Queue[str]] = {a: queue.Queue(), b: queue.Queue()}
    clients = []
    for gateway, user, pw, wanted in (
        (a, a_user, a_pw, [receipt_topic(centre, a)]),
        (b, b_user, b_pw, [receipt_topic(centre, b), receipt_topic(centre, a)]),  # tries a's
    ):
        client, rc = connect_client(mosquitto, username=user, password=pw)
        assert rc is not None and not rc.is_failure, rc
        inbox = got[gateway]
        client.on_message = lambda c, u, msg, inbox=inbox: inbox.put(msg.topic)
        done = threading.Event()
        client.on_subscribe = lambda *args, done=done: done.set()
        client.subscribe([(t, 1) for t in wanted])
        assert done.wait(5)
        clients.append(client)
    try:
        admin = admin_client(mosquitto)  # stands in for ingest's account
        admin.publish(receipt_topic(centre, a), encode_receipt(a, [1]), qos=1).wait_for_publish(5)
        admin.publish(receipt_topic(centre, b), encode_receipt(b, [1]), qos=1).wait_for_publish(5)
        close(admin)
        assert got[a].get(timeout=5) == receipt_topic(centre, a)
        assert got[b].get(timeout=5) == receipt_topic(centre, b)  # the marker: its own
        assert got[b].empty()  # never a's, published before it

        # A gateway may not publish a receipt (not even its own: it would delete unstored rows).
        watcher = Watcher(mosquitto)
        try:
            marker = topic(centre, "any-device", Channel.TELEMETRY)
            arrived = publishes(
                mosquitto, a_user, a_pw, [receipt_topic(centre, a)], marker, watcher
            )
        finally:
            watcher.close()
        assert arrived == set()
    finally:
        for client in clients:
            close(client)
