"""The raw client's send side: one output buffer, the in-flight window and the pending queue.

Any thread may publish (the scheduler's readings, command workers' acks, the
network thread's births); one lock guards everything here. Buffers and policy:

- in flight: at most ``window`` = min(max_inflight, the broker's Receive
  Maximum) QoS 1 PUBLISHes without PUBACK; readings may use all but a small
  reserve (for births, acks, twin echoes); unacknowledged ones are resent with
  the DUP flag after a reconnect;
- pending: while disconnected or the window is full, up to ``max_queued``
  messages wait in order; when full, new readings are refused (the caller
  counts them dropped: keep the oldest, drop the newest); QoS 0 while
  disconnected is refused;
- output: PUBLISH packets (encoded by ``mqtt5`` through the link's
  :class:`~mqttlink.session.Session`, packet ids from its allocator, so a
  SUBSCRIBE never takes one in flight) are appended to one buffer and written in
  chunks of about ``FLUSH_BYTES`` (or at once for control messages); a socket
  that is full (TCP or TLS) asks the network loop for writability and the loop
  finishes the write;
- a PUBACK frees its slot and completes the message whatever its reason code
  (the broker took it; a load generator does not resend); one that did not
  deliver (``mqttlink.reasons.delivered``: 0x10 nobody subscribed, or a failure
  such as 0x87) is also counted by code in ``undelivered``; a message over the
  broker's Maximum Packet Size is refused like a full queue.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Final

from mqttlink.session import Session, TooLarge
from mqttlink.transport import WANT_IO

FLUSH_BYTES: Final = 64 * 1024
CONTROL_RESERVE: Final = 32  # window slots kept for births, acks, twin echoes (at most 1/4)


def reading_limit(window: int) -> int:
    """How much of the in-flight window readings may use; the rest is for control messages."""
    return max(1, window - min(CONTROL_RESERVE, window // 4))


class Outbox:
    """Send-side state of one raw connection."""

    def __init__(
        self,
        session: Session,
        max_inflight: int,
        max_queued: int,
        want_write: Callable[[bool], None],
        on_write_error: Callable[[str], None],
    ) -> None:
        self.session = session
        self.max_inflight = max_inflight
        self.max_queued = max_queued
        self.want_write = want_write  # ask the loop for (or stop asking for) writability
        self.on_write_error = on_write_error  # called off-lock by the loop: drop the connection
        self.connected = False
        self.messages = 0  # publishes accepted (under the lock)
        self.completed = 0  # PUBACKed (QoS 1) or put in the buffer (QoS 0) (under the lock)
        self.last_write = 0.0
        self.lock = threading.Lock()
        self.out = bytearray()
        # packet id -> (topic, payload, retain) of a QoS 1 PUBLISH (insertion = send order)
        self._inflight: dict[int, tuple[str, bytes, bool]] = {}
        # (topic, payload, qos, retain) waiting for a connection or room in the window
        self._pending: deque[tuple[str, bytes, int, bool]] = deque()
        self.undelivered: dict[int, int] = {}  # PUBACK reason code -> count (under the lock)
        self.window = max_inflight  # until CONNACK says the broker's Receive Maximum
        self._limit = reading_limit(max_inflight)
        self._room = threading.Event()
        self._room.set()
        self._sock: socket.socket | None = None

    # --- any thread --------------------------------------------------------------------------
    def send_reading(self, topic_: str, payload: bytes, qos: int) -> bool:
        """Publish a reading; False (nothing kept) when it has to be dropped."""
        with self.lock:
            if self.connected and not self._pending and len(self._inflight) < self._limit:
                if not self._emit(topic_, payload, qos, False):
                    return False
                if len(self._inflight) >= self._limit:
                    self._room.clear()
                if len(self.out) >= FLUSH_BYTES:
                    self.flush_locked()
                return True
            if self.connected:
                self._room.clear()  # the scheduler waits until the pending ones are in flight
            if qos == 0 or len(self._pending) >= self.max_queued:
                return False
            self._pending.append((topic_, payload, qos, False))
            return True

    def send(self, topic_: str, payload: bytes, qos: int, retain: bool) -> bool:
        """Births, acks, events: sent at once (may use the reserve), else queued; False: dropped."""
        with self.lock:
            if self.connected and len(self._inflight) < self.window:
                sent = self._emit(topic_, payload, qos, retain)
                self.flush_locked()
                return sent
            if qos and len(self._pending) < self.max_queued:
                self._pending.append((topic_, payload, qos, retain))
                return True
            return False

    def wait_room(self, stop: threading.Event, timeout: float = 1.0) -> bool:
        """Backpressure: wait until the broker acknowledged enough of the window."""
        if self._room.is_set():
            return True
        self.flush()
        self._room.wait(timeout)
        return self._room.is_set() and not stop.is_set()

    def flush(self) -> None:
        if self.out:
            with self.lock:
                self.flush_locked()

    @property
    def outstanding(self) -> int:
        return len(self._inflight) + len(self._pending)

    # --- the network thread --------------------------------------------------------------------
    def attach(self, sock: socket.socket | None) -> None:
        """The TCP connection was made (or is gone: None); output is written from now on."""
        with self.lock:
            self._sock = sock
            if sock is None:
                self.connected = False
                self.out.clear()  # unacknowledged QoS 1 stays in flight and is resent

    def online(self, receive_maximum: int, first: bytes, births: list[tuple[str, bytes]]) -> None:
        """CONNACK accepted: ``first`` (SUBSCRIBE), resends with DUP, births, then pending."""
        with self.lock:
            self.window = max(1, min(self.max_inflight, receive_maximum))
            self._limit = reading_limit(self.window)
            self.connected = True
            self.out += first
            publish = self.session.publish
            for pid, (topic_, payload, retain) in self._inflight.items():
                self.out += publish(topic_, payload, 1, pid, retain=retain, dup=True)
            for topic_, payload in reversed(births):
                self._pending.appendleft((topic_, payload, 1, True))
            self._pump()
            self.flush_locked()

    def acked(self, packet_ids: list[int], refused: Sequence[tuple[int, int]] = ()) -> None:
        """PUBACKs: ``packet_ids`` delivered, ``refused`` (id, reason code) not delivered."""
        with self.lock:
            inflight, release = self._inflight, self.session.ids.release
            for pid in packet_ids:
                if inflight.pop(pid, None) is not None:
                    release(pid)
                    self.completed += 1
            for pid, code in refused:
                if inflight.pop(pid, None) is not None:
                    release(pid)
                    self.completed += 1
                    self.undelivered[code] = self.undelivered.get(code, 0) + 1
            self._pump()
            self.flush_locked()

    def control(self, packet: bytes) -> None:
        """PUBACK for a command, PINGREQ: out with the next write."""
        with self.lock:
            self.out += packet
            self.flush_locked()

    def goodbye(self, wills: list[tuple[str, bytes]], disconnect: bytes) -> bytes:
        """Everything left to write at a clean stop: offline states (not counted) and DISCONNECT."""
        with self.lock:
            for topic_, payload in wills:
                pid = self.session.ids.take()
                self.out += self.session.publish(topic_, payload, 1, pid, retain=True)
            self.out += disconnect
            data = bytes(self.out)
            self.out.clear()
            self.connected = False
            return data

    # --- lock held -----------------------------------------------------------------------------
    def _emit(self, topic_: str, payload: bytes, qos: int, retain: bool) -> bool:
        """Encode into the output buffer; False if the broker would refuse its size."""
        session = self.session
        try:
            if qos:
                pid = session.ids.take()
                try:
                    packet = session.publish(topic_, payload, 1, pid, retain=retain)
                except TooLarge:
                    session.ids.release(pid)
                    raise
                self._inflight[pid] = (topic_, payload, retain)
            else:
                packet = session.publish(topic_, payload, 0, None, retain=retain)
                self.completed += 1
        except TooLarge:
            return False
        self.out += packet
        self.messages += 1
        return True

    def _pump(self) -> None:
        """Move pending messages into the window."""
        pending, limit = self._pending, self._limit
        while pending and len(self._inflight) < limit:
            topic_, payload, qos, retain = pending.popleft()
            self._emit(topic_, payload, qos, retain)
        if len(self._inflight) < max(1, limit // 2) and not pending:
            self._room.set()

    def flush_locked(self) -> None:
        sock = self._sock
        if sock is None or not self.connected:
            return
        out = self.out
        while out:
            try:
                sent = sock.send(out)
            except WANT_IO:  # the socket (or TLS) is full: the loop finishes the write
                self.want_write(True)
                return
            except OSError as exc:
                self.on_write_error(f"write failed: {exc}")
                return
            del out[:sent]
            self.last_write = time.monotonic()
