"""The sequence accounting loop of the API: reports in, accounting out.

Every ``sequence_interval_s`` one thread (started and closed by the lifespan):

1. reads the ``sequences`` reports written after the checkpoint and at least
   ``sequence_lag_s`` ago (a report becomes readable up to a write timeout after
   the time it carries; the lag also covers clock skew between hosts), at most
   ``WINDOW_NS`` of them per round (behind, e.g. after the API was down, it goes
   on with the next window at once); the very first round starts ``START_NS`` back;
2. merges them into the registry (``api.services.sequences``), gives up open
   gaps older than ``sequence_horizon_s``, moves the checkpoint, in one transaction;
3. refreshes the per-centre totals behind the Prometheus metrics and writes them
   as ``pipeline,source=accounting,centre=C`` points.

Failures (InfluxDB or the database down) are logged once, then one "resumed"
line; the checkpoint stays where it was, so nothing is skipped. Run it in one API
process only (``sequence_interval_s = 0`` in the others).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from api.errors import TelemetryUnavailable
from api.sequence_feed import SequenceFeed
from api.services.sequence_views import CentreTotals, totals_by_centre
from api.services.sequences import Accountant, Merged, checkpoint, set_checkpoint
from runtime.logs import kv

log = logging.getLogger(__name__)
S = 1_000_000_000
WINDOW_NS = 60 * S  # reports read per round at most: catching up goes window by window
START_NS = 3600 * S  # the first round starts this far back (earlier reports are not read)


class SequenceAccounting(Collector):
    def __init__(
        self,
        sessions: sessionmaker[Session],
        feed: SequenceFeed,
        *,
        interval_s: float,
        lag_s: float,
        grace_s: float,
        horizon_s: float,
        check_after_s: float,
    ) -> None:
        self._sessions = sessions
        self.feed = feed
        self._interval = interval_s
        self._lag_ns = int(lag_s * S)
        self._grace_ns = int(grace_s * S)
        self._horizon_ns = int(horizon_s * S)
        self._check_after_ns = int(check_after_s * S)
        self._accountant = Accountant(grace_ns=self._grace_ns, horizon_ns=self._horizon_ns)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sequence-accounting", daemon=True)
        self._totals: dict[str, CentreTotals] = {}
        self._failing = False
        self.polls = 0
        self.reports = 0
        self.failures = 0
        self.until_ns = 0
        self.behind = False

    def register(self, registry: CollectorRegistry) -> None:
        registry.register(self)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll(time.time_ns())
            except (TelemetryUnavailable, SQLAlchemyError) as exc:
                self.failures += 1
                if not self._failing:
                    log.warning(kv("sequence_accounting_failing", error=str(exc)[:300]))
                self._failing = True
            except Exception as exc:  # outermost loop of this thread: say so, go on
                self.failures += 1
                log.exception(kv("sequence_accounting_crashed", error=exc))
            else:
                if self._failing:
                    log.warning(kv("sequence_accounting_resumed"))
                self._failing = False
                if self.behind:  # catching up: the next window at once
                    continue
            self._stop.wait(self._interval)

    def poll(self, now_ns: int) -> Merged:
        """One round: merge the reports that are due, give up old gaps, publish totals."""
        until = now_ns - self._lag_ns
        merged = Merged()
        with self._sessions.begin() as session:
            after = checkpoint(session)
            if after is None:
                after = until - START_NS
            until = min(until, after + WINDOW_NS)
            self.behind = until < now_ns - self._lag_ns
            if until > after:
                reports = list(self.feed.reports(after, until))
                self._accountant.merge(session, reports, merged)
                set_checkpoint(session, until)
                self.until_ns = until
            lookup = self.feed.stored_seqs
            self._accountant.check(session, now_ns, self._check_after_ns, lookup, merged)
            self._accountant.give_up(session, now_ns, merged, lookup)
            session.flush()
            totals = totals_by_centre(session, now_ns - self._grace_ns)
        self._totals = totals
        self.polls += 1
        self.reports += merged.reports
        if (
            merged.opened_gaps
            or merged.filled_readings
            or merged.lost_readings
            or merged.recovered_readings
            or merged.resets
        ):
            log.info(
                kv(
                    "sequence_accounting",
                    reports=merged.reports,
                    devices=len(merged.devices),
                    gaps_opened=merged.opened_gaps,
                    readings_filled=merged.filled_readings,
                    readings_lost=merged.lost_readings,
                    readings_recovered=merged.recovered_readings,
                    resets=merged.resets,
                )
            )
        self.feed.write_totals(totals, now_ns)
        return merged

    # --- Prometheus (labelled by centre at most, never by device) --------------------

    def collect(self) -> Iterable[Metric]:
        totals = self._totals
        gauges = {
            "open_gaps": ("gaps open longer than the grace period", "open_gaps"),
            "open_readings": ("readings missing in open gaps", "open_readings"),
        }
        for name, (doc, attr) in gauges.items():
            family = GaugeMetricFamily(f"gramlink_sequence_{name}", doc, labels=["centre"])
            for centre, t in sorted(totals.items()):
                family.add_metric([centre], getattr(t, attr))
            yield family
        counters = {
            "readings_stored": ("distinct readings accounted as stored", "stored"),
            "gaps_closed_late": ("gaps filled after the grace period", "late_gaps"),
            "readings_late": ("readings stored after the grace period", "late_readings"),
            "gaps_lost": ("gaps given up after the horizon", "lost_gaps"),
            "readings_lost": ("readings given up as lost after the horizon", "lost_readings"),
            "readings_recovered": (
                "readings found in storage that no worker had reported",
                "recovered",
            ),
            "resets": ("devices that restarted their numbering", "resets"),
        }
        for name, (doc, attr) in counters.items():
            counter = CounterMetricFamily(f"gramlink_sequence_{name}", doc, labels=["centre"])
            for centre, t in sorted(totals.items()):
                counter.add_metric([centre], getattr(t, attr))
            yield counter
        yield CounterMetricFamily(
            "gramlink_sequence_reports", "sequence reports merged", value=self.reports
        )
        yield CounterMetricFamily(
            "gramlink_sequence_reports_invalid",
            "device entries of sequence reports skipped (unparsable)",
            value=self.feed.invalid,
        )
        yield CounterMetricFamily(
            "gramlink_sequence_poll_failures",
            "accounting rounds that failed (InfluxDB or the database)",
            value=self.failures,
        )
