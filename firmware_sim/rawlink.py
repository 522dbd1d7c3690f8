"""A minimal MQTT v5 publisher for per-centre load tests (no paho on the hot path).

paho costs ~16 us per QoS 1 publish plus a ``send()`` per message; here the
scheduler appends ready-made PUBLISH packets (``mqttwire.publish_packet``) to one
buffer per connection and writes it in large chunks. The fleet's :class:`NetLoop`
thread reads CONNACK, PUBACKs, SUBACKs and commands, and sends PINGREQ.

Same behaviour as :class:`firmware_sim.link.Link` (births, Last Will with Will
Delay, session expiry, command subscriptions, jittered reconnect, a refused
login stops the link) and the same buffers and policies:

- in flight: at most ``min(max_inflight, broker Receive Maximum)`` QoS 1
  PUBLISHes without PUBACK (resent with DUP after a reconnect);
- pending: while disconnected (or the window is full), up to ``max_queued``
  QoS 1 messages wait in order; when full, new readings are dropped and counted
  (keep the oldest, drop the newest); QoS 0 while disconnected is dropped.

Threads: ``send``/``send_reading``/``flush`` from any thread (a lock guards the
buffers); everything named ``_on_*``/``on_*`` runs on the network thread.
"""

from __future__ import annotations

import array
import contextlib
import errno
import functools
import logging
import os
import random
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Final

from contract.codec import DecodeError, decode
from contract.messages import Command
from contract.topics import Channel, Topic, TopicError, subscription
from firmware_sim.devices.base import Device
from firmware_sim.errors import ProtocolError
from firmware_sim.link import AUTH_FAILURES, BACKOFF_MAX_S, BACKOFF_MIN_S, CommandSink
from firmware_sim.mqttwire import (
    CONNACK,
    DISCONNECT,
    DISCONNECT_PACKET,
    PINGREQ_PACKET,
    PUBACK,
    PUBLISH,
    SUBACK,
    connect_packet,
    mark_dup,
    parse_connack,
    parse_publish,
    puback_packet,
    publish_packet,
    split_packets,
    subscribe_packet,
    topic_prefix,
)
from firmware_sim.netloop import NetLoop
from firmware_sim.stats import Counters

log = logging.getLogger(__name__)

FLUSH_BYTES: Final = 64 * 1024
CONNACK_TIMEOUT_S: Final = 10.0
CONTROL_RESERVE: Final = 32  # window slots kept for births, acks, twin echoes (at most 1/4)


