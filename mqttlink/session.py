"""A thin MQTT v5 session over the ``mqtt5`` codec, for the two raw clients that need speed.

Ingest's consumer (``ingest/mqtt_consumer.py``) and the simulator's load
generator (``firmware_sim/rawlink.py``) speak MQTT through this one class; every
other client uses paho. :class:`Session` holds the protocol state of one client
(sans I/O: it returns bytes to send and takes decoded packets); the callers own
their sockets (:mod:`mqttlink.transport`), their threads and their buffers.

What it does:

- CONNECT with session expiry, Receive Maximum and our Maximum Packet Size
  (bytes larger than that are refused by :mod:`mqttlink.inbox`: DISCONNECT 0x95);
- CONNACK through :mod:`mqttlink.reasons` by value: a permanent refusal raises
  :class:`Refused` (a :class:`~mqttlink.reasons.Refusal`: exit code, one line),
  a transient one :class:`Dropped` (the caller backs off, ``runtime.backoff``);
  the broker's Receive Maximum, Maximum Packet Size and Server Keep Alive are kept;
- SUBSCRIBE with a packet id from :attr:`Session.ids`, the same allocator the
  caller's QoS 1 PUBLISHes use, so the two never collide; a refused
  subscription in SUBACK raises :class:`Refused` (exit 4);
- PINGREQ every keepalive/2 (:meth:`Session.tick`); no PINGRESP within the
  keepalive raises :class:`Dropped`;
- DISCONNECT from the broker mapped through the table (0x8E session taken over:
  :class:`Refused`, exit 5, "another process ... took over the session");
  Mosquitto before 2.0.15 (Debian 12 ships 2.0.11) sends no 0x8E but closes the
  connection: :meth:`Session.closed` infers a takeover from ``TAKEOVER_LOSSES``
  silent closes in a row (:mod:`mqttlink.takeover`);
- PUBACKs from the broker: :meth:`Session.puback` gives the packet id and the
  reason; only ``reasons.delivered`` codes complete a message;
- outgoing PUBLISHes over the broker's Maximum Packet Size raise :class:`TooLarge`.

Errors::

    SessionError
    ├── Dropped    transient: reconnect after a backoff (closed, timed out, malformed, 0x88 ...)
    └── Refused    permanent: ``.refusal`` says the exit code and the one line to print
    TooLarge       a message we must not send (over the broker's Maximum Packet Size)
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

import mqtt5

from mqttlink.inbox import Inbox
from mqttlink.reasons import (
    SESSION_TAKEN_OVER,
    Reason,
    Refusal,
    SettingNames,
    delivered,
    reason,
    subscription_refused,
)
from mqttlink.takeover import TakeoverGuess

CONNECT_TIMEOUT_S: Final = 10.0
TAKEOVER_LOSSES: Final = 2  # the older of two workers sees the second close first
MAX_PACKET_ID: Final = 65_535
QOS: Final = (mqtt5.QoS.AT_MOST_ONCE, mqtt5.QoS.AT_LEAST_ONCE)


class SessionError(Exception):
    """Base of this module's errors."""


class Dropped(SessionError):
    """The connection ended or the broker refused us for now: reconnect after a backoff."""


class Refused(SessionError):
    """The broker refused us for good: stop the process with ``refusal.exit_code``."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.line)
        self.refusal = refusal


class TooLarge(ValueError):
    """A PUBLISH over the broker's Maximum Packet Size: never sent (the caller keeps it)."""


@dataclass(frozen=True, slots=True)
class Will:
    topic: str
    payload: bytes
    delay_s: int = 0
    retain: bool = True


@dataclass(frozen=True, slots=True)
class SessionOptions:
    """Who we are to the broker and what a refusal line says (``what``, ``url``, ``names``)."""

    client_id: str
    what: str  # the process, as the refusal line names it: "ingest", "simulator"
    url: str
    names: SettingNames
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    keepalive_s: int = 30
    session_expiry_s: int = 0
    receive_maximum: int = 65_535
    max_packet_size: int = 1024 * 1024
    clean_start: bool = False
    will: Will | None = None


