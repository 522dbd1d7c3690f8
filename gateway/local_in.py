"""Local intake: device messages from the centre broker into the outbox.

Threads: ``_on_message`` runs on the local link's network thread and only puts
the message on a bounded queue (``ingest_queue`` items). When the queue is full
the put blocks, so the network thread stops reading and the local broker holds
the rest (MQTT flow control): nothing is dropped. The ``ingest`` thread takes
messages off the queue for up to ``commit_window_ms``, decodes and pseudonymises
them, stores them (one SQLite transaction) and only then PUBACKs each one to the
local broker (paho ``manual_ack``). A bad message is quarantined with its reason
and acknowledged; it never holds an in-flight slot. That includes a message
whose handling raised an exception nobody expected (a bug): it is quarantined
as ``internal_error`` (exception type and message), counted
(``internal_errors``) and acknowledged, and the worker goes on with the next
one, instead of dying and being handed the same message again after a restart.

Log lines: ``event=quarantined`` is rate-limited per reason (the first, then one
a minute with ``suppressed=N``); the payload it quotes is cut to 80 bytes,
patient ids redacted, decoded with ``errors="replace"`` and escaped by ``kv``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from contract.admission import Refusal, Refused, internal_error_detail
from contract.codec import DecodeError
from contract.pseudonym import redacted_excerpt
from contract.topics import Topic, TopicError, subscription
from gateway.clock import GatewayClock
from gateway.edge_alerts import EdgeAlerter
from gateway.errors import StoreError
from gateway.outbox import NewRow, Outbox
from gateway.pseudonymize import UPSTREAM, Transformer
from gateway.quarantine import Quarantine, Rejected
from mqttlink.paho_link import MqttLink
from runtime.logs import Throttle, kv

log = logging.getLogger(__name__)

MAX_BATCH = 5000
LOG_PAYLOAD_BYTES = 80


@dataclass(frozen=True, slots=True)
class Incoming:
    topic: str
    payload: bytes
    mid: int
    qos: int
    generation: int
    rx_mono_ns: int  # received (monotonic): wall time is decided when stored


Item = Incoming | NewRow  # a NewRow is the gateway's own reading (health)


class LocalIn:
    """Subscribes on the local broker and feeds the outbox."""

    def __init__(
        self,
        centre: str,
        outbox: Outbox,
        quarantine: Quarantine,
        transformer: Transformer,
        *,
        queue_size: int,
        commit_window_ms: int,
        on_stored: Callable[[], None],
        clock: GatewayClock | None = None,
        own_device: str = "",
        alerter: EdgeAlerter | None = None,
    ) -> None:
        self.centre = centre
        self.outbox = outbox
        self.quarantine = quarantine
        self.transformer = transformer
        self.link: MqttLink | None = None
        self.commit_window = commit_window_ms / 1000
        self.on_stored = on_stored
        self.clock = clock or GatewayClock()
        self.own_device = own_device
        self.alerter = alerter
        self.alert_errors = 0  # edge evaluations that raised (logged; the readings are stored)
        self.clock_steps = 0
        self.queue: queue.Queue[Item] = queue.Queue(maxsize=queue_size)
        self.received_total = 0
        self.stored_total = 0
        self.internal_errors = 0  # messages set aside because handling them raised
        self.last_message_at: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ingest", daemon=True)
        self.failure: BaseException | None = None
        self._throttle = Throttle(log)

    def attach(self, link: MqttLink) -> None:
        self.link = link

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def submit_own(self, row: NewRow) -> None:
        """Queue one of the gateway's own readings (never blocks the caller for long)."""
        self.queue.put(row, timeout=5.0)

    # -- local network thread ---------------------------------------------------------------
    def on_connect(self, client: mqtt.Client, props: Properties | None) -> None:
        """Subscribe (again) to the centre's device channels after every connect."""
        assert self.link is not None
        opts = SubscribeOptions(qos=1)
        self.link.subscribe([(subscription(ch, self.centre), opts) for ch in UPSTREAM])

    def on_message(self, msg: mqtt.MQTTMessage, generation: int) -> None:
        payload = bytes(msg.payload)
        self.queue.put(
            Incoming(msg.topic, payload, msg.mid, msg.qos, generation, time.monotonic_ns())
        )

    # -- ingest thread ---------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._check_clock()
                try:
                    first = self.queue.get(timeout=0.2)
                except queue.Empty:
                    continue
                items = [first]
                deadline = time.monotonic() + self.commit_window
                while len(items) < MAX_BATCH:
                    try:
                        items.append(self.queue.get_nowait())
                    except queue.Empty:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            break
                        try:
                            items.append(self.queue.get(timeout=left))
                        except queue.Empty:
                            break
                self._check_clock()
                self._store(items)
        except BaseException as exc:  # the outermost loop: the app sees it and exits
            self.failure = exc
            log.exception(kv("ingest_failed", centre=self.centre, error=type(exc).__name__))

    def _check_clock(self) -> None:
        """The wall clock stepped: re-base what this process stored (this thread appends)."""
        step = self.clock.check()
        if not step:
            return
        self.clock_steps += 1
        sanity = self.transformer.sanity
        if sanity is not None:
            sanity.moved(step, self.outbox.first_run_this_run)
        ahead = sanity.ahead_ms if sanity is not None and self.clock.synced() else None
        done = self.outbox.rebase(step, self.own_device, ahead)
        log.warning(
            kv(
                "clock_step",
                centre=self.centre,
                step_s=f"{step / 1000:.0f}",
                rebased=done.rows,
                own=done.own,
                clock_suspect=done.flagged,
            )
        )

    def _store(self, items: list[Item]) -> None:
        rows: list[NewRow] = []
        rejected: list[Rejected] = []
        wall_of = self.clock.wall_of
        for item in items:
            if isinstance(item, NewRow):
                rows.append(item)
                continue
            rx_ms = wall_of(item.rx_mono_ns)
            try:
                rows.append(self.transformer.row(Topic.parse(item.topic), item.payload, rx_ms))
            except (DecodeError, Refused) as exc:
                rejected.append(_rejected(item, rx_ms, exc.reason.value, exc.detail))
            except TopicError as exc:
                rejected.append(_rejected(item, rx_ms, "bad_topic", str(exc)))
            except Exception as exc:  # one poison message: set it aside, never stop the worker
                rejected.append(self._internal_error(item, rx_ms, exc))
        self.quarantine.add(rejected)
        rows += self._edge_alerts(rows)
        result = self.outbox.append(rows)
        for r in rejected:
            payload = redacted_excerpt(r.payload, LOG_PAYLOAD_BYTES).decode(errors="replace")
            self._throttle.warning(
                "quarantined",
                key=r.reason,
                centre=self.centre,
                topic=r.topic[:120],
                reason=r.reason,
                detail=r.detail[:160],
                payload=payload,
                quarantined_total=self.quarantine.total,
            )
        if result.evicted or result.refused:
            log.warning(
                kv(
                    "outbox_full",
                    centre=self.centre,
                    evicted=result.evicted,
                    refused=result.refused,
                    dropped_total=self.outbox.dropped_total,
                )
            )
        # Durable now: acknowledge the local broker.
        link = self.link
        for item in items:
            if isinstance(item, Incoming) and item.qos > 0 and link is not None:
                link.ack(item.mid, item.generation)
        incoming = sum(1 for i in items if isinstance(i, Incoming))
        self.received_total += incoming
        self.stored_total += result.stored
        if incoming:
            self.last_message_at = time.monotonic()
        if result.stored:
            self.on_stored()

    def _edge_alerts(self, rows: list[NewRow]) -> list[NewRow]:
        """The edge rules on the accepted readings: their alerts' priority rows."""
        if self.alerter is None:
            return []
        try:
            return self.alerter.observe(rows)
        except StoreError:
            raise  # the disk: the worker stops, as for the outbox
        except Exception as exc:  # a bug in evaluation must not stop the readings
            self.alert_errors += 1
            self._throttle.error(
                "edge_alert_failed",
                key="edge_alert_failed",
                centre=self.centre,
                error=internal_error_detail(exc),
                alert_errors=self.alert_errors,
            )
            return []

    def _internal_error(self, item: Incoming, rx_ms: int, exc: Exception) -> Rejected:
        self.internal_errors += 1
        detail = internal_error_detail(exc)
        if self._throttle.error(
            "internal_error",
            key="internal_error_traceback",
            centre=self.centre,
            topic=item.topic[:120],
            error=detail,
            action="quarantined_acked",
            internal_errors=self.internal_errors,
        ):
            log.error(kv("internal_error_traceback", centre=self.centre), exc_info=exc)
        return _rejected(item, rx_ms, Refusal.INTERNAL_ERROR.value, detail)


def _rejected(item: Incoming, rx_ms: int, reason: str, detail: str) -> Rejected:
    return Rejected(rx_ms, reason, item.topic, detail, item.payload)
