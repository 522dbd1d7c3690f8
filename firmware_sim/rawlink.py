"""A minimal MQTT v5 publisher for per-centre load tests (no paho on the hot path).

paho costs ~16 us per QoS 1 publish plus a ``send()`` per message; here the
scheduler appends ready-made PUBLISH packets (``contract.mqtt_wire.publish_packet``) to one
buffer per connection and writes it in large chunks. The fleet's :class:`NetLoop`
thread reads CONNACK, PUBACKs, SUBACKs and commands, and sends PINGREQ.

Same behaviour as :class:`firmware_sim.link.Link` (births, Last Will with Will
Delay, session expiry, command subscriptions, jittered reconnect, a refused
login stops the link) and the same buffers and policies, kept in its
:class:`~firmware_sim.outbox.Outbox` (in-flight window bounded by the broker's
Receive Maximum, a bounded pending queue, one output buffer).

Threads: ``send``/``send_reading``/``flush`` from any thread (the outbox's lock
guards the buffers); ``_connect``, ``_tick``, ``on_*`` and ``_on_*`` run on the
network thread.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Final

from contract.backoff import Backoff
from contract.codec import DecodeError, decode
from contract.messages import Command
from contract.mqtt_wire import (
    CONNACK,
    DISCONNECT,
    DISCONNECT_PACKET,
    PINGREQ_PACKET,
    PUBACK,
    PUBLISH,
    SUBACK,
    ProtocolError,
    connect_packet,
    parse_connack,
    parse_publish,
    puback_packet,
    split_packets,
    subscribe_packet,
    take_pubacks,
)
from contract.topics import Channel, Topic, TopicError, subscription
from firmware_sim.devices.base import Device
from firmware_sim.link import BACKOFF_MAX_S, BACKOFF_MIN_S, CommandSink
from firmware_sim.netloop import NetLoop
from firmware_sim.outbox import Outbox
from firmware_sim.stats import Counters
from mqttlink.reasons import reason

log = logging.getLogger(__name__)

CONNACK_TIMEOUT_S: Final = 10.0


class RawLink:
    """One connection publishing for a centre's devices, MQTT spoken directly."""

    def __init__(
        self,
        loop: NetLoop,
        client_id: str,
        host: str,
        port: int,
        username: str | None,
        password: str | None,
        devices: Sequence[Device],
        *,
        counters: Counters,
        on_command: CommandSink,
        now_ms: Callable[[], int],
        will_delay_s: int = 5,
        session_expiry_s: int = 300,
        keepalive_s: int = 30,
        max_inflight: int = 1000,
        max_queued: int = 10_000,
        rng: random.Random | None = None,
        centre_wide: bool = True,
    ) -> None:
        self.loop = loop
        self.client_id = client_id
        self.host, self.port = host, port
        self.username, self.password = username, password
        self.devices = {d.device_id: d for d in devices}
        self.centre = devices[0].centre
        self.counters = counters
        self.on_command = on_command
        self.now_ms = now_ms
        self.will_delay_s = will_delay_s
        self.session_expiry_s = session_expiry_s
        self.keepalive_s = keepalive_s
        self.max_inflight = max_inflight
        self.max_queued = max_queued
        self.rng = rng or random.Random(client_id)
        self.fatal: str | None = None
        self.offline_until = 0.0
        self.first_connect = threading.Event()
        self.outbox = Outbox(
            max_inflight,
            max_queued,
            want_write=lambda on: self.loop.want_write(self._fd, on),
            on_write_error=lambda why: self.loop.call_soon(functools.partial(self._drop, why)),
        )
        self.send_reading = self.outbox.send_reading  # the scheduler's hot path, no extra call
        self.wait_room = self.outbox.wait_room
        self.flush = self.outbox.flush
        self._sock: socket.socket | None = None
        self._tcp_pending = False  # connect() in progress, CONNECT not yet sent
        self._fd = -1
        self._inbuf = bytearray()
        self._awaiting_connack_since: float | None = None
        self._stopping = False
        self._backoff = Backoff(BACKOFF_MIN_S, BACKOFF_MAX_S, self.rng)
        self._retry_at: float | None = None
        loop.every_tick(self._tick)
        for device in devices:
            device.send = self.send

    # --- publishing (any thread): see outbox.py --------------------------------------------
    def send(self, topic_: str, payload: bytes, qos: int, retain: bool) -> None:
        """Births, acks, events from commands: best effort, counted when dropped."""
        if not self.outbox.send(topic_, payload, qos, retain):
            self.counters.dropped += 1

    @property
    def connected(self) -> bool:
        return self.outbox.connected

    @property
    def messages(self) -> int:
        return self.outbox.messages

    @property
    def completed(self) -> int:
        return self.outbox.completed

    @property
    def outstanding(self) -> int:
        return self.outbox.outstanding

    @property
    def window(self) -> int:
        """QoS 1 PUBLISHes allowed in flight: min(max_inflight, the broker's Receive Maximum)."""
        return self.outbox.window

    # --- connect and reconnect (network thread) ----------------------------------------------
    def start(self) -> None:
        self.loop.call_soon(self._connect)

    def _connect(self) -> None:
        """Start a non-blocking TCP connect; CONNECT goes out once the socket is writable."""
        if self._stopping or self.fatal or self._sock is not None:
            return
        try:
            family, kind, proto, _, addr = socket.getaddrinfo(
                self.host, self.port, type=socket.SOCK_STREAM
            )[0]
            sock = socket.socket(family, kind, proto)
        except OSError as exc:
            self.counters.errors += 1
            self._schedule_retry(f"connect failed: {exc}")
            return
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        err = sock.connect_ex(addr)
        if err not in (0, errno.EINPROGRESS):
            sock.close()
            self.counters.errors += 1
            self._schedule_retry(f"connect failed: {os.strerror(err)}")
            return
        self._sock, self._fd = sock, sock.fileno()
        self.outbox.attach(sock)
        self._tcp_pending = True
        self._inbuf.clear()
        self._awaiting_connack_since = time.monotonic()  # also bounds the TCP connect
        self.loop.add_fd(self._fd, self)
        self.loop.want_write(self._fd, True)

    def _send_connect(self, sock: socket.socket) -> None:
        self._tcp_pending = False
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self.counters.errors += 1
            self._drop(f"connect failed: {os.strerror(err)}")
            return
        first = self.devices[next(iter(self.devices))]
        packet = connect_packet(
            self.client_id,
            username=self.username,
            password=self.password,
            keepalive_s=self.keepalive_s,
            session_expiry_s=self.session_expiry_s,
            clean_start=False,
            will_topic=first.topics[Channel.STATE],
            will_payload=first.will(),
            will_delay_s=self.will_delay_s,
        )
        try:
            sock.send(packet)  # a few hundred bytes into a fresh socket buffer
        except OSError as exc:
            self.counters.errors += 1
            self._drop(f"connect failed: {exc}")
            return
        self.loop.want_write(self._fd, False)

    def _schedule_retry(self, why: str) -> None:
        delay = self._backoff.next()
        attempt = self._backoff.attempt
        if attempt in (1, 5) or attempt % 50 == 0:
            log.warning(
                "event=link_down centre=%s client=%s attempt=%d retry_s=%.1f reason=%r",
                self.centre,
                self.client_id,
                attempt,
                delay,
                why,
            )
        self._retry_at = max(time.monotonic() + delay, self.offline_until)

    def _drop(self, why: str) -> None:
        sock = self._sock
        if sock is None:
            return
        self.loop.remove_fd(self._fd)
        with contextlib.suppress(OSError):
            sock.close()
        self._sock = None
        self.outbox.attach(None)  # unacknowledged QoS 1 stays in flight and is resent
        self._tcp_pending = False
        self._awaiting_connack_since = None
        if not self._stopping and not self.fatal:
            self._schedule_retry(why)

    def _tick(self, now: float) -> None:
        if self._stopping or self.fatal:
            return
        if self._sock is None:
            if now >= self.offline_until and self._retry_at is not None and now >= self._retry_at:
                self._retry_at = None
                self._connect()
            return
        since = self._awaiting_connack_since
        if since is not None and now - since > CONNACK_TIMEOUT_S:
            self.counters.errors += 1
            self._drop("no CONNACK")
            return
        if self.connected:
            if self.outbox.out:
                self.outbox.flush()
            elif now - self.outbox.last_write > self.keepalive_s / 2:
                self.outbox.control(PINGREQ_PACKET)

    # --- reading (network thread) ---------------------------------------------------------------
    def on_writable(self) -> None:
        if self._tcp_pending and self._sock is not None:
            self._send_connect(self._sock)
            return
        outbox = self.outbox
        with outbox.lock:
            outbox.flush_locked()
            if not outbox.out and self._sock is not None:
                self.loop.want_write(self._fd, False)

    def on_readable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        try:
            data = sock.recv(262_144)
        except BlockingIOError:
            return
        except OSError as exc:
            if self._tcp_pending:
                self.counters.errors += 1
            self._drop(f"read failed: {exc}")
            return
        if not data:
            self._drop("connection closed")
            return
        self._inbuf += data
        acked = take_pubacks(self._inbuf)  # the common case: nothing but PUBACKs
        try:
            packets = split_packets(self._inbuf)
        except ProtocolError as exc:
            self.counters.errors += 1
            self._drop(f"protocol error: {exc}")
            return
        for packet in packets:
            kind = packet.kind
            body = packet.body
            if kind == PUBACK:
                acked.append((body[0] << 8) | body[1])
                if len(body) > 2 and body[2] >= 0x80:
                    self.counters.errors += 1
            elif kind == PUBLISH:
                self._on_publish(packet.first, body)
            elif kind == CONNACK:
                self._on_connack(body)
                if self._sock is None:
                    return
            elif kind == SUBACK:
                if any(code >= 0x80 for code in body[3:]):
                    log.warning(
                        "event=subscribe_refused centre=%s client=%s", self.centre, self.client_id
                    )
            elif kind == DISCONNECT:
                self._drop(f"broker disconnected us: reason 0x{body[0] if body else 0:02x}")
                return
        if acked:
            self.outbox.acked(acked)

    def _on_connack(self, body: bytes) -> None:
        self._awaiting_connack_since = None
        try:
            ack = parse_connack(body)
        except ProtocolError as exc:
            self.counters.errors += 1
            self._drop(f"bad CONNACK: {exc}")
            return
        if ack.reason >= 0x80:
            self.counters.errors += 1
            if reason(ack.reason).permanent:
                self.fatal = f"broker refused login: reason 0x{ack.reason:02x}"
                log.error(
                    "event=auth_refused centre=%s client=%s rc=0x%02x",
                    self.centre,
                    self.client_id,
                    ack.reason,
                )
                self._drop(self.fatal)
                self.first_connect.set()
                return
            self._drop(f"CONNACK reason 0x{ack.reason:02x}")
            return
        if self._backoff.attempt or self.first_connect.is_set():
            self.counters.reconnects += 1
        self._backoff.reset()
        filters = [
            subscription(Channel.CMD, self.centre),
            subscription(Channel.TWIN_DESIRED, self.centre),
        ]
        now = self.now_ms()
        births = [(d.topics[Channel.STATE], d.birth(now)) for d in self.devices.values()]
        self.outbox.online(ack.receive_maximum, subscribe_packet(1, filters), births)
        self.first_connect.set()

    def _on_publish(self, first: int, body: bytes) -> None:
        try:
            incoming = parse_publish(first, body)
        except ProtocolError as exc:
            self.counters.bad_commands += 1
            log.warning("event=bad_command centre=%s reason=%r", self.centre, str(exc)[:200])
            return
        if incoming.qos:
            self.outbox.control(puback_packet(incoming.packet_id))
        try:
            where = Topic.parse(incoming.topic)
            device = self.devices.get(where.device)
            if device is None:
                return
            message = decode(where.channel, incoming.payload)
        except (TopicError, DecodeError) as exc:
            self.counters.bad_commands += 1
            log.warning(
                "event=bad_command centre=%s topic=%s reason=%r payload=%r",
                self.centre,
                incoming.topic[:120],
                str(exc)[:200],
                incoming.payload[:120],
            )
            return
        deadline = time.time() + incoming.expiry_s if incoming.expiry_s is not None else None
        if isinstance(message, Command):
            self.counters.commands += 1
        self.on_command(device, message, deadline)

    # --- faults and shutdown --------------------------------------------------------------------
    def cut(self, offline_s: float) -> None:
        """Drop the TCP connection abruptly (no DISCONNECT: the broker fires the Last Will)."""

        def do() -> None:
            self.counters.cuts += 1
            self.offline_until = time.monotonic() + offline_s
            self._drop("cut (fault injection)")
            self._retry_at = self.offline_until

        self.loop.call_soon(do)

    def restart(self, offline_s: float = 0.2) -> None:
        """A device reboot: in per-centre mode the centre's connection stays up."""

    def stop(self) -> None:
        """Mark every device offline (retained), then DISCONNECT cleanly (no Will)."""
        done = threading.Event()

        def do() -> None:
            self._stopping = True
            sock = self._sock
            if sock is not None and self.connected:
                wills = [(d.topics[Channel.STATE], d.will()) for d in self.devices.values()]
                data = self.outbox.goodbye(wills, DISCONNECT_PACKET)  # offline states: not counted
                with contextlib.suppress(OSError):
                    sock.setblocking(True)
                    sock.settimeout(2.0)
                    sock.sendall(data)
            if sock is not None:
                self.loop.remove_fd(self._fd)
                with contextlib.suppress(OSError):
                    sock.close()
                self._sock = None
            self.outbox.attach(None)
            done.set()

        self.loop.call_soon(do)
        done.wait(5.0)
