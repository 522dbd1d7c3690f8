"""The worker's ledger: what it notes from stored lines and how it reports them."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from contract.codec import encode
from contract.messages import telemetry
from contract.metrics import PowerMetrics
from contract.sequences import parse_entries
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


def entries_of(line: str) -> list[tuple[str, str, list[tuple[int, int]]]]:
    entries, bad = parse_entries(line.split('entries="', 1)[1].split('"', 1)[0])
    assert bad == 0
    return [(e.centre, e.device, [(s.lo, s.hi) for s in e.spans]) for e in entries]


def test_stored_readings_are_reported_as_spans_of_their_device() -> None:
    ledger = SequenceLedger("w-1")
    lines = lines_for([1, 2, 3, 7, 5, 6, 3])  # out of order and one twice
    refused = {lines[3]}  # InfluxDB refused seq 7: quarantined, not stored
    assert ledger.stored(lines, refused) == 6
    ledger.stored(lines_for([4], device="pw-2"))
    [line] = reported(ledger)  # one point for every device
    assert line.startswith("sequences,worker=w-1 ")
    assert entries_of(line) == [("c-1", "pw-1", [(1, 3), (5, 6)]), ("c-1", "pw-2", [(4, 4)])]
    assert f'entries="c-1/pw-1=1-3:{TS0 + 1}:{TS0 + 3},' in line  # device times of the ends
    assert ",devices=2i,readings=6i " in line
    assert reported(ledger) == []  # forgotten once written


def test_the_ledger_is_on_the_worker_metrics() -> None:
    registry = CollectorRegistry()
    ledger = SequenceLedger("w-1")
    ledger.register(registry)
    ledger.stored(lines_for([1, 2]) + lines_for([1], device="pw-2"))
    assert registry.get_sample_value("gramlink_ingest_sequence_pending_devices") == 2
    reported(ledger)
    assert registry.get_sample_value("gramlink_ingest_sequence_points_total") == 1
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
    assert entries_of(line) == [("c-1", "pw-1", [(1, 4)])]


def test_a_restarted_numbering_is_reported_apart() -> None:
    ledger = SequenceLedger("w-1")
    ledger.stored(lines_for([10, 11, 12]))
    ledger.stored(lines_for([1, 2], ts0=TS0 + 60_000))  # seq back, device time forward
    [line] = reported(ledger)
    assert entries_of(line) == [("c-1", "pw-1", [(10, 12)]), ("c-1", "pw-1", [(1, 2)])]


def test_a_report_too_large_for_one_field_is_split_over_points() -> None:
    ledger = SequenceLedger("w-1")
    ledger.stored(lines_for(list(range(1, 6000, 2))))  # 3,000 one-reading spans
    lines = reported(ledger)
    assert len(lines) > 1
    assert len({line.rsplit(" ", 1)[1] for line in lines}) == len(lines)  # none overwritten
    spans = [span for line in lines for _, _, found in entries_of(line) for span in found]
    assert spans == [(seq, seq) for seq in range(1, 6000, 2)]


def test_a_gateways_own_health_readings_are_not_accounted() -> None:
    """Their seq is the gateway's clock (gateway/health.py), not a counter: never a gap."""
    ledger = SequenceLedger("w-1")
    line = "gateway,centre=c-1,device=gw-1,model=pi cpu_pct=1.0,seq=1764000000000i 1"
    assert ledger.stored([line]) == 0
    assert reported(ledger) == []
