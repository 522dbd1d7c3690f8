"""The worker's ledger of stored readings, reported as ``sequences`` points.

After InfluxDB accepted a batch (``Worker._write``), :meth:`SequenceLedger.stored`
notes the (centre, device, seq, device time) of every reading in it that was
stored (lines InfluxDB refused went to quarantine instead). ``PointBuilder``
hands these over as it writes each line (a :data:`Note` per reading line, in
``Batch.notes``), so nothing here parses line protocol. Every
``sequence_interval_s`` :meth:`SequenceLedger.report` writes the spans of every
device that had readings stored since the last report as ``contract.sequences``
points (one per report, more if the entries pass 60 KB), stamped with the time
of the write (so the API reads reports in arrival order), and forgets them once
InfluxDB accepted the report.

Bounds and policy: per device a list of runs of consecutive seqs (a device's
readings mostly arrive in order, so one run per device per interval); at most
``max_devices`` devices are held between two reports. When full, a new device's
readings are not noted and counted in ``dropped`` (the API shows them as a gap
until it finds them in storage).

A report that fails (InfluxDB down) is merged back and retried at the next
interval. A worker killed before its report loses only the report, not the
readings: the API finds them in storage when it looks its old gaps up; a range
reported twice is harmless (the API's merge is idempotent).

A device whose seq goes back while its device time goes forward restarted its
numbering: its later readings are reported as a separate entry (a new segment),
after the earlier ones, never merged with them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Final

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from contract.metrics import Measurement
from contract.sequences import SEQUENCES_MEASUREMENT, Entry, Span, format_entries
from ingest.errors import WriteError
from runtime.logs import Throttle, kv

log = logging.getLogger("ingest.sequences")

# A gateway numbers its own health readings by its clock (``gateway/health.py``: no RTC,
# no counter kept on disk), so their seqs have gaps by design: not accounted.
READING_MEASUREMENTS: Final = frozenset(m.value for m in Measurement) - {Measurement.GATEWAY}
Key = tuple[str, str]
Note = tuple[str, Key | None, int, int]
"""``(line, (centre, device), seq, device time ms)`` of one reading line, as
``ingest.points.PointBuilder`` wrote it; the key is None for a reading not
accounted (a measurement outside :data:`READING_MEASUREMENTS`)."""


@dataclass(slots=True)
class _Segment:
    """Runs ``[lo, hi, ts_lo, ts_hi]`` of one device within one numbering."""

    runs: list[list[int]] = field(default_factory=list)
    high: int = -1
    ts_high: int = 0

    def add(self, seq: int, ts: int) -> None:
        runs = self.runs
        if runs:
            last = runs[-1]
            if seq == last[1] + 1:
                last[1], last[3] = seq, ts
            elif not last[0] <= seq <= last[1]:
                runs.append([seq, seq, ts, ts])
        else:
            runs.append([seq, seq, ts, ts])
        if seq > self.high:
            self.high, self.ts_high = seq, ts

    def spans(self) -> list[Span]:
        merged: list[list[int]] = []
        for run in sorted(self.runs):
            if merged and run[0] <= merged[-1][1] + 1:
                top = merged[-1]
                if run[1] > top[1]:
                    top[1], top[3] = run[1], run[3]
            else:
                merged.append(list(run))
        return [Span(lo, hi, ts_lo, ts_hi) for lo, hi, ts_lo, ts_hi in merged]


class SequenceLedger(Collector):
    def __init__(self, worker: str, max_devices: int = 200_000) -> None:
        self.worker = worker
        self.max_devices = max_devices
        self.dropped = 0
        self.failures = 0
        self.reported = 0
        self._pending: dict[Key, list[_Segment]] = {}
        self._lock = threading.Lock()
        self._last_ns = 0
        self._keys: dict[str, Key] = {}
        self._throttle = Throttle(log)

    def note(self, notes: list[Note], refused: list[str]) -> None:
        """:meth:`stored` for the writer threads: never raises (a bug is logged, counted)."""
        try:
            self.stored(notes, set(refused))
        except Exception as exc:  # the batch is stored: acknowledge it whatever happens here
            self.failures += 1
            self._throttle.error("sequences_note_failed", error=repr(exc)[:300])

    def stored(self, notes: Iterable[Note], refused: Collection[str] = ()) -> int:
        """Note the readings of a stored batch (all but the lines ``refused``); how many.

        About 0.3 µs a reading: the builder already knows each reading's device,
        seq and time, so no line is read here.
        """
        noted = 0
        with self._lock:
            pending = self._pending
            last_key: Key | None = None
            segment = _Segment()
            for line, key, seq, ts in notes:
                if key is None or (refused and line in refused):
                    continue
                if key is not last_key:
                    segments = pending.get(key)
                    if segments is None:
                        if len(pending) >= self.max_devices:
                            self.dropped += 1
                            continue
                        segments = pending[key] = [_Segment()]
                    segment, last_key = segments[-1], key
                if seq <= segment.high and ts > segment.ts_high:  # numbering restarted
                    segment = _Segment()
                    pending[key].append(segment)
                segment.add(seq, ts)
                noted += 1
        return noted

    def register(self, registry: CollectorRegistry) -> None:
        registry.register(self)

    def collect(self) -> Iterable[Metric]:
        yield CounterMetricFamily(
            "gramlink_ingest_sequence_points",
            "sequences points written (one per device per report)",
            value=self.reported,
        )
        yield CounterMetricFamily(
            "gramlink_ingest_sequence_dropped",
            "stored readings not noted for the report (ledger full)",
            value=self.dropped,
        )
        yield GaugeMetricFamily(
            "gramlink_ingest_sequence_pending_devices",
            "devices with stored readings not yet reported",
            value=self.pending_devices(),
        )

    def pending_devices(self) -> int:
        with self._lock:
            return len(self._pending)

    def flush(self, write: Callable[[bytes], None]) -> None:
        """:meth:`report`, for a worker's pool job: failures are logged (rate-limited), kept."""
        try:
            self.report(write)
        except WriteError as exc:  # kept for the next report
            self._throttle.warning(
                "sequences_report_failed", error=str(exc)[:300], action="retrying"
            )
        except Exception as exc:  # outermost frame of a pool job: say so, keep running
            log.exception(kv("sequences_report_crashed", error=exc))

    def report(self, write: Callable[[bytes], None]) -> int:
        """Write one point per device (and segment) noted since the last report.

        Returns the points written. If ``write`` raises, everything is kept for the
        next report and the exception propagates.
        """
        with self._lock:
            taken, self._pending = self._pending, {}
        if not taken:
            return 0
        try:
            lines = self._lines(taken)
            write("\n".join(lines).encode())
        except BaseException:
            self._merge_back(taken)
            raise
        self.reported += len(lines)
        return len(lines)

    def _lines(self, taken: dict[Key, list[_Segment]]) -> list[str]:
        now = max(time.time_ns(), self._last_ns + 1)
        entries = (
            Entry(centre, device, segment.spans())
            for (centre, device), segments in taken.items()
            for segment in segments
        )
        lines = [
            f"{SEQUENCES_MEASUREMENT},worker={self.worker} "
            f'entries="{chunk.text}",devices={chunk.devices}i,readings={chunk.readings}i '
            f"{now + i}"  # the points of one report never share a time
            for i, chunk in enumerate(format_entries(entries))
        ]
        self._last_ns = now + len(lines)
        return lines

    def _merge_back(self, taken: dict[Key, list[_Segment]]) -> None:
        with self._lock:
            newer, self._pending = self._pending, taken
            for key, segments in newer.items():
                mine = self._pending.get(key)
                if mine is None:
                    self._pending[key] = segments
                    continue
                for segment in segments:  # replay in order: restarts are detected again
                    for lo, hi, ts_lo, ts_hi in segment.runs:
                        target = mine[-1]
                        if lo <= target.high and ts_lo > target.ts_high:
                            target = _Segment()
                            mine.append(target)
                        target.runs.append([lo, hi, ts_lo, ts_hi])
                        if hi > target.high:
                            target.high, target.ts_high = hi, ts_hi
