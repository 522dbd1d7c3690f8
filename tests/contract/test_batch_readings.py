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
    decode,
    decode_batch,
    decode_batch_readings,
    decode_reading,
    decode_record,
    encode_batch_parts,
)
from contract.topics import Channel
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


def single_reference(channel: Channel, payload: bytes) -> Any:
    """What :func:`decode` (the models) says about one message: the reading, or the error."""
    try:
        return ("ok", norm(decode(channel, payload).model_dump()))
    except DecodeError as exc:
        return ("refused", exc.reason, exc.detail)


def single_fast(channel: Channel, payload: bytes) -> Any:
    try:
        return ("ok", norm({"v": 1, **decode_reading(channel, payload)}))
    except DecodeError as exc:
        return ("refused", exc.reason, exc.detail)


@given(mutated(), st.sampled_from(["compact", "spaced", "v_last"]))
@settings(max_examples=300, deadline=None)
def test_decode_reading_says_what_decode_says(record: Any, layout: str) -> None:
    """A single message: the same reading (as a dict), or the same reason and detail."""
    channel, p = record
    if layout == "v_last" and "v" in p:
        p = {**{k: v for k, v in p.items() if k != "v"}, "v": p["v"]}
    separators = (",", ":") if layout == "compact" else (", ", ": ")
    payload = json.dumps(p, separators=separators).encode()
    assert single_fast(Channel(channel), payload) == single_reference(Channel(channel), payload)


@pytest.mark.parametrize(
    "payload",
    [
        b'{"kind":"router","ts":1,"seq":1,"metrics":{"cpu_pct":5}}',
        b'{"v":1.0,"kind":"router","ts":1,"seq":1,"metrics":{"cpu_pct":5}}',
        b'{"v":true,"kind":"router","ts":1,"seq":1,"metrics":{"cpu_pct":5}}',
        b'{"v":1,"kind":"router","ts":1,"seq":1,"metrics":{"cpu_pct":null}}',
        b'{"v":1,"kind":"router","ts":1,"seq":1,"metrics":{}}',
        b'{"v":1,"kind":"toaster","ts":1,"seq":1,"metrics":{"cpu_pct":5}}',
        b'{"v":1,"kind":"router","ts":-1,"seq":1,"metrics":{"cpu_pct":5}}',
        b'{"v":1,"kind":"router","ts":1,"seq":1,"metrics":{"cpu_pct":5}',
        b"\xff\xfe",
        b'{"v":1,"pad":"' + b"x" * 17_000 + b'"}',
    ],
)
def test_decode_reading_refuses_what_decode_refuses(payload: bytes) -> None:
    got = single_fast(Channel.TELEMETRY, payload)
    assert got[0] == "refused"
    assert got == single_reference(Channel.TELEMETRY, payload)
