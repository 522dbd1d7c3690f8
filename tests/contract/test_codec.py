"""Round trips of every message, and that any bytes decode or fail with DecodeError."""

from __future__ import annotations

import contextlib
import json
import zlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contract import (
    Batch,
    BatchRecord,
    Channel,
    Command,
    CommandAck,
    DecodeError,
    DecodeReason,
    State,
    Twin,
    decode,
    decode_batch,
    decode_record,
    encode,
    encode_batch,
)
from contract.codec import MAX_BATCH_INFLATED_BYTES, MAX_MESSAGE_BYTES, encode_batch_parts
from contract.messages import event, telemetry
from contract.metrics import METRICS_BY_KIND, BpMonitorMetrics, PowerMetrics, RouterMetrics
from contract.pseudonym import pseudonymize
from contract.storage import storage_time_ns

TS = 1_760_000_000_000


def metrics_strategy(model: type) -> st.SearchStrategy[Any]:
    """Valid metrics for a model, built from the bounds in its JSON schema."""
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for name, prop in model.model_json_schema()["properties"].items():
        spec = next(s for s in prop["anyOf"] if s.get("type") != "null")
        if spec["type"] == "boolean":
            value: st.SearchStrategy[Any] = st.booleans()
        elif spec["type"] == "integer":
            value = st.integers(spec.get("minimum", 0), spec.get("maximum", 2**31))
        elif spec["type"] == "number":
            value = st.floats(spec.get("minimum", -1e6), spec.get("maximum", 1e6), allow_nan=False)
        elif "pattern" in spec:
            value = st.from_regex(spec["pattern"], fullmatch=True)
        else:
            value = st.text(min_size=spec.get("minLength", 0), max_size=spec.get("maxLength", 64))
        fields[name] = st.none() | value
    return (
        st.fixed_dictionaries(fields)
        .filter(lambda d: any(v is not None for v in d.values()))
        .map(lambda d: model(**d))
    )


kinds = st.sampled_from(sorted(METRICS_BY_KIND))
readings = kinds.flatmap(
    lambda kind: st.tuples(
        st.just(kind),
        metrics_strategy(METRICS_BY_KIND[kind]),
        st.integers(0, 2**40),
        st.integers(0, 2**53),
    )
)


@given(readings)
def test_telemetry_round_trips(reading: tuple[Any, ...]) -> None:
    kind, metrics, ts, seq = reading
    message = telemetry(kind, ts=ts, seq=seq, metrics=metrics)
    assert decode(Channel.TELEMETRY, encode(message)) == message


@given(readings, st.sampled_from(["measurement", "grid_lost", "reboot"]))
def test_event_round_trips(reading: tuple[Any, ...], name: str) -> None:
    kind, metrics, ts, seq = reading
    message = event(kind, ts=ts, seq=seq, name=name, metrics=metrics, detail={"cause": "x"})
    assert decode(Channel.EVENT, encode(message)) == message


@pytest.mark.parametrize(
    ("channel", "message"),
    [
        (Channel.STATE, State(online=True, kind="router", model="tp-mr6400", fw="1.2.0", ts=TS)),
        (Channel.STATE, State(online=False)),
        (Channel.CMD, Command(id="c-1", name="set_interval", args={"seconds": 30}, expires=TS)),
        (Channel.CMD_ACK, CommandAck(id="c-1", status="in_progress", progress_pct=40)),
        (Channel.TWIN_DESIRED, Twin(version=3, config={"interval_s": 60, "mode": "eco"})),
        (Channel.TWIN_REPORTED, Twin(version=3, config={"interval_s": 60})),
    ],
)
def test_control_messages_round_trip(channel: Channel, message: Any) -> None:
    assert decode(channel, encode(message)) == message


@given(st.lists(readings, max_size=30), st.integers(0, 2**40))
@settings(max_examples=50)
def test_batch_round_trips_both_encoders(items: list[tuple[Any, ...]], seq: int) -> None:
    messages = [telemetry(k, ts=ts, seq=s, metrics=m) for k, m, ts, s in items]
    records = [
        BatchRecord(ch="telemetry", dev=f"d{i}", p=m.model_dump(exclude_none=True), rx=TS)
        for i, m in enumerate(messages)
    ]
    batch = Batch(gw="gw-1", seq=seq, records=records)
    assert decode_batch(encode_batch(batch)) == batch
    parts = [("telemetry", f"d{i}", encode(m), TS) for i, m in enumerate(messages)]
    decoded = decode_batch(encode_batch_parts("gw-1", seq, parts))
    assert decoded == batch
    assert [decode_record(r) for r in decoded.records] == messages


def reason_of(channel: Channel, payload: bytes) -> DecodeReason:
    with pytest.raises(DecodeError) as caught:
        decode(channel, payload)
    return caught.value.reason


