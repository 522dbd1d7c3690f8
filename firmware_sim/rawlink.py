"""A minimal MQTT v5 publisher for per-centre load tests (no paho on the hot path).

paho costs ~16 us per QoS 1 publish plus a ``send()`` per message; here the
scheduler appends PUBLISH packets (encoded by ``mqtt5`` through
:class:`mqttlink.session.Session`, the same session layer as ingest's consumer)
to one buffer per connection and writes it in large chunks. The fleet's
:class:`NetLoop` thread reads CONNACK, PUBACKs, SUBACKs and commands, and sends
PINGREQ (keepalive/2; no PINGRESP within the keepalive drops the connection).
``mqtts://``: the TLS handshake runs on the loop too (non-blocking); a broker
certificate the CA did not sign is one line a minute naming the CA setting, and
retried (as the paho links do).
A permanent refusal (``mqttlink.reasons`` by value: login, subscription,
session taken over) stops the link: ``refusal`` and ``fatal`` (its line).

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
import dataclasses
import errno
import functools
import logging
import os
import random
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from typing import Final

import mqtt5

from contract.codec import DecodeError, decode
from contract.messages import Command
from contract.topics import Channel, Topic, TopicError, subscription
from firmware_sim.devices.base import Device
from firmware_sim.link import BACKOFF_MAX_S, BACKOFF_MIN_S, CommandSink
from firmware_sim.netloop import NetLoop
from firmware_sim.outbox import Outbox
from firmware_sim.settings import SETTING_NAMES
from firmware_sim.stats import Counters
from mqttlink.endpoint import Endpoint
from mqttlink.inbox import InboxError
from mqttlink.reasons import Refusal, SettingNames
from mqttlink.session import (
    CONNECT_TIMEOUT_S,
    Dropped,
    Refused,
    Session,
    SessionOptions,
    Will,
    pubacks,
)
from mqttlink.transport import WANT_IO, handshake, wrap_nonblocking
from runtime.backoff import Backoff
from runtime.logs import Throttle

log = logging.getLogger(__name__)

MAX_PACKET_BYTES: Final = 256 * 1024  # commands and twins are small
# client ids are sim-{centre}: two simulators with one centre prefix share them
SIM_SETTINGS: Final = dataclasses.replace(SETTING_NAMES, client_id="GRAMLINK_SIM_CENTRE_PREFIX")
PublishPacket, PubAckPacket = mqtt5.PublishPacket, mqtt5.PubAckPacket


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
        tls: ssl.SSLContext | None = None,
        throttle: Throttle | None = None,
        names: SettingNames = SIM_SETTINGS,
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
        self.fatal: str | None = None  # the refusal's line
        self.refusal: Refusal | None = None
        self.offline_until = 0.0
        self.first_connect = threading.Event()
        self.tls = tls
        self.throttle = throttle or Throttle(log)
        self.endpoint = Endpoint(host, port, tls is not None)
        first = devices[0]
        self.session = Session(
            SessionOptions(
                client_id=client_id,
                what="simulator",
                url=str(self.endpoint),
                names=names,
                username=username,
                password=password,
                keepalive_s=keepalive_s,
                session_expiry_s=session_expiry_s,
                max_packet_size=MAX_PACKET_BYTES,
                will=Will(first.topics[Channel.STATE], first.will(), will_delay_s),
            )
        )
        self.outbox = Outbox(
            self.session,
            max_inflight,
            max_queued,
            want_write=lambda on: self.loop.want_write(self._fd, on),
            on_write_error=lambda why: self.loop.call_soon(functools.partial(self._drop, why)),
        )
        self.send_reading = self.outbox.send_reading  # the scheduler's hot path, no extra call
        self.wait_room = self.outbox.wait_room
        self.flush = self.outbox.flush
        self._sock: socket.socket | None = None
        self._tcp_pending = False  # connect() (or the TLS handshake) in progress
        self._fd = -1
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
        self._tcp_pending = True
        self._awaiting_connack_since = time.monotonic()  # also bounds the TCP connect
        self.loop.add_fd(self._fd, self)
        self.loop.want_write(self._fd, True)

    def _send_connect(self, sock: socket.socket) -> None:
        """TCP is up (or failed): TLS handshake first when ``mqtts://``, then CONNECT."""
        if not isinstance(sock, ssl.SSLSocket):
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self.counters.errors += 1
                self._drop(f"connect failed: {os.strerror(err)}")
                return
            if self.tls is not None:
                sock = self._sock = wrap_nonblocking(sock, self.endpoint, self.tls)
        if isinstance(sock, ssl.SSLSocket):
            try:
                step = handshake(sock)
            except ssl.SSLCertVerificationError as exc:  # as the paho links: a line, retry
                self.counters.errors += 1
                self.throttle.error(
                    "broker_certificate_untrusted",
                    url=str(self.endpoint),
                    detail=str(exc)[:200],
                    check=self.session.options.names.ca_file,
                )
                self._drop(f"TLS: {exc}")
                return
            except OSError as exc:
                self.counters.errors += 1
                self._drop(f"TLS handshake failed: {exc}")
                return
            if step is not True:
                self.loop.want_write(self._fd, step == "write")
                return
        self._tcp_pending = False
        self.outbox.attach(sock)
        try:
            sock.send(self.session.start())  # a few hundred bytes into a fresh socket buffer
        except OSError as exc:
            self.counters.errors += 1
            self._drop(f"connect failed: {exc}")
            return
        self.loop.want_write(self._fd, False)

    def _refused(self, refusal: Refusal) -> None:
        """Stop this link for good with one line."""
        self.counters.errors += 1
        self.refusal, self.fatal = refusal, refusal.line
        log.error(
            "event=link_refused centre=%s client=%s exit_code=%d line=%r",
            self.centre,
            self.client_id,
            refusal.exit_code,
            refusal.line,
        )
        self._drop(refusal.line)
        self.first_connect.set()

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
        self.session.closed(time.monotonic(), by_broker=False)
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
        if since is not None and now - since > CONNECT_TIMEOUT_S:
            self.counters.errors += 1
            self._drop("no CONNACK")
            return
        if self.connected:
            try:
                ping = self.session.tick(now)
            except Dropped as exc:
                self.counters.errors += 1
                self._drop(str(exc))
                return
            if ping:
                self.outbox.control(ping)
            elif self.outbox.out:
                self.outbox.flush()

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
        if self._tcp_pending:
            self._send_connect(sock)  # the TLS handshake wants to read
            return
        session = self.session
        inbox = session.inbox
        try:
            got = inbox.recv_from(sock)
            while got and isinstance(sock, ssl.SSLSocket) and sock.pending():
                got = inbox.recv_from(sock)  # the rest of a TLS record already decrypted
        except WANT_IO:
            return
        except OSError as exc:
            self._drop(f"read failed: {exc}")
            return
        if not got and not inbox.buffered:
            try:
                session.closed(time.monotonic(), by_broker=True)
            except Refused as exc:  # taken over (Mosquitto before 2.0.15 sends no 0x8e)
                self._refused(exc.refusal)
                return
            self._drop("connection closed")
            return
        acked: list[int] = []
        refused: list[tuple[int, int]] = []
        try:
            for packet in inbox.packets():
                kind = type(packet)
                if kind is PubAckPacket:
                    pid, code, delivered = session.puback(packet)  # type: ignore[arg-type]
                    if delivered:
                        acked.append(pid)
                    else:
                        refused.append((pid, code))
                elif kind is PublishPacket:
                    self._on_publish(packet)  # type: ignore[arg-type]
                else:
                    was = session.connected
                    session.control(packet)
                    if not was and session.connected:
                        self._online()
        except Refused as exc:
            self._refused(exc.refusal)
            return
        except InboxError as exc:
            self.counters.errors += 1
            self.outbox.control(session.disconnect(exc.reason))
            self._drop(f"protocol error: {exc}")
            return
        except Dropped as exc:
            self.counters.errors += 1
            self._drop(str(exc))
            return
        if refused:
            self.counters.errors += sum(1 for _, code in refused if code >= 0x80)
        if acked or refused:
            self.outbox.acked(acked, refused)
        if not got:
            self._drop("connection closed")

    def _online(self) -> None:
        """CONNACK accepted: subscribe, births, resend what is in flight."""
        self._awaiting_connack_since = None
        if self._backoff.attempt or self.first_connect.is_set():
            self.counters.reconnects += 1
        self._backoff.reset()
        filters = [
            subscription(Channel.CMD, self.centre),
            subscription(Channel.TWIN_DESIRED, self.centre),
        ]
        now = self.now_ms()
        births = [(d.topics[Channel.STATE], d.birth(now)) for d in self.devices.values()]
        receive_maximum = self.session.broker_receive_maximum
        self.outbox.online(receive_maximum, self.session.subscribe(filters), births)
        self.first_connect.set()

    def _on_publish(self, incoming: mqtt5.PublishPacket) -> None:
        if incoming.packet_id is not None:
            self.outbox.control(pubacks([incoming.packet_id]))
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
        expiry = incoming.message_expiry_interval
        deadline = time.time() + expiry if expiry is not None else None
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
                data = self.outbox.goodbye(wills, self.session.disconnect())  # not counted
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
