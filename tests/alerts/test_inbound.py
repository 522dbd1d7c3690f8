"""The engine reads a gateway envelope straight from its msgspec structs into the
evaluator's tuples; what it reads must be exactly what the models' way (dicts,
``decode_batch_readings``) gives, refusals included."""

from __future__ import annotations

import json
import zlib
from typing import Any

import pytest

from api.alerts.inbound import BadMessage, decode_message, envelope_items, envelope_items_by_dicts
from bench.convert import corpus
from contract.codec import DecodeError
from contract.topics import Channel, Topic

NOW = 1_780_000_000_000


def _envelope(records: list[dict[str, Any]]) -> bytes:
    body = {"v": 1, "gw": "gw-c1", "seq": 4, "records": records}
    return zlib.compress(json.dumps(body).encode())


def _power(seq: int, **metrics: Any) -> dict[str, Any]:
    return {"v": 1, "kind": "power", "ts": NOW + seq, "seq": seq, "metrics": metrics}


def _record(p: dict[str, Any], **extra: Any) -> dict[str, Any]:
    ch = "event" if "name" in p else "telemetry"
    return {"ch": ch, "dev": "pw-1", "p": p, "rx": NOW + 500, **extra}


SPO2 = {"v": 1, "kind": "pulse_oximeter", "ts": NOW, "seq": 9}
REF = "ab" * 32
CASES = {
    "plain": [_record(_power(1, battery_soc_pct=50.0)), _record(_power(2, battery_soc_pct=49))],
    "clock suspect": [_record(_power(3, battery_soc_pct=48.0), cs=True, m="victron")],
    "a null metric": [_record(_power(4, battery_soc_pct=None, pv_power_w=3.5))],
    "raw patient id": [
        _record({**SPO2, "metrics": {"patient_id": "P-1", "patient_ref": REF, "spo2_pct": 85.0}})
    ],
    "event with metrics": [
        _record({**_power(5, battery_soc_pct=40.0), "name": "grid_lost", "detail": {"a": 1}})
    ],
    "event without metrics": [
        _record({"v": 1, "kind": "power", "ts": NOW, "seq": 6, "name": "reboot"})
    ],
    "no metric at all (refused)": [_record(_power(7)), _record(_power(8, battery_soc_pct=1.0))],
    "only null metrics (refused)": [_record(_power(9, battery_soc_pct=None))],
    "cs false (refused)": [_record(_power(10, battery_soc_pct=2.0), cs=False)],
    "one device, two kinds": [
        _record(_power(11, battery_soc_pct=3.0)),
        _record({"v": 1, "kind": "router", "ts": NOW, "seq": 12, "metrics": {"wan_up": True}}),
        _record(_power(13, battery_soc_pct=4.0)),
    ],
}


def _outcome(read: Any, centre: str, payload: bytes) -> Any:
    try:
        items, refused = read(centre, payload)
    except DecodeError as exc:
        return ("error", exc.reason)
    # per device, each reading with its receive time and its metrics in their order
    return [
        (
            (item.centre, item.device, item.kind),
            [
                (reading, rx_ms, list(reading.metrics.items()))
                for reading, rx_ms in zip(item.readings, item.rx_ms, strict=True)
            ],
        )
        for item in items
    ], refused


@pytest.mark.parametrize("case", sorted(CASES))
def test_an_envelope_reads_the_same_from_structs_as_through_the_models(case: str) -> None:
    payload = _envelope(CASES[case])
    assert _outcome(envelope_items, "c1", payload) == _outcome(
        envelope_items_by_dicts, "c1", payload
    )


def test_what_the_struct_way_reads() -> None:
    items, refused = envelope_items("c1", _envelope(CASES["clock suspect"]))
    (reading,) = items[0].readings
    assert refused == 0
    assert (reading.kind, reading.ts_ms, reading.device_ts_ms) == ("power", NOW + 500, NOW + 3)
    assert items[0].rx_ms == [NOW + 500]
    items, _ = envelope_items("c1", _envelope(CASES["raw patient id"]))
    assert items[0].readings[0].metrics == {"patient_ref": REF, "spo2_pct": 85.0}
    assert items[0].readings[0].patient_ref == REF
    items, refused = envelope_items("c1", _envelope(CASES["no metric at all (refused)"]))
    assert ([r.seq for i in items for r in i.readings], refused) == ([8], 1)


def test_an_envelopes_readings_come_per_device_in_the_order_sent() -> None:
    records = [
        {**_record(_power(seq, battery_soc_pct=50.0 - seq)), "dev": dev}
        for seq, dev in enumerate(["pw-1", "pw-2", "pw-1", "pw-2", "pw-1"])
    ]
    for read in (envelope_items, envelope_items_by_dicts):
        items, _ = read("c1", _envelope(records))
        runs = [(i.device, [r.seq for r in i.readings]) for i in items]
        assert runs == [("pw-1", [0, 2, 4]), ("pw-2", [1, 3])], read.__name__


def test_every_envelope_of_the_conversion_corpus_reads_the_same_both_ways() -> None:
    _, messages = corpus()
    envelopes = [(t, p) for t, p in messages if t.endswith("/_gateway/batch")]
    assert len(envelopes) >= 50
    read = 0
    for topic, payload in envelopes:
        centre = Topic.parse(topic).centre
        struct_way = _outcome(envelope_items, centre, payload)
        assert struct_way == _outcome(envelope_items_by_dicts, centre, payload), topic
        if struct_way[0] != "error":
            read += len(struct_way[0])
    assert read > 1000


def test_a_broken_envelope_is_refused_with_the_contract_reason() -> None:
    topic = "gl/v1/c1/gw-c1/_gateway/batch"
    assert Topic.parse(topic).channel is Channel.GATEWAY_BATCH
    with pytest.raises(BadMessage) as refused:
        decode_message(topic, b"not zlib")
    assert refused.value.reason == "bad_compression"
