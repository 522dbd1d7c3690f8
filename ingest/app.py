"""The composition root of one ingest worker: ``run(settings)``.

Threads: the MQTT network thread (``mqtt_consumer``), this decode thread
(turns messages into lines, fills batches), ``write_concurrency`` writer
threads (one InfluxDB connection each, so decoding overlaps writing).
Acknowledgements go out in the order batches were formed, each only after its
whole batch was stored; with them, one storage receipt per gateway
(``contract.receipts``, QoS 1 on the same session) names every gateway envelope
of the batches just stored, so the gateway may delete those rows.

Bounds: the inbound queue (chunks of messages: see the subscriber modules); at most
``write_concurrency`` batches being written plus the one being filled, each
about ``batch_size`` lines; when all writers are busy (InfluxDB slow or down),
decoding waits, nothing is acknowledged, and the broker keeps the rest.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from contract.receipts import encode_receipt, receipt_topic
from ingest.batcher import Batch, Batcher
from ingest.delivery import Delivery, Stopped
from ingest.errors import ConfigError, StorageMissing, WriteFatal
from ingest.identity import identity
from ingest.metrics import IngestMetrics
from ingest.mqtt_consumer import RawSubscriber
from ingest.points import ModelCache, PointBuilder
from ingest.quarantine import QuarantineLines
from ingest.sequences import SequenceLedger
from ingest.settings import IngestSettings
from ingest.storage import check as check_storage
from ingest.subscriber import Inbound
from ingest.writers import Writer
from runtime.collector import settle
from runtime.exits import ExitCode
from runtime.logs import kv

log = logging.getLogger("ingest")
DRAIN_S = 15.0
# The garbage collector, tuned for the decode thread: an envelope's JSON becomes
# thousands of dicts alive at once, and with CPython's default threshold (700
# container allocations) a generation-0 pass runs every few readings and walks
# them all. Measured on the worker with envelopes (docs/performance.md, ingest):
# 700: 8.1 µs CPU per reading, peak RSS 70 MB; 10,000: 7.4 µs, 88 MB;
# 50,000: 7.2 µs, 119 MB. 10,000 takes most of the gain for little memory.
GC_THRESHOLDS = (10_000, 10, 10)


def make_writer(settings: IngestSettings) -> Writer:
    if settings.writer == "v2":
        from ingest.writers.v2 import V2Writer

        return V2Writer(settings)
    from ingest.writers.v1 import V1Writer

    return V1Writer(settings)


class Worker:
    def __init__(
        self,
        settings: IngestSettings,
        writer_factory: Callable[[IngestSettings], Writer] = make_writer,
    ) -> None:
        self.settings = settings
        self.metrics = IngestMetrics(settings.client_id)
        self.models = ModelCache(settings.model_cache_size)
        self.quarantine = QuarantineLines()
        self.stop = threading.Event()
        self.abort = threading.Event()
        self.fatal: str | None = None  # the one line the worker stops with
        self.exit_code = ExitCode.OK
        self.subscriber = RawSubscriber(
            settings,
            self.models,
            on_receipt_acked=lambda ok: self.metrics.receipts.labels(
                "delivered" if ok else "undelivered"
            ).inc(),
        )
        self._carry: list[Inbound] = []  # the rest of a chunk that did not fit a batch
        self.batcher = Batcher(settings.batch_size, settings.batch_age_ms / 1000)
        self.builder = PointBuilder(
            self.models,
            self.quarantine,
            max_age_s=settings.max_age_s,
            max_future_s=settings.max_future_s,
            on_quarantine=lambda reason: self.metrics.quarantined.labels(reason).inc(),
            on_envelope=self.batcher.add_envelope,
        )
        self.delivery = Delivery(
            self.metrics,
            self.quarantine,
            self.abort,
            retry_initial_s=settings.retry_initial_s,
            retry_max_s=settings.retry_max_s,
        )
        self.metrics.subscribed.set_function(lambda: float(self.subscriber.subscribed))
        self.sequences = SequenceLedger(settings.client_id)
        self.sequences.register(self.metrics.registry)
        self._reporting = threading.Event()  # a report job is queued: never more than one
        self._slots = threading.Semaphore(settings.write_concurrency)
        self._local = threading.local()
        self._writers: list[Writer] = []
        self._writer_factory = writer_factory
        self._pool = ThreadPoolExecutor(settings.write_concurrency, thread_name_prefix="writer")
        self._done: dict[int, Batch] = {}
        self._next_ack = 0
        self._ack_lock = threading.Lock()

    # --- writer threads ---------------------------------------------------------

    def _writer(self) -> Writer:
        writer: Writer | None = getattr(self._local, "writer", None)
        if writer is None:
            writer = self._writer_factory(self.settings)
            self._local.writer = writer
            self._writers.append(writer)
        return writer

    def _write(self, batch: Batch) -> None:
        try:
            refused = self.delivery.deliver(self._writer(), batch.lines)
        except Stopped:
            return
        except WriteFatal as exc:
            self._fail(f"InfluxDB refused the write for good: {exc}", ExitCode.INTERNAL)
            return
        except Exception as exc:  # outermost loop of a writer thread
            log.exception(kv("writer_crashed", error=exc))
            self._fail(f"writer crashed: {exc}", ExitCode.INTERNAL)
            return
        finally:
            self._slots.release()
        self.sequences.note(batch.notes, refused)
        self._acknowledge(batch)

    def _fail(self, line: str, code: ExitCode) -> None:
        """Stop the worker with ``line`` and ``code`` (the first failure wins)."""
        if self.fatal is None:
            self.fatal, self.exit_code = line, code
        self.stop.set()
        self.abort.set()

    def _acknowledge(self, batch: Batch) -> None:
        with self._ack_lock:
            self._done[batch.seqno] = batch
            stored: dict[tuple[str, str], list[int]] = {}
            while self._next_ack in self._done:
                ready = self._done.pop(self._next_ack)
                self._next_ack += 1
                self.metrics.unacked.dec(len(ready.acks))  # before: new ones follow the acks
                if ready.acks:
                    self.subscriber.ack_many(ready.acks)
                for envelope in ready.envelopes:
                    stored.setdefault((envelope.centre, envelope.gw), []).append(envelope.seq)
            if stored:
                self._receipt(stored)

    def _receipt(self, stored: dict[tuple[str, str], list[int]]) -> None:
        """One receipt per gateway for the envelopes of this write round."""
        messages = [
            (receipt_topic(centre, gw), encode_receipt(gw, seqs))
            for (centre, gw), seqs in stored.items()
        ]
        sent = self.subscriber.publish_many(messages)
        receipts = self.metrics.receipts
        receipts.labels("sent").inc(sent)
        if sent < len(messages):  # not connected: the gateway sends the batch again later
            receipts.labels("skipped").inc(len(messages) - sent)

    def _report_sequences(self) -> None:
        try:
            self.sequences.flush(self._writer().write)
        finally:
            self._reporting.clear()

    # --- decode thread ------------------------------------------------------------

    def _flush(self) -> None:
        batch = self.batcher.take()
        if not self._slots.acquire(blocking=False):  # every writer busy: wait, counted
            mark = time.monotonic()
            while True:
                free = self._slots.acquire(timeout=0.5)
                now = time.monotonic()
                self.metrics.writer_wait.inc(now - mark)  # as it goes: an outage shows
                mark = now
                if free:
                    break
                if self.abort.is_set():
                    return
        self.metrics.batch_lines.observe(len(batch.lines))
        self._pool.submit(self._write, batch)

    def _consume(self, chunk: list[Inbound]) -> None:
        """Convert a chunk of messages and whatever else is already queued, up to a full batch.

        What does not fit the batch waits in ``_carry`` for the next one.
        """
        inbound = self.subscriber.inbound
        convert, batcher = self.builder.convert, self.batcher
        out, notes, acks = batcher.lines, batcher.notes, batcher.acks  # the batch's own lists
        max_lines = batcher.max_lines
        count = unacked = readings = 0
        while True:
            for i, (topic, payload, ack) in enumerate(chunk):
                readings += convert(topic, payload, out, notes)
                if ack is not None:
                    acks.append(ack)
                    unacked += 1
                if len(out) >= max_lines:  # Batcher.full()
                    count += i + 1
                    self._carry = chunk[i + 1 :]
                    break
            else:
                count += len(chunk)
                try:
                    chunk = inbound.get_nowait()
                except queue.Empty:
                    break
                continue
            break
        metrics = self.metrics
        metrics.messages.inc(count)
        metrics.readings.inc(readings)
        metrics.unacked.inc(unacked)
        metrics.last_message = time.monotonic()

    def run(self) -> int:
        s = self.settings
        try:
            self.metrics.serve(s.metrics_port or 0, s.metrics_addr)
        except OSError as exc:  # another process has the port: a setting to change
            raise ConfigError(
                f"setting GRAMLINK_INGEST_METRICS_PORT (--metrics-port): "
                f"{s.metrics_addr}:{s.metrics_port}: {exc.strerror}"
            ) from exc
        self.subscriber.start()
        log.info(kv("ingest_started", client_id=s.client_id, writer=s.writer, influx=s.influx_url))
        next_pipeline = time.monotonic() + s.pipeline_interval_s
        next_sequences = time.monotonic() + s.sequence_interval_s
        while not self.stop.is_set():
            now = time.monotonic()
            wait = min(max(self.batcher.due_in(now), 0.0), 0.5)
            if self._carry:
                chunk, self._carry = self._carry, []
                self._consume(chunk)
            else:
                try:
                    chunk = self.subscriber.inbound.get(timeout=wait)
                except queue.Empty:
                    pass
                else:
                    self._consume(chunk)
            now = time.monotonic()
            if s.pipeline_interval_s and now >= next_pipeline:
                next_pipeline = now + s.pipeline_interval_s
                self.batcher.lines.append(self.metrics.pipeline_line(time.time_ns()))
                self.batcher.add_ack(None)
            if s.sequence_interval_s and now >= next_sequences:
                next_sequences = now + s.sequence_interval_s
                if not self._reporting.is_set():
                    self._reporting.set()
                    self._pool.submit(self._report_sequences)
            if self.batcher.full() or self.batcher.due_in(now) <= 0:
                self._flush()
            if self._check_health(now):
                break
        return self._shutdown()

    def _check_health(self, now: float) -> bool:
        refusal = self.subscriber.refusal
        if refusal is not None:
            self._fail(refusal.line, refusal.exit_code)
            return True
        if self.subscriber.failure is not None:
            self._fail(self.subscriber.failure, ExitCode.INTERNAL)
            return True
        down = self.subscriber.down_since
        if down is not None and now - down > self.settings.mqtt_down_exit_s:
            self._fail(
                f"ingest: {self.subscriber.endpoint} unreachable for more than "
                f"{self.settings.mqtt_down_exit_s:.0f} s; check GRAMLINK_INGEST_MQTT_URL",
                ExitCode.DEPENDENCY_DOWN,
            )
            return True
        return self.fatal is not None

    def _shutdown(self) -> int:
        if not self.fatal and not self.batcher.empty():
            self._flush()
        # Let running writes finish (their acks go out), then give up on the rest.
        self._pool.shutdown(wait=False)
        deadline = time.monotonic() + DRAIN_S
        while self._next_ack < self.batcher._next_seqno and time.monotonic() < deadline:
            if self.fatal:
                break
            time.sleep(0.05)
        self.abort.set()
        self._pool.shutdown(wait=True)
        if not self.fatal and self.settings.sequence_interval_s:
            self._report_sequences()
        self.subscriber.stop()
        for writer in self._writers:
            with contextlib.suppress(Exception):
                writer.close()
        if self.fatal:
            log.error(kv("ingest_stopped", exit_code=int(self.exit_code), error=self.fatal))
            return int(self.exit_code)
        log.info(kv("ingest_stopped", client_id=self.settings.client_id))
        return int(ExitCode.OK)


def run(settings: IngestSettings) -> int:
    """Run one worker until SIGTERM/SIGINT (exit 0) or a fatal error (``runtime.exits``)."""
    try:
        check_storage(settings)
    except StorageMissing as exc:
        log.error(kv("storage_missing", error=exc))
        return ExitCode.STORAGE_MISSING
    with identity(settings) as settings:
        worker = Worker(settings)

        def _stop(signum: int, frame: object) -> None:
            worker.stop.set()

        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _stop)
            signal.signal(signal.SIGINT, _stop)
            settle(GC_THRESHOLDS)
        return worker.run()
