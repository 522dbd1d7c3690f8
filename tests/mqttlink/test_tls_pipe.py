"""TLS through memory BIOs (``mqttlink.tls_pipe``) against a real Mosquitto TLS listener:
every small message arrives whole and in order while another thread sends PUBACKs,
a buffer smaller than what was decrypted loses nothing, and a close is seen."""

from __future__ import annotations

import ssl
import threading

import mqtt5
import pytest

from gramlink.services import MosquittoService
from mqttlink.endpoint import Endpoint, TlsFiles, tls_context
from mqttlink.inbox import Inbox
from mqttlink.reasons import SettingNames
from mqttlink.session import Session, SessionOptions, pubacks
from mqttlink.tls_pipe import TlsPipe
from mqttlink.transport import open_blocking
from tests.factories import admin_client, close, unique_id
from tests.tls import Pki

NAMES = SettingNames("T_URL", "T_USERNAME", "T_PASSWORD", "T_CLIENT_ID", "T_CA_FILE")
MESSAGES = 3000


def test_small_messages_arrive_whole_through_a_small_buffer_while_acks_go_out(
    pki: Pki, tls_mosquitto: MosquittoService
) -> None:
    endpoint = Endpoint.parse(tls_mosquitto.tls_url)
    pipe = open_blocking(endpoint, tls_context(TlsFiles(ca_file=pki.ca)), 5)
    assert isinstance(pipe, TlsPipe)
    pipe.settimeout(10)
    session = Session(
        SessionOptions(
            client_id=unique_id("pipe"),
            what="test",
            url=tls_mosquitto.tls_url,
            names=NAMES,
            username=tls_mosquitto.admin_user,
            password=tls_mosquitto.admin_password,
        )
    )
    topic = f"gl/v1/{unique_id('c')}/d1/telemetry"
    pipe.sendall(session.start())
    inbox = Inbox(1024 * 1024)
    small = bytearray(97)  # smaller than one PUBLISH: decrypted bytes wait for the next call
    received: list[bytes] = []
    acks: list[int] = []

    def read_until(done: type) -> None:
        while True:
            n = pipe.recv_into(small)
            assert n, "the broker closed the connection"
            inbox.feed(bytes(small[:n]))
            for packet in inbox.packets():
                if type(packet) is mqtt5.PublishPacket:
                    received.append(bytes(packet.payload))
                    acks.append(packet.packet_id)
                else:
                    session.control(packet)
                if type(packet) is done:
                    return
                if type(packet) is mqtt5.PublishPacket and len(received) == MESSAGES:
                    return

    read_until(mqtt5.ConnAckPacket)
    pipe.sendall(session.subscribe([topic]))
    read_until(mqtt5.SubAckPacket)

    stop = threading.Event()

    def acknowledge() -> None:  # as ingest's writer thread does, beside the reading thread
        while not stop.is_set() or acks:
            taken = [acks.pop(0) for _ in range(len(acks))]
            if taken:
                pipe.sendall(pubacks(taken))
            stop.wait(0.005)

    acker = threading.Thread(target=acknowledge)
    acker.start()
    publisher = admin_client(tls_mosquitto)
    infos = [publisher.publish(topic, b"reading %05d" % i, qos=1) for i in range(MESSAGES)]
    read_until(type(None))
    stop.set()
    acker.join(10)
    for info in infos:
        info.wait_for_publish(10)
    close(publisher)
    assert received == [b"reading %05d" % i for i in range(MESSAGES)]

    pipe.sendall(session.disconnect())
    assert pipe.recv_into(small) == 0  # the broker closes after our DISCONNECT
    pipe.close()


def test_a_broker_certificate_from_another_ca_is_refused_in_the_handshake(
    pki: Pki, tls_mosquitto: MosquittoService
) -> None:
    endpoint = Endpoint.parse(tls_mosquitto.tls_url)
    with pytest.raises(ssl.SSLCertVerificationError):
        open_blocking(endpoint, tls_context(TlsFiles(ca_file=pki.other_ca)), 5)