def reading_json(**changes: Any) -> bytes:
    base: dict[str, Any] = {"v": 1, "kind": "router", "ts": TS, "seq": 1, "metrics": {"cpu_pct": 5}}
    base.update(changes)
    return json.dumps(base).encode()


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", DecodeReason.BAD_JSON),
        (b"\xff\xfe", DecodeReason.BAD_JSON),
        (reading_json(v=2), DecodeReason.WRONG_VERSION),
        (reading_json(kind="toaster"), DecodeReason.UNKNOWN_KIND),
        (reading_json(metrics={"cpu_pct": 101}), DecodeReason.OUT_OF_RANGE),
        (reading_json(metrics={"rssi_dbm": 20}), DecodeReason.OUT_OF_RANGE),
        # not finite: InfluxDB cannot store it and a rule would take it as a value
        (reading_json(metrics={"rssi_dbm": float("nan")}), DecodeReason.OUT_OF_RANGE),
        (
            reading_json(kind="gateway", metrics={"disk_free_mb": float("inf")}),
            DecodeReason.OUT_OF_RANGE,
        ),
        (reading_json(metrics={"rssi_dbm": float("-inf")}), DecodeReason.OUT_OF_RANGE),
        (
            reading_json(metrics={"rssi_dbm": 1}).replace(b"1}", b"1e400}"),
            DecodeReason.OUT_OF_RANGE,
        ),
        (reading_json(metrics={"cpu_pct": "5"}), DecodeReason.INVALID),
        (reading_json(metrics={"cpu_pct": 5, "secret": 1}), DecodeReason.INVALID),
        (reading_json(metrics={}), DecodeReason.INVALID),
        (reading_json(ts=-1), DecodeReason.OUT_OF_RANGE),
        (b"[1, 2]", DecodeReason.INVALID),
        (b" " * (MAX_MESSAGE_BYTES + 1), DecodeReason.TOO_LARGE),
    ],
)
def test_bad_readings_fail_with_their_reason(payload: bytes, reason: DecodeReason) -> None:
    assert reason_of(Channel.TELEMETRY, payload) is reason


def test_batch_failures_have_reasons() -> None:
    with pytest.raises(DecodeError) as caught:
        decode_batch(b"not zlib at all")
    assert caught.value.reason is DecodeReason.BAD_COMPRESSION
    with pytest.raises(DecodeError) as caught:
        decode_batch(zlib.compress(b"{" * 10)[:-3])
    assert caught.value.reason is DecodeReason.BAD_COMPRESSION
    bomb = zlib.compress(b" " * (MAX_BATCH_INFLATED_BYTES + 10), 9)
    with pytest.raises(DecodeError) as caught:
        decode_batch(bomb)
    assert caught.value.reason is DecodeReason.TOO_LARGE
    with pytest.raises(DecodeError) as caught:
        decode_batch(zlib.compress(b'{"v":1,"gw":"GW!","seq":1,"records":[]}'))
    assert caught.value.reason is DecodeReason.INVALID


def test_one_bad_record_does_not_spoil_its_batch() -> None:
    good = telemetry("power", ts=TS, seq=1, metrics=PowerMetrics(battery_soc_pct=80))
    bad = {"v": 1, "kind": "power", "ts": TS, "seq": 2, "metrics": {"battery_soc_pct": 180}}
    batch = decode_batch(
        encode_batch(
            Batch(
                gw="gw-1",
                seq=1,
                records=[
                    BatchRecord(
                        ch="telemetry", dev="p1", p=good.model_dump(exclude_none=True), rx=TS
                    ),
                    BatchRecord(ch="telemetry", dev="p1", p=bad, rx=TS),
                ],
            )
        )
    )
    assert decode_record(batch.records[0]) == good
    with pytest.raises(DecodeError) as caught:
        decode_record(batch.records[1])
    assert caught.value.reason is DecodeReason.OUT_OF_RANGE


@given(st.binary(max_size=2048), st.sampled_from(list(Channel)))
@settings(max_examples=300)
def test_random_bytes_raise_only_decode_error(payload: bytes, channel: Channel) -> None:
    with contextlib.suppress(DecodeError):
        decode(channel, payload)


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
        lambda c: st.lists(c) | st.dictionaries(st.text(), c),
        max_leaves=30,
    )
)
@settings(max_examples=300)
def test_random_json_raises_only_decode_error(value: Any) -> None:
    payload = json.dumps(value).encode()
    for channel in Channel:
        wire = zlib.compress(payload) if channel is Channel.GATEWAY_BATCH else payload
        with contextlib.suppress(DecodeError):
            decode(channel, wire)


def test_storage_time_keeps_same_millisecond_readings_apart_and_replays_together() -> None:
    assert storage_time_ns(TS, 1) != storage_time_ns(TS, 2)
    assert storage_time_ns(TS, 1) == storage_time_ns(TS, 1)
    assert storage_time_ns(TS, 999_999) < storage_time_ns(TS + 1, 0)


def test_pseudonym_is_keyed_and_never_the_raw_id() -> None:
    a = pseudonymize(b"k" * 32, "patient-17")
    assert a == pseudonymize(b"k" * 32, "patient-17")
    assert a != pseudonymize(b"j" * 32, "patient-17")
    assert "patient" not in a and len(a) == 64
    metrics = BpMonitorMetrics(systolic_mmhg=120, patient_ref=a)
    assert metrics.patient_ref == a
    with pytest.raises(ValueError, match="16 bytes"):
        pseudonymize(b"short", "p")


def test_metrics_need_at_least_one_value() -> None:
    with pytest.raises(ValueError, match="at least one metric"):
        RouterMetrics()
