"""The worker's ledger: what it notes from stored lines and how it reports them."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from contract.codec import encode
from contract.messages import telemetry
from contract.metrics import PowerMetrics
from contract.sequences import parse_spans
from ingest.errors import WriteUnavailable
from ingest.points import ModelCache, PointBuilder
from ingest.quarantine import QuarantineLines
from ingest.sequences import SequenceLedger

TS0 = 1_764_000_000_000


def lines_for(seqs: list[int], device: str = "pw-1", ts0: int = TS0) -> list[str]:
    """Lines exactly as the worker's PointBuilder makes them (plus a quarantined message)."""
    builder = PointBuilder(
        ModelCache(), QuarantineLines(), max_age_s=1e12, max_future_s=1e12, clock=lambda: 0.0
    )
    out: list[str] = []
    for seq in seqs:
        payload = encode(
            telemetry("power", ts=ts0 + seq, seq=seq, metrics=PowerMetrics(pv_power_w=1.0))
        )
        builder.convert(f"gl/v1/c-1/{device}/telemetry", payload, out)
    builder.convert(f"gl/v1/c-1/{device}/telemetry", b"not json seq=7i 1", out)
    return out


def reported(ledger: SequenceLedger) -> list[str]:
    bodies: list[bytes] = []
    ledger.report(bodies.append)
    return b"\n".join(bodies).decode().splitlines()


def spans_of(line: str) -> str:
    return line.split('spans="', 1)[1].split('"', 1)[0]


def test_stored_readings_are_reported_as_spans_of_their_device() -> None:
    ledger = SequenceLedger("w-1")
    lines = lines_for([1, 2, 3, 7, 5, 6, 3])  # out of order and one twice
    refused = {lines[3]}  # InfluxDB refused seq 7: quarantined, not stored
    assert ledger.stored(lines, refused) == 6
    [line] = reported(ledger)
    assert line.startswith("sequences,centre=c-1,device=pw-1,worker=w-1 ")
    spans = parse_spans(spans_of(line))
    assert [(s.lo, s.hi) for s in spans] == [(1, 3), (5, 6)]
    assert (spans[0].ts_lo, spans[0].ts_hi) == (TS0 + 1, TS0 + 3)
    assert "count=5i,high=6i" in line
    assert reported(ledger) == []  # forgotten once written


def test_the_ledger_is_on_the_worker_metrics() -> None:
    registry = CollectorRegistry()
    ledger = SequenceLedger("w-1")
    ledger.register(registry)
    ledger.stored(lines_for([1, 2]) + lines_for([1], device="pw-2"))
    assert registry.get_sample_value("gramlink_ingest_sequence_pending_devices") == 2
    reported(ledger)
    assert registry.get_sample_value("gramlink_ingest_sequence_points_total") == 2
    assert registry.get_sample_value("gramlink_ingest_sequence_pending_devices") == 0


def test_a_failed_report_is_kept_for_the_next() -> None:
    ledger = SequenceLedger("w-1")
    ledger.stored(lines_for([1, 2]))

    def down(body: bytes) -> None:
        raise WriteUnavailable("InfluxDB down")

    with pytest.raises(WriteUnavailable):
        ledger.report(down)
    ledger.flush(down)  # as the worker's pool job does it: logged, not raised
    ledger.stored(lines_for([3, 4]))
    [line] = reported(ledger)
    assert [(s.lo, s.hi) for s in parse_spans(spans_of(line))] == [(1, 4)]


def test_a_restarted_numbering_is_reported_apart() -> None:
    ledger = SequenceLedger("w-1")
    ledger.stored(lines_for([10, 11, 12]))
    ledger.stored(lines_for([1, 2], ts0=TS0 + 60_000))  # seq back, device time forward
    first, second = reported(ledger)
    assert [(s.lo, s.hi) for s in parse_spans(spans_of(first))] == [(10, 12)]
    assert [(s.lo, s.hi) for s in parse_spans(spans_of(second))] == [(1, 2)]
    assert first.rsplit(" ", 1)[1] != second.rsplit(" ", 1)[1]  # two points, not one overwritten
