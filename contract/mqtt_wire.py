"""MQTT v5 packets for the raw clients (the simulator's publisher, ingest's consumer).

What a publisher and a consumer need: CONNECT (login, Last Will with Will
Delay, session expiry, Receive Maximum), CONNACK, PUBLISH (QoS 0/1, out and in,
with properties), PUBACK, SUBSCRIBE/SUBACK, PINGREQ/PINGRESP, DISCONNECT. Pure
functions over bytes, no sockets, so the hot paths stay a handful of byte operations.
"""

from __future__ import annotations

import array
import struct
import sys
from dataclasses import dataclass, field
from typing import Final, NamedTuple


class ProtocolError(ValueError):
    """Bytes from the broker that are not valid MQTT v5: drop the connection and reconnect."""


CONNECT: Final = 0x10
CONNACK: Final = 0x20
PUBLISH: Final = 0x30
PUBACK: Final = 0x40
SUBSCRIBE: Final = 0x82
SUBACK: Final = 0x90
PINGREQ_PACKET: Final = b"\xc0\x00"
PINGRESP: Final = 0xD0
DISCONNECT_PACKET: Final = b"\xe0\x00"
DISCONNECT: Final = 0xE0
PINGRESP_PACKET: Final = b"\xd0\x00"

PROP_MESSAGE_EXPIRY: Final = 0x02
PROP_SESSION_EXPIRY: Final = 0x11
PROP_WILL_DELAY: Final = 0x18
PROP_RECEIVE_MAXIMUM: Final = 0x21
PROP_SERVER_KEEP_ALIVE: Final = 0x13

# property id -> wire type, for skipping what we do not use (MQTT v5 section 2.2.2.2)
_PROP_TYPES: Final = {
    0x01: "b", 0x02: "i", 0x03: "s", 0x08: "s", 0x09: "s", 0x0B: "v", 0x11: "i",
    0x12: "s", 0x13: "h", 0x15: "s", 0x16: "s", 0x17: "b", 0x18: "i", 0x19: "b",
    0x1A: "s", 0x1C: "s", 0x1F: "s", 0x21: "h", 0x22: "h", 0x23: "h", 0x24: "b",
    0x25: "b", 0x26: "p", 0x27: "i", 0x28: "b", 0x29: "b", 0x2A: "b",
}  # fmt: skip


def varint(n: int) -> bytes:
    """MQTT variable byte integer."""
    if n < 128:
        return bytes((n,))
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | 0x80 if n else digit)
        if not n:
            return bytes(out)


def read_varint(buf: bytes | bytearray | memoryview, pos: int) -> tuple[int, int] | None:
    """(value, next position), or None if ``buf`` ends inside the integer."""
    value, shift = 0, 0
    for i in range(pos, min(pos + 4, len(buf))):
        byte = buf[i]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, i + 1
        shift += 7
    if len(buf) >= pos + 4:
        raise ProtocolError("variable byte integer longer than 4 bytes")
    return None


def utf8(text: str) -> bytes:
    data = text.encode()
    return struct.pack("!H", len(data)) + data


def _packet(first: int, body: bytes) -> bytes:
    return bytes((first,)) + varint(len(body)) + body


def connect_packet(
    client_id: str,
    *,
    username: str | None,
    password: str | None,
    keepalive_s: int,
    session_expiry_s: int,
    clean_start: bool,
    will_topic: str | None = None,
    will_payload: bytes = b"",
    will_delay_s: int = 0,
    receive_maximum: int | None = None,
) -> bytes:
    flags = 0x02 if clean_start else 0
    if will_topic is not None:
        flags |= 0x04 | 0x08 | 0x20  # will, will QoS 1, will retain
    if username is not None:
        flags |= 0x80
    if password is not None:
        flags |= 0x40
    props = bytes((PROP_SESSION_EXPIRY,)) + struct.pack("!I", session_expiry_s)
    if receive_maximum is not None:
        props += bytes((PROP_RECEIVE_MAXIMUM,)) + struct.pack("!H", receive_maximum)
    body = utf8("MQTT") + bytes((5, flags)) + struct.pack("!H", keepalive_s)
    body += varint(len(props)) + props + utf8(client_id)
    if will_topic is not None:
        will_props = bytes((PROP_WILL_DELAY,)) + struct.pack("!I", will_delay_s)
        body += varint(len(will_props)) + will_props + utf8(will_topic)
        body += struct.pack("!H", len(will_payload)) + will_payload
    if username is not None:
        body += utf8(username)
    if password is not None:
        body += utf8(password)
    return _packet(CONNECT, body)


