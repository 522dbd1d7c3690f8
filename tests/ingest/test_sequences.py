"""The worker's ledger: what it notes from stored lines and how it reports them."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from bench.convert import builder, corpus
from contract.codec import encode
from contract.messages import telemetry
from contract.metrics import GatewayMetrics, PowerMetrics
from contract.sequences import parse_entries
from contract.storage import SEQ_SLOTS
from ingest.errors import WriteUnavailable
from ingest.points import ModelCache, PointBuilder
from ingest.quarantine import QuarantineLines
from ingest.sequences import READING_MEASUREMENTS, Note, SequenceLedger

TS0 = 1_764_000_000_000


def converted(
    seqs: list[int], device: str = "pw-1", ts0: int = TS0
) -> tuple[list[str], list[Note]]:
    """Lines and notes exactly as the worker's PointBuilder makes them (plus a quarantined
    message, which has no note)."""
    builder = PointBuilder(
        ModelCache(), QuarantineLines(), max_age_s=1e12, max_future_s=1e12, clock=lambda: 0.0
    )
    out: list[str] = []
    notes: list[Note] = []
    for seq in seqs:
        payload = encode(
            telemetry("power", ts=ts0 + seq, seq=seq, metrics=PowerMetrics(pv_power_w=1.0))
        )
        builder.convert(f"gl/v1/c-1/{device}/telemetry", payload, out, notes)
    builder.convert(f"gl/v1/c-1/{device}/telemetry", b"not json seq=7i 1", out, notes)
    return out, notes


def notes_for(seqs: list[int], device: str = "pw-1", ts0: int = TS0) -> list[Note]:
    return converted(seqs, device, ts0)[1]


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
    lines, notes = converted([1, 2, 3, 7, 5, 6, 3])  # out of order and one twice
    refused = {lines[3]}  # InfluxDB refused seq 7: quarantined, not stored
    assert ledger.stored(notes, refused) == 6
    ledger.stored(notes_for([4], device="pw-2"))
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
    ledger.stored(notes_for([1, 2]) + notes_for([1], device="pw-2"))
    assert registry.get_sample_value("gramlink_ingest_sequence_pending_devices") == 2
    reported(ledger)
    assert registry.get_sample_value("gramlink_ingest_sequence_points_total") == 1
    assert registry.get_sample_value("gramlink_ingest_sequence_pending_devices") == 0


def test_a_failed_report_is_kept_for_the_next() -> None:
    ledger = SequenceLedger("w-1")
    ledger.stored(notes_for([1, 2]))

    def down(body: bytes) -> None:
        raise WriteUnavailable("InfluxDB down")

    with pytest.raises(WriteUnavailable):
        ledger.report(down)
    ledger.flush(down)  # as the worker's pool job does it: logged, not raised
    ledger.stored(notes_for([3, 4]))
    [line] = reported(ledger)
    assert entries_of(line) == [("c-1", "pw-1", [(1, 4)])]


def test_a_restarted_numbering_is_reported_apart() -> None:
    ledger = SequenceLedger("w-1")
    ledger.stored(notes_for([10, 11, 12]))
    ledger.stored(notes_for([1, 2], ts0=TS0 + 60_000))  # seq back, device time forward
    [line] = reported(ledger)
    assert entries_of(line) == [("c-1", "pw-1", [(10, 12)]), ("c-1", "pw-1", [(1, 2)])]


def test_a_report_too_large_for_one_field_is_split_over_points() -> None:
    ledger = SequenceLedger("w-1")
    ledger.stored(notes_for(list(range(1, 6000, 2))))  # 3,000 one-reading spans
    lines = reported(ledger)
    assert len(lines) > 1
    assert len({line.rsplit(" ", 1)[1] for line in lines}) == len(lines)  # none overwritten
    spans = [span for line in lines for _, _, found in entries_of(line) for span in found]
    assert spans == [(seq, seq) for seq in range(1, 6000, 2)]


def test_a_gateways_own_health_readings_are_not_accounted() -> None:
    """Their seq is the gateway's clock (gateway/health.py), not a counter: never a gap."""
    builder = PointBuilder(
        ModelCache(), QuarantineLines(), max_age_s=1e12, max_future_s=1e12, clock=lambda: 0.0
    )
    payload = encode(telemetry("gateway", ts=TS0, seq=TS0, metrics=GatewayMetrics(cpu_pct=1.0)))
    out: list[str] = []
    notes: list[Note] = []
    for _ in range(2):  # the long way, then the cached line
        builder.convert("gl/v1/c-1/gw-1/telemetry", payload, out, notes)
    assert len(out) == 2 and out[0].startswith("gateway,centre=c-1,device=gw-1,")
    ledger = SequenceLedger("w-1")
    assert ledger.stored(notes) == 0
    assert reported(ledger) == []


def test_every_note_says_what_its_line_says() -> None:
    """The ledger takes (device, seq, time) from the builder's notes, not from the lines:
    over the conversion corpus (every kind, singles, envelopes, every refusal), each
    reading line has one note with its own line's tags, seq and device time, and
    quarantine and gateway lines none."""
    births, messages = corpus(singles=400, envelopes=20)
    points = builder(births)
    out: list[str] = []
    notes: list[Note] = []
    for topic, payload in messages:
        points.convert(topic, payload, out, notes)
    accounted = [line for line in out if line.split(",", 1)[0] in READING_MEASUREMENTS]
    assert len(accounted) > 500
    assert [text for text, key, _, _ in notes if key is not None] == accounted
    for text, key, seq, ts in notes:
        head, _, stamp = text.rpartition(" ")
        assert head.endswith(f"seq={seq}i")
        assert int(stamp) // SEQ_SLOTS == ts
        if key is not None:
            centre, device = key
            assert text.split(",", 3)[1:3] == [f"centre={centre}", f"device={device}"]
        else:
            assert text.startswith("gateway,")
