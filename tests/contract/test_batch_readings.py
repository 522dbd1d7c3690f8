"""decode_batch_readings: one pass for a valid envelope, decode_record's verdicts otherwise."""

from __future__ import annotations

import json
import zlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contract.codec import (
    DecodeError,
    DecodeReason,
    decode_batch,
    decode_batch_readings,
    decode_record,
    encode_batch_parts,
)
from tests.contract.test_codec import TS, readings

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**60), 2**60)
    | st.floats(allow_nan=False)
    | st.text()
)


def norm(value: Any) -> Any:
    """Compare by meaning: absent == None, 5 == 5.0, but True != 1."""
    if isinstance(value, dict):
        return {k: norm(v) for k, v in value.items() if v is not None}
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int | float):
        return ("num", float(value))
    return value


def reference(payload: bytes) -> tuple[list[Any], list[Any]]:
    """What decode_batch + decode_record per record give (the definition)."""
    good, refused = [], []
    for record in decode_batch(payload).records:
        try:
            reading = decode_record(record)
        except DecodeError as exc:
            refused.append((record, exc.reason, exc.detail))
        else:
            good.append((record.ch, record.dev, norm(reading.model_dump())))
    return good, refused


def fast(payload: bytes) -> tuple[list[Any], list[Any]]:
    got = decode_batch_readings(payload)
    good = [(ch, dev, norm({"v": 1, **r})) for ch, dev, r in got.readings]  # v: its default
    return good, [(record, exc.reason, exc.detail) for record, exc in got.refused]


def record_p(reading: tuple[Any, ...], channel: str) -> dict[str, Any]:
    kind, metrics, ts, seq = reading
    p: dict[str, Any] = {"v": 1, "kind": kind, "ts": ts, "seq": seq}
    p["metrics"] = metrics.model_dump(exclude_none=True)
    if channel == "event":
        p["name"] = "measurement"
        p["detail"] = {"cause": "x"}
    return p


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """A valid record's payload, sometimes broken in one place."""
    channel = draw(st.sampled_from(["telemetry", "event"]))
    p = record_p(draw(readings), channel)
    how = draw(st.sampled_from(["none", "value", "metric", "drop", "extra", "empty"]))
    if how == "value":
        p[draw(st.sampled_from(sorted(p)))] = draw(scalars)
    elif how == "metric" and p["metrics"]:
        p["metrics"][draw(st.sampled_from(sorted(p["metrics"])))] = draw(scalars)
    elif how == "drop":
        del p[draw(st.sampled_from(sorted(p)))]
    elif how == "extra":
        p[draw(st.sampled_from(["x", "metrics2", "gw"]))] = draw(scalars)
    elif how == "empty":
        p["metrics"] = {}
    return channel, p


def envelope(records: list[tuple[str, dict[str, Any]]]) -> bytes:
    parts = [(ch, f"d{i}", json.dumps(p).encode(), TS) for i, (ch, p) in enumerate(records)]
    return encode_batch_parts("gw-1", 7, parts)


@given(st.lists(mutated(), max_size=12))
@settings(max_examples=120, deadline=None)
def test_same_readings_and_refusals_as_record_by_record(records: list[Any]) -> None:
    payload = envelope(records)
    assert fast(payload) == reference(payload)


def test_valid_envelope_gives_readings_as_dicts() -> None:
    p = {"v": 1, "kind": "power", "ts": TS, "seq": 3, "metrics": {"battery_soc_pct": 80}}
    got = decode_batch_readings(envelope([("telemetry", p)] * 3))
    assert (got.gw, got.seq, got.refused) == ("gw-1", 7, [])
    assert [(ch, dev) for ch, dev, _ in got.readings] == [
        ("telemetry", "d0"),
        ("telemetry", "d1"),
        ("telemetry", "d2"),
    ]
    assert got.readings[0][2]["metrics"] == {"battery_soc_pct": 80}


@pytest.mark.parametrize(
    ("metrics", "reason"),
    [
        ({"battery_soc_pct": 180}, DecodeReason.OUT_OF_RANGE),
        ({}, DecodeReason.INVALID),
        ({"battery_soc_pct": "80"}, DecodeReason.INVALID),
    ],
)
def test_bad_record_is_refused_and_its_neighbours_kept(
    metrics: dict[str, Any], reason: DecodeReason
) -> None:
    good = {"v": 1, "kind": "power", "ts": TS, "seq": 1, "metrics": {"battery_soc_pct": 80}}
    bad = {**good, "seq": 2, "metrics": metrics}
    got = decode_batch_readings(envelope([("telemetry", good), ("telemetry", bad)]))
    assert [r["seq"] for _, _, r in got.readings] == [1]
    assert [(record.p["seq"], exc.reason) for record, exc in got.refused] == [(2, reason)]


def test_envelope_errors_are_decode_batch_errors() -> None:
    for payload in (b"not zlib", zlib.compress(b'{"v":1,"gw":"GW!","seq":1,"records":[]}')):
        with pytest.raises(DecodeError) as slow:
            decode_batch(payload)
        with pytest.raises(DecodeError) as quick:
            decode_batch_readings(payload)
        assert (quick.value.reason, quick.value.detail) == (slow.value.reason, slow.value.detail)
