"""Delivering one batch to InfluxDB: retries, backpressure, bisecting refused lines.

- ``WriteUnavailable`` (down, slow, 5xx): retried with jittered exponential
  backoff (``retry_initial_s`` doubling to ``retry_max_s``), for as long as it
  takes; the batch's messages stay unacknowledged meanwhile, so the broker
  keeps the rest (Receive Maximum stops it sending more).
- ``WriteRejected`` (400/413): the batch is split in halves until the refused
  lines are alone; those go to quarantine (reason ``influx_rejected``), the
  rest is written. Rewriting an accepted point is harmless (same series and time).
- ``StorageGone`` (404: the database or bucket was dropped): retried the same
  way, with one error line a minute naming ``gramlink influx init``.
- ``WriteFatal`` propagates: the worker stops, nothing is acknowledged.

The first failure is logged once, then one "resumed" line when writes succeed again.
Refused lines are logged rate-limited (``event=line_refused``: the first, then one
a minute with ``suppressed=N``); each is quarantined and counted regardless.
"""

from __future__ import annotations

import logging
import threading
import time

from ingest.errors import StorageGone, WriteRejected, WriteUnavailable
from ingest.metrics import IngestMetrics
from ingest.quarantine import QuarantineLines, Reason
from ingest.writers import Writer
from runtime.backoff import Backoff
from runtime.logs import Throttle, kv

log = logging.getLogger("ingest.delivery")


class Stopped(Exception):
    """The worker is stopping: this batch was not (fully) stored and stays unacknowledged."""


class Delivery:
    """Shared by the writer threads; each call passes its own writer."""

    def __init__(
        self,
        metrics: IngestMetrics,
        quarantine: QuarantineLines,
        abort: threading.Event,
        *,
        retry_initial_s: float,
        retry_max_s: float,
    ) -> None:
        self._metrics = metrics
        self._quarantine = quarantine
        self._abort = abort
        self._initial = retry_initial_s
        self._max = retry_max_s
        self._failing = False
        self._lock = threading.Lock()
        self._throttle = Throttle(log)

    def deliver(self, writer: Writer, lines: list[str]) -> list[str]:
        """Store every line (or its quarantine point); raise Stopped or WriteFatal otherwise.

        Returns the lines InfluxDB refused (quarantined instead of stored).
        """
        refused = self._store(writer, lines)
        if refused:
            notes = []
            for line, detail in refused:
                self._throttle.warning("line_refused", detail=detail[:200], line=line[:200])
                self._metrics.quarantined.labels(Reason.INFLUX_REJECTED.value).inc()
                notes.append(
                    self._quarantine.line(
                        Reason.INFLUX_REJECTED.value,
                        detail=detail,
                        topic="",
                        payload=line.encode(),
                        centre=_tag_value(line, "centre"),
                        device=_tag_value(line, "device"),
                    )
                )
            still = self._store(writer, notes)
            for line, detail in still:  # cannot happen with our own well-formed lines
                log.error(kv("quarantine_refused", detail=detail[:200], line=line[:200]))
        return [line for line, _ in refused]

    def _store(self, writer: Writer, lines: list[str]) -> list[tuple[str, str]]:
        body = "\n".join(lines).encode()
        backoff = Backoff(self._initial, self._max)
        while True:
            started = time.perf_counter()
            try:
                writer.write(body)
            except WriteUnavailable as exc:
                self._failed(exc)
                self._metrics.retries.inc()
                if self._abort.wait(backoff.next()):
                    raise Stopped from exc
                continue
            except WriteRejected as exc:
                if len(lines) == 1:
                    return [(lines[0], exc.detail)]
                half = len(lines) // 2
                return self._store(writer, lines[:half]) + self._store(writer, lines[half:])
            self._metrics.write_seconds.observe(time.perf_counter() - started)
            self._metrics.points.inc(len(lines))
            self._resumed()
            return []

    def _failed(self, exc: Exception) -> None:
        with self._lock:
            first, self._failing = not self._failing, True
        if isinstance(exc, StorageGone):
            self._throttle.error(
                "influx_storage_missing",
                error=str(exc)[:300],
                action="retrying; create it with gramlink influx init",
            )
            return
        if first:
            log.warning(kv("influx_write_failing", error=str(exc)[:300], action="retrying"))

    def _resumed(self) -> None:
        if self._failing:
            with self._lock:
                was, self._failing = self._failing, False
            if was:
                log.warning(kv("influx_write_resumed"))


def _tag_value(line: str, tag: str) -> str | None:
    head = line.split(" ", 1)[0]
    for part in head.split(",")[1:]:
        key, _, value = part.partition("=")
        if key == tag:
            return value
    return None