def _reading_limit(window: int) -> int:
    """How much of the in-flight window readings may use; the rest is for control messages."""
    return max(1, window - min(CONTROL_RESERVE, window // 4))


def _take_pubacks(buf: bytearray) -> list[int]:
    """Packet ids of the plain PUBACKs (``40 02 id id``) at the front of ``buf``, removed."""
    whole = len(buf) // 4
    if not whole:
        return []
    chunk = bytes(buf[: whole * 4])
    if chunk[0::4] == _PUBACK_HEADS[0] * whole and chunk[1::4] == _PUBACK_HEADS[1] * whole:
        words = array.array("H", chunk)
        if sys.byteorder == "little":
            words.byteswap()
        del buf[: whole * 4]
        return words[1::2].tolist()
    out = []
    pos = 0
    while pos + 4 <= len(chunk) and chunk[pos] == 0x40 and chunk[pos + 1] == 2:
        out.append((chunk[pos + 2] << 8) | chunk[pos + 3])
        pos += 4
    del buf[:pos]
    return out


_PUBACK_HEADS: Final = (b"\x40", b"\x02")


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
        self.connected = False
        self.fatal: str | None = None
        self.offline_until = 0.0
        self.first_connect = threading.Event()
        self.messages = 0  # publishes accepted (under _lock)
        self.completed = 0  # PUBACKed (QoS 1) or written to the buffer (QoS 0) (under _lock)
        self._lock = threading.Lock()
        self._out = bytearray()
        self._inflight: dict[int, bytes] = {}  # packet id -> PUBLISH (insertion = send order)
        # (topic prefix, payload, qos, retain) waiting for a connection or room in the window
        self._pending: deque[tuple[bytes, bytes, int, bool]] = deque()
        self._next_id = 0
        self._window = max_inflight  # until CONNACK says the broker's Receive Maximum
        self._limit = _reading_limit(max_inflight)  # of the window, for readings
        self._room = threading.Event()
        self._room.set()
        self._sock: socket.socket | None = None
        self._tcp_pending = False  # connect() in progress, CONNECT not yet sent
        self._fd = -1
        self._inbuf = bytearray()
        self._awaiting_connack_since: float | None = None
        self._last_write = 0.0
        self._stopping = False
        self._attempt = 0
        self._retry_at: float | None = None
        self._prefix: dict[str, bytes] = {}
        loop.every_tick(self._tick)
        for device in devices:
            device.send = self.send

    # --- publishing (any thread) ---------------------------------------------------------------
    def _prefix_of(self, topic_: str) -> bytes:
        prefix = self._prefix.get(topic_)
        if prefix is None:
            prefix = self._prefix[topic_] = topic_prefix(topic_)
        return prefix

    def _emit_locked(self, prefix: bytes, payload: bytes, qos: int, retain: bool) -> None:
        """Append one PUBLISH to the output (lock held, connected, room checked)."""
        if qos:
            pid = self._next_id % 65535 + 1
            while pid in self._inflight:
                pid = pid % 65535 + 1
            self._next_id = pid
            packet = publish_packet(prefix, payload, 1, pid, retain=retain)
            self._inflight[pid] = packet
        else:
            packet = publish_packet(prefix, payload, 0, 0, retain=retain)
            self.completed += 1
        self._out += packet
        self.messages += 1

    def send_reading(self, topic_: str, payload: bytes, qos: int) -> bool:
        """Publish a reading; False (nothing sent, counted by the caller) when it cannot be kept."""
        prefix = self._prefix.get(topic_) or self._prefix_of(topic_)
        with self._lock:
            if self.connected and not self._pending and len(self._inflight) < self._limit:
                self._emit_locked(prefix, payload, qos, False)
                if len(self._inflight) >= self._limit:
                    self._room.clear()
                if len(self._out) >= FLUSH_BYTES:
                    self._flush_locked()
                return True
            if self.connected:
                self._room.clear()  # the scheduler waits until the pending ones are in flight
            if qos == 0 or len(self._pending) >= self.max_queued:
                return False
            self._pending.append((prefix, payload, qos, False))
            return True

    def send(self, topic_: str, payload: bytes, qos: int, retain: bool) -> None:
        """Births, acks, events from commands: sent at once (may use the reserve), else queued."""
        prefix = self._prefix_of(topic_)
        with self._lock:
            if self.connected and len(self._inflight) < self._window:
                self._emit_locked(prefix, payload, qos, retain)
                self._flush_locked()
            elif qos and len(self._pending) < self.max_queued:
                self._pending.append((prefix, payload, qos, retain))
            else:
                self.counters.dropped += 1

    def wait_room(self, stop: threading.Event, timeout: float = 1.0) -> bool:
        """Backpressure: wait until the broker acknowledged enough of the window."""
        if self._room.is_set():
            return True
        self.flush()
        self._room.wait(timeout)
        return self._room.is_set() and not stop.is_set()

    def flush(self) -> None:
        if self._out:
            with self._lock:
                self._flush_locked()

    @property
    def window(self) -> int:
        """QoS 1 PUBLISHes allowed in flight: min(max_inflight, the broker's Receive Maximum)."""
        return self._window

    @property
    def has_output(self) -> bool:
        return bool(self._out)

    @property
    def outstanding(self) -> int:
        return len(self._inflight) + len(self._pending)

    def _flush_locked(self) -> None:
        sock = self._sock
        if sock is None or not self.connected:
            return
        out = self._out
        while out:
            try:
                sent = sock.send(out)
            except BlockingIOError:
                self.loop.want_write(self._fd, True)
                return
            except OSError as exc:
                self.loop.call_soon(functools.partial(self._drop, f"write failed: {exc}"))
                return
            del out[:sent]
            self._last_write = time.monotonic()

    def _pump_locked(self) -> None:
        """Move pending messages into the window (network thread, lock held)."""
        pending = self._pending
        limit = self._limit
        while pending and len(self._inflight) < limit:
            prefix, payload, qos, retain = pending.popleft()
            self._emit_locked(prefix, payload, qos, retain)
        if len(self._inflight) < max(1, limit // 2) and not pending:
            self._room.set()

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
        self._attempt += 1
        delay = min(BACKOFF_MAX_S, BACKOFF_MIN_S * 2 ** min(self._attempt, 8))
        delay *= 0.5 + self.rng.random()
        if self._attempt in (1, 5) or self._attempt % 50 == 0:
            log.warning(
                "event=link_down centre=%s client=%s attempt=%d retry_s=%.1f reason=%r",
                self.centre,
                self.client_id,
                self._attempt,
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
        with self._lock:
            self._sock = None
            self.connected = False
            self._out.clear()  # unacked QoS 1 stays in _inflight and is resent
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
            with self._lock:
                if self._out:
                    self._flush_locked()
                elif now - self._last_write > self.keepalive_s / 2:
                    self._out += PINGREQ_PACKET
                    self._flush_locked()

    # --- reading (network thread) ---------------------------------------------------------------
    def on_writable(self) -> None:
        if self._tcp_pending and self._sock is not None:
            self._send_connect(self._sock)
            return
        with self._lock:
            self._flush_locked()
            if not self._out and self._sock is not None:
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
        acked = _take_pubacks(self._inbuf)  # the common case: nothing but PUBACKs
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
            with self._lock:
                inflight = self._inflight
                for pid in acked:
                    if inflight.pop(pid, None) is not None:
                        self.completed += 1
                self._pump_locked()
                self._flush_locked()

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
            if ack.reason in AUTH_FAILURES:
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
        if self._attempt or self.first_connect.is_set():
            self.counters.reconnects += 1
        self._attempt = 0
        filters = [
            subscription(Channel.CMD, self.centre),
            subscription(Channel.TWIN_DESIRED, self.centre),
        ]
        now = self.now_ms()
        with self._lock:
            self._window = max(1, min(self.max_inflight, ack.receive_maximum))
            self._limit = _reading_limit(self._window)
            self.connected = True
            self._out += subscribe_packet(1, filters)
            for packet in self._inflight.values():  # unacknowledged before the drop
                self._out += mark_dup(packet)
            for device in self.devices.values():
                prefix = self._prefix_of(device.topics[Channel.STATE])
                self._pending.appendleft((prefix, device.birth(now), 1, True))
            self._pump_locked()
            self._flush_locked()
        self.first_connect.set()

    def _on_publish(self, first: int, body: bytes) -> None:
        try:
            incoming = parse_publish(first, body)
        except ProtocolError as exc:
            self.counters.bad_commands += 1
            log.warning("event=bad_command centre=%s reason=%r", self.centre, str(exc)[:200])
            return
        if incoming.qos:
            with self._lock:
                self._out += puback_packet(incoming.packet_id)
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
                with self._lock:
                    for k, device in enumerate(self.devices.values()):  # not counted: like paho's
                        prefix = self._prefix_of(device.topics[Channel.STATE])
                        pid = (self._next_id + k) % 65535 + 1
                        self._out += publish_packet(prefix, device.will(), 1, pid, retain=True)
                    self._out += DISCONNECT_PACKET
                    data = bytes(self._out)
                    self._out.clear()
                with contextlib.suppress(OSError):
                    sock.setblocking(True)
                    sock.settimeout(2.0)
                    sock.sendall(data)
            if sock is not None:
                self.loop.remove_fd(self._fd)
                with contextlib.suppress(OSError):
                    sock.close()
                self._sock = None
            self.connected = False
            done.set()

        self.loop.call_soon(do)
        done.wait(5.0)
