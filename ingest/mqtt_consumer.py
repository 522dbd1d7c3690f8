"""Ingest's MQTT side: one persistent MQTT v5 session (``mqttlink.session``) on its own thread.

Why not paho: with manual acknowledgements paho reads one packet per
``select()`` and sends every PUBACK on its own (docs/architecture.md, "One MQTT
session layer", for the numbers). Here one network thread reads the socket in
large chunks into the session's bounded inbox, decodes every complete packet of
a chunk with ``mqtt5`` and hands the data messages of one chunk to the decode
thread as one list; the acknowledgements of a stored batch go out in one
``send`` from the writer thread.

- fixed client id, clean start off, session expiry, Receive Maximum, our
  Maximum Packet Size: the broker should never have more than ``receive_maximum``
  unacknowledged QoS 1 messages in flight to us (Mosquitto 2.0.11 may: the
  bounded inbound queue below is what holds memory); a restarted worker gets
  what was queued while it was down;
- ``mqtts://``: TLS verified against ``mqtt_ca_file`` (else the system's CAs),
  optional client certificate; a broker certificate the CA did not sign stops
  the worker (exit 2, one line naming GRAMLINK_INGEST_MQTT_CA_FILE);
- the shared data subscriptions ``$share/<group>/...`` plus the unshared
  ``state`` subscription (births are parsed here, acknowledged at once);
- acknowledgements in the order batches were formed (the worker orders them);
- storage receipts to gateways (:meth:`RawSubscriber.publish_many`, QoS 1, one
  ``send``): their PUBACKs free the packet ids; a receipt the broker did not
  deliver (0x10: the gateway has no session; 0x87: the account may not publish
  receipts) is counted and logged once a minute, never resent (the gateway sends
  the batch again after its receipt timeout, which brings a new receipt); the
  ids of an earlier connection are freed at the next connect;
- subscriptions made again on every connect, whether or not the broker says the
  session is present (Mosquitto restores a persistent session's plain
  subscriptions after a restart, but not its shared ones);
  a late one for an earlier connection (``generation``) is dropped, because the
  broker redelivers the message and packet ids are reused;
- PINGREQ every keepalive/2; no PINGRESP within the keepalive drops the connection;
- lost connection: reconnect with jittered backoff, 1 s doubling to 30 s;
  a permanent refusal (CONNACK, SUBACK, DISCONNECT by value: ``mqttlink.reasons``;
  a session taken over by another worker with our client id) stops the worker:
  :attr:`RawSubscriber.refusal` holds its exit code and its one line;
- anything else the network thread raises is a bug: logged once with its
  traceback (``event=mqtt_thread_failed``), named in :attr:`RawSubscriber.failure`,
  and the worker exits 1 at once (not after ``mqtt_down_exit_s`` as if the
  broker were down).

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
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Final

import mqtt5

from contract.codec import MAX_BATCH_BYTES
from ingest.batcher import Ack
from ingest.points import ModelCache
from ingest.settings import IngestSettings
from ingest.subscriber import STATE_SUFFIX, Inbound, parse_state, subscription_filters
from mqttlink.endpoint import tls_context
from mqttlink.inbox import InboxError
from mqttlink.reasons import Refusal, reason
from mqttlink.session import (
    CONNECT_TIMEOUT_S,
    Dropped,
    Refused,
    Session,
    SessionOptions,
    pubacks,
)
from mqttlink.transport import Connection, certificate_refusal, open_blocking
from runtime.backoff import Backoff
from runtime.logs import Throttle, kv

log = logging.getLogger("ingest.mqtt")
INBOUND_CHUNKS: Final = 64
TICK_S: Final = 0.25
BACKOFF_MIN_S: Final = 1.0
BACKOFF_MAX_S: Final = 30.0
# Our Maximum Packet Size: an envelope the contract still reads, with room to quarantine
# one up to twice as large (TOO_LARGE); the broker drops anything larger for us.
MAX_PACKET_BYTES: Final = 2 * MAX_BATCH_BYTES
PublishPacket = mqtt5.PublishPacket
PubAckPacket = mqtt5.PubAckPacket


class RawSubscriber:
    """One persistent MQTT v5 session feeding ``inbound`` with lists of :class:`Inbound`."""

    def __init__(
        self,
        settings: IngestSettings,
        models: ModelCache,
        on_receipt_acked: Callable[[bool], None] | None = None,
    ) -> None:
        self.settings = settings
        self._on_receipt_acked = on_receipt_acked
        self._publishing: set[int] = set()  # packet ids of our receipts awaiting PUBACK
        self._throttle = Throttle(log)
        self.models = models
        self.inbound: queue.Queue[list[Inbound]] = queue.Queue(maxsize=INBOUND_CHUNKS)
        self.refusal: Refusal | None = None
        self.failure: str | None = None  # the network thread raised (a bug): the worker ends
        self.generation = 0
        self.down_since: float | None = time.monotonic()
        self.endpoint = settings.endpoint
        # TlsFileError (a file named by a setting) propagates: the worker does not start.
        self._tls = tls_context(settings.tls_files()) if self.endpoint.tls else None
        self._lock = threading.Lock()  # guards _sock, generation, down_since, sends
        self._sock: Connection | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mqtt", daemon=True)
        self._rng = random.Random()
        password = settings.mqtt_password.get_secret_value() if settings.mqtt_password else None
        self.session = Session(
            SessionOptions(
                client_id=settings.client_id,
                what="ingest",
                url=str(self.endpoint),
                names=settings.setting_names(),
                username=settings.mqtt_username or None,
                password=password if settings.mqtt_username else None,
                keepalive_s=settings.keepalive_s,
                session_expiry_s=settings.session_expiry_s,
                receive_maximum=settings.receive_maximum,
                max_packet_size=MAX_PACKET_BYTES,
            )
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

    @property
    def subscribed(self) -> bool:
        return self.session.subscribed

    def ack(self, ack: Ack) -> bool:
        return self.ack_many([ack]) == 1

    def ack_many(self, acks: Iterable[Ack]) -> int:
        """Acknowledge messages in one write; those of an earlier connection are dropped."""
        with self._lock:
            sock, generation = self._sock, self.generation
            if sock is None or self.down_since is not None:
                return 0
            ids = [mid for mid, made_on in acks if made_on == generation]
            if ids:
                self._send(sock, pubacks(ids))
            return len(ids)

    def publish_many(self, messages: Sequence[tuple[str, bytes]]) -> int:
        """Publish ``(topic, payload)`` at QoS 1 in one write; how many went out.

        None while disconnected, and none past the broker's Receive Maximum.
        """
        session = self.session
        with self._lock:
            sock = self._sock
            if sock is None or self.down_since is not None:
                return 0
            room = session.broker_receive_maximum - len(self._publishing)
            data = []
            for topic, payload in messages[: max(room, 0)]:
                pid = session.ids.take()
                self._publishing.add(pid)
                data.append(session.publish(topic, payload, 1, pid))
            if data:
                self._send(sock, b"".join(data))
            return len(data)

    def _puback(self, packet: mqtt5.PubAckPacket) -> None:
        """The broker answered one of our receipts (network thread)."""
        pid, code, ok = self.session.puback(packet)
        with self._lock:
            if pid not in self._publishing:
                return
            self._publishing.discard(pid)
        self.session.ids.release(pid)
        if not ok:
            self._throttle.warning(
                "receipt_undelivered",
                key=f"receipt_undelivered:{code}",
                reason=reason(code),
                effect="the gateway sends the batch again after its receipt timeout",
            )
        if self._on_receipt_acked is not None:
            self._on_receipt_acked(ok)

    def _send(self, sock: Connection, data: bytes) -> None:
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
        client_id = self.settings.client_id
        while not self._stop.is_set():
            sock: Connection | None = None
            try:
                sock = open_blocking(self.endpoint, self._tls, CONNECT_TIMEOUT_S)
                if self._connection(sock):
                    backoff.reset()
            except Refused as exc:
                self.refusal = exc.refusal
            except ssl.SSLCertVerificationError as exc:
                names = self.settings.setting_names()
                self.refusal = certificate_refusal("ingest", str(self.endpoint), names, exc)
            except (OSError, Dropped, InboxError) as exc:
                log.warning(kv("mqtt_disconnected", error=exc, client_id=client_id))
            except Exception as exc:
                log.exception(kv("mqtt_thread_failed", error=type(exc).__name__))
                self.failure = f"ingest: the MQTT thread failed: {type(exc).__name__}: {exc}"
            finally:
                self._down(sock)
            if self.refusal is not None or self.failure is not None:
                return  # the worker stops and logs its one line (ingest_stopped)
            if self._stop.is_set():
                return
            wait = backoff.next()
            log.info(kv("mqtt_reconnect_in", seconds=f"{wait:.1f}"))
            self._stop.wait(wait)

    def _down(self, sock: Connection | None) -> None:
        with self._lock:
            if self.down_since is None:
                self.down_since = time.monotonic()
            self._sock = None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

    def _connection(self, sock: Connection) -> bool:
        """One connection until it drops or the worker stops; True if CONNACK accepted us."""
        session = self.session
        sock.settimeout(TICK_S)
        sock.sendall(session.start())
        accepted = False
        try:
            while not self._stop.is_set():
                got = self._fill(sock)
                if got == 0:
                    session.closed(time.monotonic(), by_broker=True)  # Refused: taken over
                    raise Dropped("connection closed by the broker")
                if got:
                    chunk: list[Inbound] = []
                    generation = self.generation
                    for packet in session.inbox.packets():
                        if type(packet) is PublishPacket:  # the hot path, inline
                            topic, pid = packet.topic, packet.packet_id
                            if topic.endswith(STATE_SUFFIX):
                                self._state(sock, packet)
                            elif pid is None:
                                chunk.append((topic, packet.payload, None))
                            else:
                                chunk.append((topic, packet.payload, (pid, generation)))
                        elif type(packet) is PubAckPacket:
                            self._puback(packet)
                        elif not accepted:
                            session.control(packet)
                            if session.connected:
                                accepted = True
                                self._online(sock)
                                generation = self.generation
                        else:
                            session.control(packet)
                    if chunk:
                        self._hand_over(sock, chunk)
                ping = session.tick(time.monotonic())
                if ping:
                    with self._lock:
                        self._send(sock, ping)
        except InboxError as exc:
            with self._lock, contextlib.suppress(OSError):
                sock.sendall(session.disconnect(exc.reason))
            raise
        finally:
            session.closed(time.monotonic(), by_broker=False)
        with self._lock, contextlib.suppress(OSError):
            sock.sendall(session.disconnect())
        return accepted

    def _fill(self, sock: Connection) -> int | None:
        """Read what is there (None: nothing within a tick; 0: closed). Over TLS one read
        takes every record received (:class:`mqttlink.tls_pipe.TlsPipe`)."""
        try:
            return self.session.inbox.recv_from(sock)
        except TimeoutError:
            return None

    def _online(self, sock: Connection) -> None:
        session = self.session
        with self._lock:
            self.generation += 1
            self.down_since = None
            self._sock = sock
            for pid in self._publishing:  # receipts of an earlier connection: never resent
                session.ids.release(pid)
            self._publishing.clear()
            # Always, session present or not: a broker restart keeps plain subscriptions
            # of a persistent session but drops its shared ones.
            self._send(sock, session.subscribe(subscription_filters(self.settings)))
        log.info(
            kv(
                "mqtt_connected",
                client_id=self.settings.client_id,
                session_present=session.session_present,
                generation=self.generation,
                tls=self.endpoint.tls,
            )
        )

    def _hand_over(self, sock: Connection, chunk: list[Inbound]) -> None:
        """Queue one chunk; while the queue is full, stop reading but keep pinging."""
        try:
            self.inbound.put_nowait(chunk)
            return
        except queue.Full:
            pass
        session = self.session
        while not self._stop.is_set():
            ping = session.tick(time.monotonic(), reading=False)
            if ping:
                with self._lock:
                    self._send(sock, ping)
            try:
                self.inbound.put(chunk, timeout=TICK_S)
                break
            except queue.Full:
                continue
        session.not_reading()  # its PINGRESP may still be unread behind the backlog

    def _state(self, sock: Connection, msg: mqtt5.PublishPacket) -> None:
        """A retained birth: remember the model, acknowledge at once."""
        parse_state(self.models, msg.topic, msg.payload)
        if msg.packet_id is not None:
            with self._lock:
                self._send(sock, pubacks([msg.packet_id]))