def topic_prefix(topic: str) -> bytes:
    """The encoded topic name of a PUBLISH (length + UTF-8): cache it per topic."""
    return utf8(topic)


def publish_packet(
    prefix: bytes, payload: bytes, qos: int, packet_id: int, *, retain: bool = False
) -> bytes:
    """A PUBLISH without properties; ``prefix`` from :func:`topic_prefix`."""
    first = 0x30 | (qos << 1) | (1 if retain else 0)
    if qos:
        rest = len(prefix) + 3 + len(payload)
        head = bytes((first,)) + varint(rest) if rest >= 128 else bytes((first, rest))
        return b"".join((head, prefix, packet_id.to_bytes(2, "big"), b"\x00", payload))
    rest = len(prefix) + 1 + len(payload)
    head = bytes((first,)) + varint(rest) if rest >= 128 else bytes((first, rest))
    return b"".join((head, prefix, b"\x00", payload))


def mark_dup(packet: bytes) -> bytes:
    """The same PUBLISH with the DUP flag set (a resend after reconnect)."""
    return bytes((packet[0] | 0x08,)) + packet[1:]


def puback_packet(packet_id: int) -> bytes:
    return b"\x40\x02" + packet_id.to_bytes(2, "big")


def pubacks_packet(packet_ids: list[int]) -> bytes:
    """Many PUBACKs (reason: success) in one buffer, for one ``send``."""
    if not packet_ids:
        return b""
    words = array.array("H", [0x4002, 0] * len(packet_ids))
    words[1::2] = array.array("H", packet_ids)
    if sys.byteorder == "little":
        words.byteswap()
    return words.tobytes()


def disconnect_packet(reason: int = 0) -> bytes:
    """DISCONNECT with a reason code (0: normal; the session is kept for its expiry)."""
    return bytes((DISCONNECT, 1, reason)) if reason else DISCONNECT_PACKET


def parse_disconnect(body: bytes) -> int:
    """The reason code of a DISCONNECT from the broker (0 when absent)."""
    return body[0] if body else 0


def parse_suback(body: bytes) -> tuple[int, list[int]]:
    """(packet id, one reason code per filter: >= 0x80 is a refusal)."""
    if len(body) < 3:
        raise ProtocolError("short SUBACK")
    _, pos = parse_properties(body, 2)
    return (body[0] << 8) | body[1], list(body[pos:])


def subscribe_packet(packet_id: int, filters: list[str], qos: int = 1) -> bytes:
    body = packet_id.to_bytes(2, "big") + b"\x00"
    for f in filters:
        body += utf8(f) + bytes((qos,))
    return _packet(SUBSCRIBE, body)


@dataclass(frozen=True)
class Packet:
    """One packet from the broker: fixed-header byte and body."""

    first: int
    body: bytes

    @property
    def kind(self) -> int:
        return self.first & 0xF0


def split_packets(buf: bytearray) -> list[Packet]:
    """Take every complete packet off the front of ``buf`` (the rest stays)."""
    out: list[Packet] = []
    pos, n = 0, len(buf)
    while pos + 2 <= n:
        parsed = read_varint(buf, pos + 1)
        if parsed is None:
            break
        length, start = parsed
        end = start + length
        if end > n:
            break
        out.append(Packet(buf[pos], bytes(buf[start:end])))
        pos = end
    del buf[:pos]
    return out


def parse_properties(body: bytes, pos: int) -> tuple[dict[int, int | bytes], int]:
    """(numeric/binary properties we keep, position after them); skips the rest."""
    try:
        return _parse_properties(body, pos)
    except (struct.error, IndexError) as exc:
        raise ProtocolError(f"truncated properties: {exc}") from None


