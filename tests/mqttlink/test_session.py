"""The raw MQTT v5 session (``mqttlink.session`` over mqtt5) against a real Mosquitto."""

from __future__ import annotations

import socket
import time

import mqtt5
import pytest

from gramlink.services import MosquittoService
from mqttlink.endpoint import Endpoint
from mqttlink.inbox import Inbox, MalformedPacket, PacketTooLarge
from mqttlink.reasons import SettingNames
from mqttlink.session import Dropped, PacketIds, Refused, Session, SessionOptions, TooLarge, pubacks
from mqttlink.transport import open_blocking
from runtime.exits import ExitCode
from tests.factories import admin_client, close, unique_id
from tests.firmware_sim.test_logins import dynsec

NAMES = SettingNames("T_URL", "T_USERNAME", "T_PASSWORD", "T_CLIENT_ID", "T_CA_FILE")


class Driver:
    """A session on a blocking socket, read until a wanted packet arrives (or an error)."""

    def __init__(self, broker: MosquittoService, **options: object) -> None:
        values: dict[str, object] = {
            "client_id": unique_id("s"),
            "what": "test",
            "url": broker.url,
            "names": NAMES,
            "username": broker.admin_user,
            "password": broker.admin_password,
            "session_expiry_s": 60,
            "receive_maximum": 50,
        }
        values.update(options)
        self.session = Session(SessionOptions(**values))  # type: ignore[arg-type]
        self.url = broker.url
        self.sock = open_blocking(Endpoint.parse(broker.url), None, 5)
        self.sock.settimeout(5)
        self.sock.sendall(self.session.start())
        self.publishes: list[mqtt5.PublishPacket] = []
        self.acks: list[tuple[int, int, bool]] = []

    def until(self, done: type, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for packet in self._read():
                if type(packet) is mqtt5.PublishPacket:
                    self.publishes.append(packet)
                elif type(packet) is mqtt5.PubAckPacket:
                    self.acks.append(self.session.puback(packet))
                else:
                    self.session.control(packet)
                if type(packet) is done:
                    return
        raise AssertionError(f"no {done.__name__}")

    def until_closed(self) -> bool:
        """Read until the broker closes the connection; True if it sent no DISCONNECT."""
        try:
            self.until(mqtt5.DisconnectPacket)
        except Dropped:
            return True
        return False

    def reconnect(self) -> None:
        self.sock.close()
        self.sock = open_blocking(Endpoint.parse(self.url), None, 5)
        self.sock.settimeout(5)
        self.sock.sendall(self.session.start())

    def _read(self) -> list[mqtt5.Packet]:
        n = self.session.inbox.recv_from(self.sock)
        if n == 0:
            raise Dropped("closed")
        return self.session.inbox.packets()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def drivers(mosquitto: MosquittoService):
    made: list[Driver] = []

    def make(**options: object) -> Driver:
        made.append(Driver(mosquitto, **options))
        return made[-1]

    yield make
    for d in made:
        d.close()


def test_connack_keeps_the_brokers_limits_and_a_subscription_receives(drivers, mosquitto) -> None:
    d = drivers()
    d.until(mqtt5.ConnAckPacket)
    assert d.session.connected
    assert d.session.broker_max_packet_size == 4_194_304  # the stack's max_packet_size
    topic = f"gl/v1/{unique_id('c')}/d1/telemetry"
    d.sock.sendall(d.session.subscribe([topic]))
    d.until(mqtt5.SubAckPacket)
    assert d.session.subscribed
    publisher = admin_client(mosquitto)
    publisher.publish(topic, b"hello", qos=1).wait_for_publish(5)
    close(publisher)
    d.until(mqtt5.PublishPacket)
    assert [(p.topic, p.payload, int(p.qos)) for p in d.publishes] == [(topic, b"hello", 1)]
    d.sock.sendall(pubacks([d.publishes[0].packet_id]))


def test_a_wrong_password_is_a_refusal_with_exit_4_naming_the_settings(drivers) -> None:
    d = drivers(password="not-the-password")
    with pytest.raises(Refused) as caught:
        d.until(mqtt5.ConnAckPacket)
    refusal = caught.value.refusal
    assert refusal.exit_code == ExitCode.REFUSED
    assert "0x87 not authorized" in refusal.line  # what Mosquitto 2.0 answers a bad password
    assert "T_USERNAME / T_PASSWORD" in refusal.line
    assert "\n" not in refusal.line


def test_a_refused_subscription_is_a_refusal_with_exit_4(broker_factory) -> None:
    """On a dynsec-only broker (an ACL file would grant every SUBSCRIBE)."""
    broker = broker_factory()
    centre = unique_id("c")
    user, password = f"u-{centre}", f"pw-{centre}-secret"
    dynsec(
        broker,
        [
            {"command": "createRole", "rolename": f"r-{centre}"},
            {
                "command": "addRoleACL",
                "rolename": f"r-{centre}",
                "acltype": "subscribePattern",
                "topic": f"gl/v1/{centre}/#",
                "allow": True,
            },
            {"command": "createClient", "username": user, "password": password},
            {"command": "addClientRole", "username": user, "rolename": f"r-{centre}"},
        ],
    )
    d = Driver(broker, username=user, password=password)
    d.until(mqtt5.ConnAckPacket)
    d.sock.sendall(d.session.subscribe([f"gl/v1/{centre}/#", "gl/v1/+/+/telemetry"]))
    with pytest.raises(Refused) as caught:
        d.until(mqtt5.SubAckPacket)
    d.close()
    assert caught.value.refusal.exit_code == ExitCode.REFUSED
    line = caught.value.refusal.line
    assert line.startswith("test subscription gl/v1/+/+/telemetry: ")
    assert "the account lacks the rights (0x87 not authorized); check T_USERNAME" in line


def test_the_older_of_two_sessions_with_one_client_id_is_told_it_was_taken_over(drivers) -> None:
    """Mosquitto 2.0.11 closes the older connection without DISCONNECT 0x8e; the older one
    reconnects once (knocking the newer one off), is closed again, and stops: the newer wins."""
    client_id = unique_id("twin")
    older = drivers(client_id=client_id)
    older.until(mqtt5.ConnAckPacket)
    newer = drivers(client_id=client_id)
    newer.until(mqtt5.ConnAckPacket)
    taken = older.until_closed()  # 2.0.15+ would send DISCONNECT 0x8e: Refused at once
    older.session.closed(time.monotonic(), by_broker=taken)
    older.reconnect()
    older.until(mqtt5.ConnAckPacket)
    newer.session.closed(time.monotonic(), by_broker=newer.until_closed())  # the newer's first
    newer.reconnect()
    newer.until(mqtt5.ConnAckPacket)
    assert older.until_closed()
    with pytest.raises(Refused) as caught:
        older.session.closed(time.monotonic(), by_broker=True)
    refusal = caught.value.refusal
    assert refusal.exit_code == ExitCode.SESSION_TAKEN_OVER
    assert "another process connected with the same client id" in refusal.line
    assert "T_CLIENT_ID" in refusal.line
    assert newer.session.connected


def test_a_broker_that_disconnects_with_0x8e_stops_the_session_at_once() -> None:
    session = Session(SessionOptions("p1", "test", "mqtt://x", NAMES))
    session.start()
    taken = mqtt5.DisconnectPacket(reason_code=mqtt5.DisconnectReasonCode.SESSION_TAKEN_OVER)
    with pytest.raises(Refused) as caught:
        session.control(taken)
    assert caught.value.refusal.exit_code == ExitCode.SESSION_TAKEN_OVER
    busy = mqtt5.DisconnectPacket(reason_code=mqtt5.DisconnectReasonCode.SERVER_BUSY)
    with pytest.raises(Dropped):
        session.control(busy)


def test_puback_reasons_reach_the_caller(drivers) -> None:
    """0x10 (nobody subscribed) is a success code, but the message was not delivered."""
    d = drivers()
    d.until(mqtt5.ConnAckPacket)
    first = d.session.ids.take()
    nobody = f"gl/{unique_id('nobody')}/x"  # no filter of any test session matches it
    d.sock.sendall(d.session.publish(nobody, b"1", 1, first))
    d.until(mqtt5.PubAckPacket)
    assert d.acks == [(first, 0x10, False)]
    denied = mqtt5.PubAckPacket(9, reason_code=mqtt5.PubAckReasonCode.NOT_AUTHORIZED)
    assert Session.puback(denied) == (9, 0x87, False)
    assert Session.puback(mqtt5.PubAckPacket(10)) == (10, 0, True)


def test_a_publish_over_the_brokers_maximum_packet_size_is_never_sent(drivers) -> None:
    d = drivers()
    d.until(mqtt5.ConnAckPacket)
    with pytest.raises(TooLarge):
        d.session.publish("gl/v1/c/d/telemetry", b"x" * 4_194_304, 1, d.session.ids.take())


def test_no_pingresp_within_the_keepalive_drops_a_publisher_too() -> None:
    """A broker that answers CONNACK and then goes silent (its clock driven by the test)."""
    server = socket.create_server(("127.0.0.1", 0))
    session = Session(
        SessionOptions("p1", "test", "mqtt://x", NAMES, keepalive_s=10, receive_maximum=5)
    )
    client = socket.create_connection(server.getsockname())
    peer, _ = server.accept()
    try:
        client.sendall(session.start(now=0.0))
        peer.sendall(mqtt5.ConnAckPacket().write())
        client.settimeout(5)
        session.inbox.recv_from(client)
        for packet in session.inbox.packets():
            session.control(packet)
        session.on_connack(mqtt5.ConnAckPacket(), now=0.0)
        assert session.tick(4.0) is None
        assert session.tick(5.0) == mqtt5.PingReqPacket().write()
        assert session.tick(10.0) == mqtt5.PingReqPacket().write()  # still waiting for the first
        with pytest.raises(Dropped, match="no PINGRESP within 10 s"):
            session.tick(15.1)
    finally:
        for s in (client, peer, server):
            s.close()


def test_no_connack_in_time_drops() -> None:
    session = Session(SessionOptions("p1", "test", "mqtt://x", NAMES))
    session.start(now=100.0)
    assert session.tick(105.0) is None
    with pytest.raises(Dropped, match="no CONNACK"):
        session.tick(111.0)


def test_subscribe_never_takes_the_packet_id_of_an_inflight_publish() -> None:
    session = Session(SessionOptions("p1", "test", "mqtt://x", NAMES))
    held = {session.ids.take() for _ in range(3)}  # QoS 1 PUBLISHes awaiting PUBACK
    session.start()  # a reconnect: they stay in flight
    subscribe = mqtt5.read(memoryview(session.subscribe(["a/#"])))[0]
    assert subscribe.packet_id not in held  # type: ignore[union-attr]
    assert session.ids.in_use(subscribe.packet_id)  # type: ignore[union-attr]
    session.on_suback(mqtt5.SubAckPacket(subscribe.packet_id, [mqtt5.SubAckReasonCode(1)]))  # type: ignore[union-attr]
    assert session.subscribed and len(session.ids) == 3


def test_packet_ids_wrap_and_skip_the_ones_in_use() -> None:
    ids = PacketIds()
    taken = [ids.take() for _ in range(65_535)]
    assert sorted(taken) == list(range(1, 65_536))
    ids.release(7)
    assert ids.take() == 7
    assert not ids.release(70_000)


def test_inbox_keeps_a_partial_packet_and_refuses_one_over_our_maximum() -> None:
    inbox = Inbox(max_packet_size=1000, read_bytes=2000)
    small = [
        mqtt5.PublishPacket("a/b", bytes([i]) * 50, qos=mqtt5.QoS(1), packet_id=i + 1).write()
        for i in range(30)
    ]
    wire = b"".join(small)
    inbox.feed(wire[:200])
    got = inbox.packets()
    inbox.feed(wire[200:])
    got += inbox.packets()
    assert [p.payload for p in got] == [bytes([i]) * 50 for i in range(30)]  # type: ignore[union-attr]
    assert inbox.buffered == 0
    inbox.feed(mqtt5.PublishPacket("a/b", b"x" * 1200).write())  # complete, over our maximum
    with pytest.raises(PacketTooLarge):
        inbox.packets()
    inbox.clear()
    huge = mqtt5.PublishPacket("a/b", b"x" * 5000).write()
    inbox.feed(huge[:900])
    assert inbox.packets() == []  # not complete, not yet known to be too large
    inbox.feed(huge[900:1100])
    with pytest.raises(PacketTooLarge):
        inbox.packets()
    inbox.clear()
    inbox.feed(b"\x00\x00")
    with pytest.raises(MalformedPacket):
        inbox.packets()
