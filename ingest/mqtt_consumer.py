"""The MQTT side without paho: a persistent MQTT v5 session spoken directly (the default).

Why: with manual acknowledgements paho reads one packet per ``select()`` with
several ``recv`` calls each and sends every PUBACK on its own (docs/ingest.md,
Performance). Here one network thread reads the socket in large chunks, parses
every complete packet of a chunk (``contract.mqtt_wire.take_packets``) and hands
the data messages of one chunk to the decode thread as one list; the
acknowledgements of a stored batch go out in one ``send`` from the writer thread.

Same behaviour as the paho :class:`ingest.subscriber.Subscriber`:

- fixed client id, clean start off, session expiry, Receive Maximum: the broker
  never has more than ``receive_maximum`` unacknowledged QoS 1 messages in
  flight to us; a restarted worker gets what was queued while it was down;
- the shared data subscriptions ``$share/<group>/...`` plus the unshared
  ``state`` subscription (births are parsed here, acknowledged at once);
- acknowledgements in the order batches were formed (the worker orders them);
  a late one for an earlier connection (``generation``) is dropped, because the
  broker redelivers the message and packet ids are reused;
- PINGREQ every ``keepalive_s / 2``; no PINGRESP within ``keepalive_s`` while
  reading drops the connection;
- lost connection: reconnect with jittered backoff, 1 s doubling to 30 s;
  refused credentials (CONNACK 0x86, 0x87, 0x8A, 0x8C) or subscriptions stop
  the worker (``fatal``).

Bounds: the inbound queue holds at most ``INBOUND_CHUNKS`` chunks of at most
``READ_BYTES`` each; when it is full the network thread stops reading (policy:
wait; TCP pushes back to the broker) but keeps pinging.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import random
import socket
import threading
import time
from collections.abc import Iterable
from typing import Final

from contract.backoff import Backoff
from contract.mqtt_wire import (
    CONNACK,
    DISCONNECT,
    PINGREQ_PACKET,
    PINGRESP,
    PROP_SERVER_KEEP_ALIVE,
    SUBACK,
    Packet,
    ProtocolError,
    Publish,
    connect_packet,
    disconnect_packet,
    parse_connack,
    parse_disconnect,
    parse_suback,
    pubacks_packet,
    subscribe_packet,
    take_packets,
)
from ingest.batcher import Ack
from ingest.points import ModelCache
from ingest.settings import IngestSettings
from ingest.subscriber import STATE_SUFFIX, Inbound, parse_state, subscription_filters
from runtime.logs import kv

log = logging.getLogger("ingest.mqtt")
READ_BYTES: Final = 256 * 1024
INBOUND_CHUNKS: Final = 64
TICK_S: Final = 0.25
CONNECT_TIMEOUT_S: Final = 10.0
BACKOFF_MIN_S: Final = 1.0
BACKOFF_MAX_S: Final = 30.0
AUTH_FAILURES: Final = {0x86: "bad user name or password", 0x87: "not authorized"} | {
    0x8A: "banned",
    0x8C: "bad authentication method",
}
SUBSCRIBE_ID: Final = 1


class Dropped(Exception):
    """The connection ended (closed, refused, timed out, protocol error): reconnect."""


class Fatal(Exception):
    """The broker refused us for good (credentials, subscriptions): stop the worker."""


class RawSubscriber:
    """One persistent MQTT v5 session feeding ``inbound`` with lists of :class:`Inbound`."""

    def __init__(self, settings: IngestSettings, models: ModelCache) -> None:
        self.settings = settings
        self.models = models
        self.inbound: queue.Queue[list[Inbound]] = queue.Queue(maxsize=INBOUND_CHUNKS)
        self.fatal: str | None = None
        self.generation = 0
        self.down_since: float | None = time.monotonic()
        self.subscribed = False
        self._keepalive = settings.keepalive_s
        self._lock = threading.Lock()  # guards _sock, generation, down_since, sends
        self._sock: socket.socket | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mqtt", daemon=True)
        self._rng = random.Random()
        password = settings.mqtt_password.get_secret_value() if settings.mqtt_password else None
        self._connect = connect_packet(
            settings.client_id,
            username=settings.mqtt_username or None,
            password=password if settings.mqtt_username else None,
            keepalive_s=settings.keepalive_s,
            session_expiry_s=settings.session_expiry_s,
            clean_start=False,
            receive_maximum=settings.receive_maximum,
        )

    # --- any thread ---------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Disconnect normally (the session stays for its expiry) and end the thread."""
        self._stop.set()
        self._thread.join(CONNECT_TIMEOUT_S + 5)

    @property
    def connected(self) -> bool:
        return self.down_since is None

    def ack(self, ack: Ack) -> bool:
        return self.ack_many([ack]) == 1

    def ack_many(self, acks: Iterable[Ack]) -> int:
        """Acknowledge messages in one write; those of an earlier connection are dropped."""
        with self._lock:
            sock, generation = self._sock, self.generation
            if sock is None or self.down_since is not None:
                return 0
            ids = [a.mid for a in acks if a.generation == generation and a.qos]
            if ids:
                self._send(sock, pubacks_packet(ids))
            return len(ids)

    def _send(self, sock: socket.socket, data: bytes) -> None:
        """Write under ``_lock``; a failed or partial write ends the connection."""
        try:
            sock.sendall(data)
        except OSError as exc:
            log.warning(kv("mqtt_send_failed", error=exc, client_id=self.settings.client_id))
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # the network thread sees it and reconnects

    # --- the network thread -------------------------------------------------------

    def _run(self) -> None:
        backoff = Backoff(BACKOFF_MIN_S, BACKOFF_MAX_S, self._rng)
        while not self._stop.is_set():
            sock: socket.socket | None = None
            try:
                sock = socket.create_connection(
                    (self.settings.mqtt_host, self.settings.mqtt_port), timeout=CONNECT_TIMEOUT_S
                )
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if self._session(sock):
                    backoff.reset()
            except Fatal as exc:
                self.fatal = str(exc)
                log.error(kv("mqtt_refused", error=exc, client_id=self.settings.client_id))
            except (OSError, Dropped, ProtocolError) as exc:
                log.warning(kv("mqtt_disconnected", error=exc, client_id=self.settings.client_id))
            finally:
                self._down(sock)
            if self.fatal or self._stop.is_set():
                return
            wait = backoff.next()
            log.info(kv("mqtt_reconnect_in", seconds=f"{wait:.1f}"))
            self._stop.wait(wait)

    def _down(self, sock: socket.socket | None) -> None:
        with self._lock:
            self.subscribed = False
            if self.down_since is None:
                self.down_since = time.monotonic()
            self._sock = None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

    def _session(self, sock: socket.socket) -> bool:
        """One connection until it drops or the worker stops; True if CONNACK accepted us."""
        sock.settimeout(TICK_S)
        sock.sendall(self._connect)
        started = time.monotonic()
        connected = False
        self._next_ping = started + self._keepalive / 2
        self._ping_sent: float | None = None
        buf = bytearray()
        while not self._stop.is_set():
            try:
                data = sock.recv(READ_BYTES)
            except TimeoutError:
                data = None
            now = time.monotonic()
            if data == b"":
                raise Dropped("connection closed by the broker")
            if data:
                buf += data
                chunk: list[Inbound] = []
                for packet in take_packets(buf):
                    if type(packet) is Publish:
                        self._publish(sock, packet, chunk)
                    else:
                        connected |= self._control(sock, packet)  # type: ignore[arg-type]
                if chunk:
                    self._hand_over(sock, chunk)
            if not connected and now - started > CONNECT_TIMEOUT_S:
                raise Dropped("no CONNACK in time")
            if connected:
                self._keep_alive(sock, time.monotonic(), reading=True)
        with self._lock, contextlib.suppress(OSError):
            sock.sendall(disconnect_packet())
        return connected

    def _keep_alive(self, sock: socket.socket, now: float, *, reading: bool) -> None:
        if reading and self._ping_sent is not None and now - self._ping_sent > self._keepalive:
            raise Dropped(f"no PINGRESP within {self._keepalive} s")
        if now >= self._next_ping:
            self._next_ping = now + self._keepalive / 2
            if self._ping_sent is None:
                self._ping_sent = now
            with self._lock:
                self._send(sock, PINGREQ_PACKET)

    def _hand_over(self, sock: socket.socket, chunk: list[Inbound]) -> None:
        """Queue one chunk; while the queue is full, stop reading but keep pinging."""
        try:
            self.inbound.put_nowait(chunk)
            return
        except queue.Full:
            pass
        while not self._stop.is_set():
            self._keep_alive(sock, time.monotonic(), reading=False)
            try:
                self.inbound.put(chunk, timeout=TICK_S)
                break
            except queue.Full:
                continue
        self._ping_sent = None  # its PINGRESP may still be unread behind the backlog

    def _publish(self, sock: socket.socket, msg: Publish, chunk: list[Inbound]) -> None:
        topic = msg.topic
        if topic.endswith(STATE_SUFFIX):
            parse_state(self.models, topic, msg.payload)
            if msg.qos:
                with self._lock:
                    self._send(sock, pubacks_packet([msg.packet_id]))
            return
        ack = Ack(msg.packet_id, msg.qos, self.generation) if msg.qos else None
        chunk.append(Inbound(topic, msg.payload, ack))

    def _control(self, sock: socket.socket, packet: Packet) -> bool:
        kind = packet.first & 0xF0
        if kind == CONNACK:
            return self._connack(sock, packet.body)
        if kind == SUBACK:
            _, codes = parse_suback(packet.body)
            refused = [f"0x{code:02x}" for code in codes if code >= 0x80]
            if refused:
                raise Fatal(f"MQTT broker refused the subscriptions: {', '.join(refused)}")
            self.subscribed = True
            log.info(kv("mqtt_subscribed", client_id=self.settings.client_id))
        elif kind == PINGRESP:
            self._ping_sent = None
        elif kind == DISCONNECT:
            reason = parse_disconnect(packet.body)
            raise Dropped(f"the broker disconnected us: reason 0x{reason:02x}")
        return False

    def _connack(self, sock: socket.socket, body: bytes) -> bool:
        ack = parse_connack(body)
        if ack.reason in AUTH_FAILURES:
            raise Fatal(f"MQTT broker refused the credentials: {AUTH_FAILURES[ack.reason]}")
        if ack.reason >= 0x80:
            raise Dropped(f"CONNACK refused: reason 0x{ack.reason:02x}")
        server_keepalive = ack.props.get(PROP_SERVER_KEEP_ALIVE)
        if isinstance(server_keepalive, int) and server_keepalive:
            self._keepalive = server_keepalive
        with self._lock:
            self.generation += 1
            self.down_since = None
            self._sock = sock
            self._send(sock, subscribe_packet(SUBSCRIBE_ID, subscription_filters(self.settings)))
        log.info(
            kv(
                "mqtt_connected",
                client_id=self.settings.client_id,
                session_present=ack.session_present,
                generation=self.generation,
            )
        )
        return True