def _parse_properties(body: bytes, pos: int) -> tuple[dict[int, int | bytes], int]:
    parsed = read_varint(body, pos)
    if parsed is None:
        raise ProtocolError("truncated properties")
    length, pos = parsed
    end = pos + length
    props: dict[int, int | bytes] = {}
    while pos < end:
        pid = body[pos]
        pos += 1
        kind = _PROP_TYPES.get(pid)
        if kind == "b":
            props[pid] = body[pos]
            pos += 1
        elif kind == "h":
            props[pid] = struct.unpack_from("!H", body, pos)[0]
            pos += 2
        elif kind == "i":
            props[pid] = struct.unpack_from("!I", body, pos)[0]
            pos += 4
        elif kind == "v":
            got = read_varint(body, pos)
            if got is None:
                raise ProtocolError("truncated property")
            props[pid], pos = got
        elif kind == "s":
            size = struct.unpack_from("!H", body, pos)[0]
            props[pid] = body[pos + 2 : pos + 2 + size]
            pos += 2 + size
        elif kind == "p":  # user property: two strings, skipped
            for _ in range(2):
                pos += 2 + struct.unpack_from("!H", body, pos)[0]
        else:
            raise ProtocolError(f"unknown property 0x{pid:02x}")
    if pos != end:
        raise ProtocolError("property length mismatch")
    return props, end


@dataclass(frozen=True)
class ConnAck:
    reason: int
    session_present: bool
    props: dict[int, int | bytes] = field(default_factory=dict)

    @property
    def receive_maximum(self) -> int:
        value = self.props.get(PROP_RECEIVE_MAXIMUM, 65535)
        return value if isinstance(value, int) else 65535


def parse_connack(body: bytes) -> ConnAck:
    if len(body) < 2:
        raise ProtocolError("short CONNACK")
    props, _ = parse_properties(body, 2) if len(body) > 2 else ({}, 2)
    return ConnAck(body[1], bool(body[0] & 1), props)


@dataclass(frozen=True)
class Incoming:
    """A PUBLISH from the broker (a command or a desired twin)."""

    topic: str
    payload: bytes
    qos: int
    packet_id: int
    expiry_s: int | None


def parse_publish(first: int, body: bytes) -> Incoming:
    try:
        size = struct.unpack_from("!H", body, 0)[0]
        topic = body[2 : 2 + size].decode()
        pos = 2 + size
        qos = (first >> 1) & 3
        packet_id = 0
        if qos:
            packet_id = struct.unpack_from("!H", body, pos)[0]
            pos += 2
        props, pos = parse_properties(body, pos)
    except (struct.error, UnicodeDecodeError, IndexError) as exc:
        raise ProtocolError(f"bad PUBLISH: {exc}") from None
    expiry = props.get(PROP_MESSAGE_EXPIRY)
    return Incoming(topic, body[pos:], qos, packet_id, expiry if isinstance(expiry, int) else None)


def take_pubacks(buf: bytearray) -> list[int]:
    """Packet ids of the plain PUBACKs (``40 02 id id``) at the front of ``buf``, removed."""
    whole = len(buf) // 4
    if not whole:
        return []
    chunk = bytes(buf[: whole * 4])
    if chunk[0::4] == b"\x40" * whole and chunk[1::4] == b"\x02" * whole:
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


class Publish(NamedTuple):
    """A PUBLISH as :func:`take_packets` returns it (the consumer's hot path)."""

    topic: str
    payload: bytes
    qos: int
    packet_id: int
    expiry_s: int | None


def take_packets(buf: bytearray) -> list[Publish | Packet]:
    """Every complete packet off the front of ``buf``, in order; PUBLISHes already parsed.

    The common PUBLISH (no properties) is parsed inline; one with properties
    (message expiry, subscription id) goes through :func:`parse_properties`.
    """
    out: list[Publish | Packet] = []
    pos, n = 0, len(buf)
    view = bytes(buf)
    try:
        while pos + 2 <= n:
            first = view[pos]
            length = view[pos + 1]
            start = pos + 2
            if length & 0x80:
                parsed = read_varint(view, pos + 1)
                if parsed is None:
                    break
                length, start = parsed
            end = start + length
            if end > n:
                break
            if first & 0xF0 == PUBLISH:
                size = (view[start] << 8) | view[start + 1]
                at = start + 2 + size
                topic = view[start + 2 : at].decode()
                qos = (first >> 1) & 3
                packet_id = 0
                if qos:
                    packet_id = (view[at] << 8) | view[at + 1]
                    at += 2
                expiry = None
                if view[at] == 0:
                    at += 1
                else:
                    props, at = parse_properties(view, at)
                    value = props.get(PROP_MESSAGE_EXPIRY)
                    expiry = value if isinstance(value, int) else None
                if at > end:
                    raise ProtocolError("PUBLISH header longer than the packet")
                out.append(Publish(topic, view[at:end], qos, packet_id, expiry))
            else:
                out.append(Packet(first, view[start:end]))
            pos = end
    except (IndexError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"bad packet: {exc}") from None
    del buf[:pos]
    return out