class PacketIds:
    """Packet ids 1..65535 for one session's QoS 1 PUBLISHes and SUBSCRIBEs, never two in use.

    Thread-safe: the simulator's publishers take ids while its network thread
    subscribes and releases them.
    """

    def __init__(self) -> None:
        self._used: set[int] = set()
        self._last = 0
        self._lock = threading.Lock()

    def take(self) -> int:
        with self._lock:
            used = self._used
            if len(used) >= MAX_PACKET_ID:
                raise RuntimeError("all 65535 packet ids in use")
            pid = self._last % MAX_PACKET_ID + 1
            while pid in used:
                pid = pid % MAX_PACKET_ID + 1
            used.add(pid)
            self._last = pid
            return pid

    def release(self, pid: int) -> bool:
        """Free ``pid``; False if it was not in use (a stray or duplicate acknowledgement)."""
        with self._lock:
            try:
                self._used.remove(pid)
            except KeyError:
                return False
            return True

    def in_use(self, pid: int) -> bool:
        return pid in self._used

    def __len__(self) -> int:
        return len(self._used)


@functools.cache
def _puback(pid: int) -> bytes:
    """PUBACK (success) for one packet id, encoded by mqtt5 once per process and id."""
    return mqtt5.PubAckPacket(pid).write()


def pubacks(packet_ids: Sequence[int]) -> bytes:
    """PUBACKs (success) for ``packet_ids`` in one buffer, for one ``send``."""
    return b"".join(map(_puback, packet_ids))


def publish_packet(
    topic: str, payload: bytes, qos: int, packet_id: int | None, *, retain: bool, dup: bool = False
) -> bytes:
    return mqtt5.PublishPacket(
        topic, payload, qos=QOS[qos], packet_id=packet_id, retain=retain, duplicate=dup
    ).write()


