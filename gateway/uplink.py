"""Uplink: the outbox to the central broker, batched, acknowledged, live first.

The ``uplink`` thread owns the outbox's uplink side. While the central link is
up it keeps up to ``window`` publishes in flight (our ``uplink_max_inflight``,
never more than the broker's Receive Maximum). Telemetry and events leave in
``_gateway/batch`` envelopes (``contract.codec.encode_batch_parts``: at most
``batch_max_records`` records / ``batch_max_bytes`` of JSON, sent when full or
when the oldest waiting row is ``batch_max_age_ms`` old); ``state``,
``cmd/ack`` and ``twin/reported`` are relayed one to one on their own topics
(``state`` and ``twin/reported`` retained). A relayed single is deleted when
its PUBACK says delivered (:func:`mqttlink.reasons.delivered`). An envelope's
rows are only marked sent on its delivered PUBACK and deleted when the ingest
worker that stored them publishes a storage receipt naming the batch
(``contract.receipts``, on the gateway's own ``_gateway/receipt`` topic, which
:meth:`Uplink.on_receipt` takes); sent batches without a receipt go back to
ready after ``receipt_timeout_s`` (one warning a minute, ``receipt_timeout``)
and after every reconnect, and are sent again. A PUBACK with an error code (e.g. 0x87 not
authorized: the account may not publish there), or 0x10 (no matching
subscribers: no ingest worker took it) for a batch, puts the rows back to ready (``Outbox.reject``,
counted in ``rejected_total`` and the health reading), logs one line a minute
naming the reason, and pauses sending for a backoff delay; nothing is lost.

Live first: when more than two batches are waiting (a backlog after an outage),
each batch carries ``live_share`` of its records from the newest rows and the
rest from the oldest (health, events and state before bulk telemetry). Order
guarantee: every batch lists its records in store order, and with no backlog
batches leave in store order, so each device's readings arrive in order. While
a backlog drains, a device's readings can arrive out of order across batches;
ingest stores each at a timestamp derived from (device time, seq), so the
stored series is in order and duplicates land on the same point.

Each record of an envelope carries the device's model as the gateway knows it
(``models``: the credential updates' and the relayed births'), so ingest tags
its point from the record alone.

The priority lane (clinical readings, :mod:`gateway.outbox_rows`): whenever a
priority row is ready the next batch leaves at once (no ``batch_max_age_ms``
wait) and carries every ready priority row first. Bulk draining leaves the last
slot of the window free for it, and the byte cap (below) does not apply to it:
if the drain must wait, a batch of priority rows only leaves alone.

Byte cap (``uplink_max_bytes_per_s``, 0: off): a token bucket
(:mod:`gateway.rate_cap`) charged with each envelope's compressed payload (and
each relayed single's payload), minus the share of priority-lane rows in it;
a batch that is not priority-only waits while the bucket is in debt.

Records whose row is flagged clock-suspect carry ``"cs":true``
(``contract.messages.BatchRecord``).

paho callbacks (``on_connect``, ``on_puback``, ``on_receipt``) run on the link's
network thread and only set flags or queue what they got.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties

from contract.codec import encode, encode_batch_parts
from contract.messages import State
from contract.receipts import ReceiptError, decode_receipt
from contract.topics import PREFIX, Channel
from gateway.outbox import PRIORITY, Outbox, Row, now_ms
from gateway.pseudonymize import BATCHED
from gateway.rate_cap import TokenBucket
from mqttlink.paho_link import MqttLink
from mqttlink.reasons import NO_MATCHING_SUBSCRIBERS, delivered, reason
from runtime.backoff import Backoff
from runtime.logs import Throttle, kv

log = logging.getLogger(__name__)

RETAINED = frozenset({Channel.STATE.value, Channel.TWIN_REPORTED.value})
GATEWAY_MODEL = "gramlink-gateway"


@dataclass(frozen=True)
class UplinkOptions:
    centre: str
    gateway_id: str
    batch_max_records: int = 1000
    batch_max_bytes: int = 512 * 1024
    batch_max_age_ms: int = 500
    max_inflight: int = 16
    live_share: float = 0.25
    backoff_min_s: float = 0.5
    backoff_max_s: float = 60.0
    receipt_timeout_s: float = 120.0
    max_bytes_per_s: int = 0  # the drain's byte cap; 0: off
    fw: str = "0.1.0"


@dataclass
class UplinkCounters:
    batches_sent: int = 0
    records_acked: int = 0  # relayed singles deleted and envelope rows sent (PUBACK delivered)
    records_receipted: int = 0  # envelope rows deleted on a storage receipt
    receipts: int = 0
    receipt_timeouts: int = 0  # batches sent again because no receipt came in time
    singles_sent: int = 0
    rejected: int = 0
    wire_bytes: int = 0  # PUBLISH packets as sent, MQTT framing included (no resends)
    live_batches: int = 0
    priority_batches: int = 0  # batches that left because a priority row was ready
    priority_records: int = 0
    capped_bytes: int = 0  # payload bytes charged to the byte cap
    extra: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Sent:
    """What a publish in flight carried."""

    rows: list[Row]
    batch: int | None  # the envelope's seq; None for a relayed single
    retain: bool


def publish_packet_bytes(topic: str, payload_len: int) -> int:
    """Bytes of an MQTT v5 QoS 1 PUBLISH without properties, fixed header included."""
    remaining = 2 + len(topic.encode()) + 2 + 1 + payload_len
    length_bytes = (
        1 if remaining < 128 else 2 if remaining < 16384 else 3 if remaining < 2**21 else 4
    )
    return 1 + length_bytes + remaining


def state_topic(centre: str, gateway_id: str) -> str:
    return f"{PREFIX}/{centre}/{gateway_id}/{Channel.STATE.value}"


def gateway_state(online: bool, fw: str) -> bytes:
    return encode(State(online=online, kind="gateway", model=GATEWAY_MODEL, fw=fw, ts=now_ms()))


class Uplink:
    """Moves outbox rows to the central broker; deletes them on PUBACK."""

    def __init__(
        self,
        options: UplinkOptions,
        outbox: Outbox,
        link: MqttLink,
        models: Callable[[str], str | None] = lambda device: None,
    ) -> None:
        self.o = options
        self.models = models
        self.outbox = outbox
        self.link = link
        self.counters = UplinkCounters()
        self.batch_topic = (
            f"{PREFIX}/{options.centre}/{options.gateway_id}/{Channel.GATEWAY_BATCH.value}"
        )
        self._pending: dict[int, _Sent] = {}
        self._acks: queue.SimpleQueue[tuple[int, int]] = queue.SimpleQueue()
        self._receipts: queue.SimpleQueue[list[tuple[int, int]]] = queue.SimpleQueue()
        self._reconnected = threading.Event()
        self._next_expiry = 0.0
        self._throttle = Throttle(log)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._paused_until = 0.0
        self._backoff = Backoff(options.backoff_min_s, options.backoff_max_s)
        self._pending_since: float | None = None
        rate = options.max_bytes_per_s
        self.bucket = TokenBucket(rate)
        self._thread = threading.Thread(target=self._run, name="uplink", daemon=True)
        self.failure: BaseException | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def inflight(self) -> int:
        return len(self._pending)

    def wake(self) -> None:
        self._wake.set()

    def say_offline(self) -> None:
        """Before a clean stop: retained ``online: false`` (a clean DISCONNECT skips the Will)."""
        if self.link.connected.is_set():
            info = self.link.publish(
                state_topic(self.o.centre, self.o.gateway_id),
                gateway_state(False, self.o.fw),
                retain=True,
            )
            info.wait_for_publish(2.0)

    # -- network thread ----------------------------------------------------------------------
    def on_connect(self, client: mqtt.Client, props: Properties | None) -> None:
        self._reconnected.set()  # sent, unreceipted batches go again (the uplink thread)
        client.publish(
            state_topic(self.o.centre, self.o.gateway_id),
            gateway_state(True, self.o.fw),
            qos=1,
            retain=True,
        )
        self._wake.set()

    def on_puback(self, mid: int, code: int) -> None:
        self._acks.put((mid, code))
        self._wake.set()

    def on_receipt(self, payload: bytes) -> None:
        """A storage receipt for this gateway: queued for the uplink thread."""
        try:
            receipt = decode_receipt(payload)
        except ReceiptError as exc:
            self._throttle.warning("receipt_rejected", centre=self.o.centre, error=exc)
            return
        if receipt.gw != self.o.gateway_id:
            self._throttle.warning("receipt_rejected", centre=self.o.centre, error="other gw")
            return
        self._receipts.put(list(receipt.batches()))
        self._wake.set()

    # -- uplink thread -----------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._wake.clear()
                self._drain_acks()
                self._drain_receipts()
                self._expire()
                delay = self._step()
                if delay > 0:
                    self._wake.wait(min(delay, 1.0))  # receipt timeouts are checked each pass
            self._drain_acks()
        except BaseException as exc:  # the outermost loop: the app sees it and exits
            self.failure = exc
            log.exception(kv("uplink_failed", centre=self.o.centre, error=type(exc).__name__))

    def _step(self) -> float:
        """Send at most one batch; returns how long to wait before the next step (0: now)."""
        if not self.link.connected.is_set():
            return 0.2
        now = time.monotonic()
        if now < self._paused_until:
            return self._paused_until - now
        window = max(1, min(self.o.max_inflight, self.link.receive_maximum))
        if len(self._pending) >= window:
            return 0.5
        bulk_window = max(1, window - 1)  # the last slot is the priority lane's
        if self.outbox.priority_ready():
            # The priority lane: no batch age, no byte cap, the reserved slot.
            bulk_ok = len(self._pending) < bulk_window and self.bucket.wait_s(now) == 0
            self._batch(now, priority_only=not bulk_ok)
            return 0.0
        ready = self.outbox.ready_count()
        if ready <= 0:
            self._pending_since = None
            return 0.5
        if self._pending_since is None:
            self._pending_since = now
        age = now - self._pending_since
        max_age = self.o.batch_max_age_ms / 1000
        if ready < self.o.batch_max_records and age < max_age:
            return max_age - age
        if len(self._pending) >= bulk_window:
            return 0.5
        wait = self.bucket.wait_s(now)
        if wait > 0:
            return wait
        self._batch(now, priority_only=False)
        return 0.0

    def _batch(self, now: float, *, priority_only: bool) -> None:
        """Take one batch from the outbox and send it; charge the byte cap for its bulk."""
        backlog = self.outbox.ready_count() > 2 * self.o.batch_max_records
        live = int(self.o.batch_max_records * self.o.live_share) if backlog else 0
        live = 0 if priority_only else live
        seq = self.outbox.next_seq()
        rows = self.outbox.next_batch(
            self.o.batch_max_records,
            self.o.batch_max_bytes,
            live,
            seq,
            BATCHED,
            priority_only=priority_only,
        )
        self._pending_since = now if self.outbox.ready_count() > 0 else None
        if live:
            self.counters.live_batches += 1
        sent = self._send(rows, seq)
        urgent = sum(r.size for r in rows if r.prio == PRIORITY)
        if urgent:
            self.counters.priority_batches += 1
            self.counters.priority_records += sum(1 for r in rows if r.prio == PRIORITY)
        total = sum(r.size for r in rows)
        if total and self.bucket.enabled:
            charge = round(sent * (total - urgent) / total)
            self.bucket.charge(charge, now)
            self.counters.capped_bytes += charge

    def _send(self, rows: list[Row], seq: int) -> int:
        """Publish ``rows`` (singles one by one, the rest in one envelope); payload bytes."""
        batched = [r for r in rows if r.channel in BATCHED]
        sent = 0
        for row in rows:
            if row.channel not in BATCHED:
                topic = f"{PREFIX}/{self.o.centre}/{row.device}/{row.channel}"
                self._publish(topic, row.payload, [row], retain=row.channel in RETAINED)
                self.counters.singles_sent += 1
                sent += len(row.payload)
        if batched:
            model = self.models
            payload = encode_batch_parts(
                self.o.gateway_id,
                seq,
                (
                    (r.channel, r.device, r.payload, r.rx_ms, model(r.device), r.clock_suspect)
                    for r in batched
                ),
            )
            self._publish(self.batch_topic, payload, batched, retain=False, batch=seq)
            self.counters.batches_sent += 1
            sent += len(payload)
        return sent

    def _publish(
        self, topic: str, payload: bytes, rows: list[Row], *, retain: bool, batch: int | None = None
    ) -> None:
        info = self.link.publish(topic, payload, retain=retain)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            # Not taken by paho at all: back to ready, try again later.
            self.outbox.release(rows)
            log.warning(kv("uplink_publish_failed", centre=self.o.centre, rc=info.rc))
            self._paused_until = time.monotonic() + self._backoff.next()
            return
        self.counters.wire_bytes += publish_packet_bytes(topic, len(payload))
        self._pending[info.mid] = _Sent(rows, batch=batch, retain=retain)

    def _drain_acks(self) -> None:
        while True:
            try:
                mid, code = self._acks.get_nowait()
            except queue.Empty:
                return
            sent = self._pending.pop(mid, None)
            if sent is None:
                continue  # the birth message, or a PUBACK after a release
            rows = sent.rows
            if sent.batch is not None and delivered(code):
                # The central broker has it; the rows stay until storage's receipt.
                self.counters.records_acked += self.outbox.sent(sent.batch)
                self._backoff.reset()
                continue
            if delivered(code) or (code == NO_MATCHING_SUBSCRIBERS and sent.batch is None):
                # 0x10 on a relayed single: a retained one is kept by the broker, and a
                # cmd/ack nobody follows must not hold the uplink; only batches need a reader.
                self.outbox.ack(rows)
                self.counters.records_acked += len(rows)
                self._backoff.reset()
                continue
            self.outbox.reject(rows)
            self.counters.rejected += 1
            pause = self._backoff.next()
            self._paused_until = time.monotonic() + pause
            found = reason(code)
            self._throttle.error(
                "uplink_rejected",
                key=f"uplink_rejected:{code}",
                centre=self.o.centre,
                gw=self.o.gateway_id,
                reason=found,
                rows=len(rows),
                kept="yes",
                retry_in_s=f"{pause:.1f}",
                rejected_total=self.outbox.rejected_total,
            )

    def _drain_receipts(self) -> None:
        while True:
            try:
                ranges = self._receipts.get_nowait()
            except queue.Empty:
                return
            self.counters.receipts += 1
            self.counters.records_receipted += self.outbox.receipted(ranges)

    def _expire(self) -> None:
        """Sent batches without a receipt go back to ready: after a reconnect, or timed out."""
        if self._reconnected.is_set():
            self._reconnected.clear()
            back = self.outbox.resend_sent()
            if back.rows:
                log.info(
                    kv(
                        "unreceipted_resent",
                        centre=self.o.centre,
                        gw=self.o.gateway_id,
                        why="reconnect",
                        batches=back.batches,
                        rows=back.rows,
                    )
                )
            return
        now = time.monotonic()
        if now < self._next_expiry:
            return
        self._next_expiry = now + min(1.0, self.o.receipt_timeout_s / 4)
        back = self.outbox.expire(self.o.receipt_timeout_s)
        if back.batches:
            self.counters.receipt_timeouts += back.batches
            self._throttle.warning(
                "receipt_timeout",
                centre=self.o.centre,
                gw=self.o.gateway_id,
                batches=back.batches,
                rows=back.rows,
                timeout_s=f"{self.o.receipt_timeout_s:g}",
                action="sent again",
            )
            self._wake.set()
