"""Ingest writes an envelope from its msgspec structs when it passed the one-pass
validation; the lines and notes must be exactly what the models' way (dicts,
``decode_batch_readings``) writes, for every kind of record."""

from __future__ import annotations

import json
import re
import zlib
from typing import Any

import pytest

from bench.convert import NOW_MS, builder, corpus
from contract.topics import Topic

TOPIC = "gl/v1/c-1/gw-1/_gateway/batch"
REF = "ab" * 32
_QUARANTINE_TIME = re.compile(r"^(quarantine,.*) \d+$")  # stamped when received


def _steady(lines: list[str]) -> list[str]:
    return [_QUARANTINE_TIME.sub(r"\1 <now>", line) for line in lines]


def _envelope(records: list[dict[str, Any]]) -> bytes:
    body = {"v": 1, "gw": "gw-1", "seq": 3, "records": records}
    return zlib.compress(json.dumps(body).encode())


def _router(seq: int, dev: str = "r-1", **extra: Any) -> dict[str, Any]:
    p = {"v": 1, "kind": "router", "ts": NOW_MS - seq, "seq": seq, "metrics": {"cpu_pct": 5.5}}
    return {"ch": "telemetry", "dev": dev, "p": p, "rx": NOW_MS, **extra}


def _with(record: dict[str, Any], **p: Any) -> dict[str, Any]:
    return {**record, "p": {**record["p"], **p}}


OXIMETER = {"v": 1, "kind": "pulse_oximeter", "ts": NOW_MS, "seq": 4}
CASES = {
    "the same device twice (the second from the cache)": [_router(1), _router(2)],
    "stamped models": [_router(1, m="tp-mr6400"), _router(2, m="other,model")],
    "clock suspect": [_router(1), _router(2, cs=True), _router(3)],
    "a null metric": [_router(1), _with(_router(2), metrics={"cpu_pct": None, "wan_up": True})],
    "an event": [
        _router(1),
        {**_router(2), "ch": "event", "p": {**_router(2)["p"], "name": "reboot", "detail": {}}},
    ],
    "a raw patient id": [
        {
            "ch": "telemetry",
            "dev": "ox-1",
            "p": {**OXIMETER, "metrics": {"patient_id": "P-1", "patient_ref": REF}},
            "rx": NOW_MS,
        }
    ],
    "too old": [_router(1), _with(_router(2), ts=NOW_MS - 100 * 86_400_000)],
    "from the future": [_router(1), _with(_router(2), ts=NOW_MS + 3_600_000)],
    "no metric at all (refused by the models)": [_router(1), _with(_router(2), metrics={})],
    "cs false (refused by the models)": [_router(1), _router(2, cs=False)],
}


def _lines(payload: bytes, topic: str, structs: bool) -> tuple[int, list[str], list[Any]]:
    points = builder([])
    if not structs:  # the models' way, whatever the envelope
        points._envelope = points._envelope_dicts
    out: list[str] = []
    notes: list[Any] = []
    count = points.convert(topic, payload, out, notes)
    return count, _steady(out), notes


@pytest.mark.parametrize("case", sorted(CASES))
def test_an_envelope_writes_the_same_lines_from_structs_as_through_the_models(case: str) -> None:
    payload = _envelope(CASES[case])
    assert _lines(payload, TOPIC, True) == _lines(payload, TOPIC, False)


def test_every_envelope_of_the_conversion_corpus_writes_the_same_both_ways() -> None:
    births, messages = corpus()
    for topic, payload in messages:
        if not topic.endswith("/_gateway/batch"):
            continue
        ways = []
        for structs in (True, False):
            points = builder(births)
            if not structs:
                points._envelope = points._envelope_dicts
            out: list[str] = []
            notes: list[Any] = []
            ways.append((points.convert(topic, payload, out, notes), _steady(out), notes))
        assert ways[0] == ways[1], Topic.parse(topic)


def test_a_clock_suspect_record_is_stored_at_its_receive_time() -> None:
    count, out, _ = _lines(_envelope(CASES["clock suspect"]), TOPIC, True)
    assert count == 3
    assert f"device_ts={NOW_MS - 2}i,clock_suspect=true" in out[1]
    assert out[1].endswith(f" {NOW_MS * 1_000_000 + 2}")  # rx, in the seq slots