class Session:
    """The protocol state of one client across its connections.

    One owner thread (the network thread), except :attr:`ids` (thread-safe) and
    :meth:`publish` (pure, any thread).
    """

    def __init__(self, options: SessionOptions) -> None:
        self.options = options
        self.ids = PacketIds()
        self.inbox = Inbox(options.max_packet_size)
        self.connected = False  # CONNACK accepted on the current connection
        self.session_present = False
        self.subscribed = False  # every SUBSCRIBE of this connection granted
        self.broker_receive_maximum = 65_535
        self.broker_max_packet_size: int | None = None
        self.keepalive_s = options.keepalive_s
        self._started = 0.0
        self._next_ping = 0.0
        self._ping_sent: float | None = None
        self._subscribing: dict[int, list[str]] = {}  # packet id -> filters awaiting SUBACK
        self._takeover = TakeoverGuess(TAKEOVER_LOSSES)

    # --- connecting -------------------------------------------------------------------------
    def start(self, now: float | None = None) -> bytes:
        """A new connection: state reset, the CONNECT packet to send first."""
        now = time.monotonic() if now is None else now
        self.inbox.clear()
        self.connected = self.subscribed = self.session_present = False
        self.broker_receive_maximum = 65_535
        self.broker_max_packet_size = None
        self.keepalive_s = self.options.keepalive_s
        for pid in self._subscribing:
            self.ids.release(pid)
        self._subscribing.clear()
        self._started = now
        self._ping_sent = None
        o = self.options
        will = None
        if o.will is not None:
            will = mqtt5.Will(
                o.will.topic,
                payload=o.will.payload,
                qos=mqtt5.QoS.AT_LEAST_ONCE,
                retain=o.will.retain,
                will_delay_interval=o.will.delay_s,
            )
        return mqtt5.ConnectPacket(
            o.client_id,
            username=o.username,
            password=o.password.encode() if o.password is not None else None,
            clean_start=o.clean_start,
            will=will,
            keep_alive=o.keepalive_s,
            session_expiry_interval=o.session_expiry_s,
            receive_max=o.receive_maximum,
            max_packet_size=o.max_packet_size,
        ).write()

    def refusal(self, found: Reason) -> Refusal:
        o = self.options
        return Refusal.of(o.what, found, o.url, o.names)

    def on_connack(self, packet: mqtt5.ConnAckPacket, now: float | None = None) -> None:
        found = reason(int(packet.reason_code))
        if found.failure:
            self._takeover.reset()
            if found.permanent:
                raise Refused(self.refusal(found))
            raise Dropped(f"CONNACK {found}")
        self.connected = True
        self.session_present = packet.session_present
        self.broker_receive_maximum = packet.receive_max
        self.broker_max_packet_size = packet.max_packet_size
        if packet.server_keep_alive:
            self.keepalive_s = packet.server_keep_alive
        now = time.monotonic() if now is None else now
        self._next_ping = now + self.keepalive_s / 2
        self._takeover.up(now)

    def closed(self, now: float, *, by_broker: bool) -> None:
        """The connection ended; ``by_broker``: the broker closed it without a DISCONNECT.

        ``TAKEOVER_LOSSES`` such closes in a row of young connections raise
        :class:`Refused` (session taken over): see above.
        """
        was_up, self.connected, self.subscribed = self.connected, False, False
        if was_up and self._takeover.lost(now, silent=by_broker):
            raise Refused(self.refusal(reason(SESSION_TAKEN_OVER)))

    # --- subscribing ------------------------------------------------------------------------
    def subscribe(self, filters: Sequence[str], qos: int = 1) -> bytes:
        """A SUBSCRIBE with a packet id no in-flight PUBLISH holds."""
        pid = self.ids.take()
        self._subscribing[pid] = list(filters)
        self.subscribed = False
        return mqtt5.SubscribePacket(
            pid, [mqtt5.TopicFilter(f, max_qos=QOS[qos]) for f in filters]
        ).write()

    def on_suback(self, packet: mqtt5.SubAckPacket) -> None:
        pid = packet.packet_id
        filters = self._subscribing.pop(pid, [])
        if filters:
            self.ids.release(pid)
        for i, code in enumerate(packet.reason_codes):
            if int(code) >= 0x80:
                o, found = self.options, subscription_refused(int(code))
                what = f"{o.what} subscription {filters[i] if i < len(filters) else '?'}"
                raise Refused(Refusal.of(what, found, o.url, o.names))
        self.subscribed = not self._subscribing

    # --- keeping alive ----------------------------------------------------------------------
    def tick(self, now: float, *, reading: bool = True) -> bytes | None:
        """A PINGREQ when one is due; :class:`Dropped` when the broker stays silent.

        ``reading=False``: the caller is not reading the socket (its queue is full),
        so a missing PINGRESP proves nothing yet.
        """
        if not self.connected:
            if now - self._started > CONNECT_TIMEOUT_S:
                raise Dropped(f"no CONNACK within {CONNECT_TIMEOUT_S:.0f} s")
            return None
        sent = self._ping_sent
        if reading and sent is not None and now - sent > self.keepalive_s:
            raise Dropped(f"no PINGRESP within {self.keepalive_s} s")
        if now < self._next_ping:
            return None
        self._next_ping = now + self.keepalive_s / 2
        if sent is None:
            self._ping_sent = now
        return mqtt5.PingReqPacket().write()

    def not_reading(self) -> None:
        """The caller stopped reading for a while: an unread PINGRESP may be waiting."""
        self._ping_sent = None

    # --- packets from the broker ------------------------------------------------------------
    def control(self, packet: mqtt5.Packet) -> None:
        """CONNACK, SUBACK, PINGRESP, DISCONNECT (PUBLISH and PUBACK are the caller's)."""
        kind = type(packet)
        if kind is mqtt5.PingRespPacket:
            self._ping_sent = None
        elif kind is mqtt5.ConnAckPacket:
            self.on_connack(packet)  # type: ignore[arg-type]
        elif kind is mqtt5.SubAckPacket:
            self.on_suback(packet)  # type: ignore[arg-type]
        elif kind is mqtt5.DisconnectPacket:
            self.on_disconnect(packet)  # type: ignore[arg-type]
        elif not self.connected:
            raise Dropped(f"{kind.__name__} before CONNACK")

    def on_disconnect(self, packet: mqtt5.DisconnectPacket) -> None:
        found = reason(int(packet.reason_code))
        if found.permanent:
            raise Refused(self.refusal(found))
        raise Dropped(f"the broker disconnected us: {found}")

    @staticmethod
    def puback(packet: mqtt5.PubAckPacket) -> tuple[int, int, bool]:
        """(packet id, reason code, delivered) of a PUBACK for one of our PUBLISHes."""
        code = int(packet.reason_code)
        return packet.packet_id, code, delivered(code)

    # --- packets to the broker --------------------------------------------------------------
    def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int,
        packet_id: int | None,
        *,
        retain: bool = False,
        dup: bool = False,
    ) -> bytes:
        """One PUBLISH; :class:`TooLarge` if the broker said it would not take it."""
        data = publish_packet(topic, payload, qos, packet_id, retain=retain, dup=dup)
        limit = self.broker_max_packet_size
        if limit is not None and len(data) > limit:
            raise TooLarge(f"PUBLISH of {len(data)} bytes > the broker's maximum {limit}")
        return data

    @staticmethod
    def disconnect(code: int = 0) -> bytes:
        """DISCONNECT (0: normal, the session stays for its expiry; 0x95, 0x81: our refusal)."""
        return mqtt5.DisconnectPacket(reason_code=mqtt5.DisconnectReasonCode(code)).write()
