"""The receive side of a raw MQTT connection: one bounded buffer, packets decoded by ``mqtt5``.

A socket is read in large chunks straight into the free tail of a fixed
``bytearray`` (``recv_into``, no copy); :meth:`Inbox.packets` decodes every
complete packet in it with ``mqtt5.read`` over a ``memoryview``. Only the
partial packet left at the end is ever moved (to the front, once the tail has
less than a read's worth of room), so bytes are not re-copied on each read.

Bound: the buffer holds at most ``max_packet_size`` (our Maximum Packet Size,
sent in CONNECT) plus one read. A packet larger than ``max_packet_size``,
complete or not, raises :class:`PacketTooLarge` (the caller disconnects with
0x95); bytes that are not MQTT v5 raise :class:`MalformedPacket` (0x81).
``mqtt5.read`` raises ``IndexError`` for a packet that is not complete yet and
``ValueError`` for one that is malformed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import mqtt5

if TYPE_CHECKING:
    from mqttlink.transport import Connection

READ_BYTES: Final = 256 * 1024
HEADER_BYTES: Final = 5  # fixed header: type byte + at most 4 length bytes


class InboxError(ValueError):
    """Bytes from the broker we refuse; ``reason`` is the DISCONNECT reason code to send."""

    reason = 0x81


class MalformedPacket(InboxError):
    reason = 0x81


class PacketTooLarge(InboxError):
    reason = 0x95


class Inbox:
    """A fixed receive buffer for one connection (reset with :meth:`clear` on each connect)."""

    def __init__(self, max_packet_size: int, read_bytes: int = READ_BYTES) -> None:
        self.max_packet_size = max_packet_size
        self.read_bytes = read_bytes
        self._buf = bytearray(max_packet_size + HEADER_BYTES + read_bytes)
        self._view = memoryview(self._buf)
        self._start = 0
        self._end = 0

    @property
    def capacity(self) -> int:
        return len(self._buf)

    @property
    def buffered(self) -> int:
        return self._end - self._start

    def clear(self) -> None:
        self._start = self._end = 0

    def recv_from(self, sock: Connection) -> int:
        """One ``recv_into`` into the free tail; the byte count (0: the peer closed)."""
        if len(self._buf) - self._end < self.read_bytes:
            self._compact()
        n = sock.recv_into(self._view[self._end :])
        self._end += n
        return n

    def feed(self, data: bytes) -> None:
        """Append bytes (tests and callers that read elsewhere)."""
        if len(self._buf) - self._end < len(data):
            self._compact()
            if len(self._buf) - self._end < len(data):
                raise PacketTooLarge(f"more than {self.max_packet_size} bytes buffered")
        self._buf[self._end : self._end + len(data)] = data
        self._end += len(data)

    def packets(self) -> list[mqtt5.Packet]:
        """Every complete packet buffered, in order; a partial one stays for the next read."""
        out: list[mqtt5.Packet] = []
        view, pos, end = self._view, self._start, self._end
        read, limit = mqtt5.read, self.max_packet_size
        while pos < end:
            try:
                packet, size = read(view[pos:end])
            except IndexError:  # not complete yet
                if end - pos > limit + HEADER_BYTES:
                    raise PacketTooLarge(f"a packet over {limit} bytes") from None
                break
            except ValueError as exc:
                raise MalformedPacket(str(exc)) from None
            if size > limit:
                raise PacketTooLarge(f"a packet of {size} bytes > {limit}")
            out.append(packet)
            pos += size
        if pos == end:
            self._start = self._end = 0
        else:
            self._start = pos
        return out

    def _compact(self) -> None:
        """Move the partial packet at ``_start`` to the front of the buffer."""
        start, end = self._start, self._end
        if start:
            self._buf[: end - start] = bytes(self._view[start:end])  # may overlap: copy
            self._start, self._end = 0, end - start
