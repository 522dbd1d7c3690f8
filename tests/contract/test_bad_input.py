"""The schema version is the integer 1 and always sent; patient ids never survive an excerpt."""

from __future__ import annotations

import json
import zlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contract import Channel, DecodeError, DecodeReason, decode, encode
from contract.admission import Refusal, Refused, check_kind, internal_error_detail
from contract.codec import decode_batch, decode_batch_readings, encode_batch_parts
from contract.messages import event, telemetry
from contract.metrics import BpMonitorMetrics, RouterMetrics
from contract.provisioning import DynsecUpdate
from contract.pseudonym import redact_patient_ids, redacted_excerpt

TS = 1_760_000_000_000
READING = {"kind": "router", "ts": TS, "seq": 1, "metrics": {"uptime_s": 5}}
JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
NOT_ONE = st.one_of(
    JSON_SCALARS, st.lists(JSON_SCALARS, max_size=2), st.dictionaries(st.text(), JSON_SCALARS)
).filter(lambda v: not (type(v) is int and v == 1))


def _wire(**fields: Any) -> bytes:
    return json.dumps(fields, allow_nan=True).encode()


@given(NOT_ONE, st.sampled_from([Channel.TELEMETRY, Channel.STATE, Channel.TWIN_REPORTED]))
def test_a_v_other_than_the_integer_1_is_a_wrong_version(v: Any, channel: Channel) -> None:
    body = {
        Channel.TELEMETRY: READING,
        Channel.STATE: {"online": True},
        Channel.TWIN_REPORTED: {"version": 1, "config": {}},
    }[channel]
    with pytest.raises(DecodeError) as caught:
        decode(channel, _wire(v=v, **body))
    assert caught.value.reason is DecodeReason.WRONG_VERSION


@pytest.mark.parametrize("v", ["1.0", "true", '"1"', "1e0", "null"])
def test_v_1_0_true_or_a_string_are_refused_with_a_reason_naming_v(v: str) -> None:
    payload = b'{"v":%s,"kind":"router","ts":1,"seq":1,"metrics":{"uptime_s":1}}' % v.encode()
    with pytest.raises(DecodeError) as caught:
        decode(Channel.TELEMETRY, payload)
    assert caught.value.reason is DecodeReason.WRONG_VERSION
    assert caught.value.detail.startswith("v: ")


@pytest.mark.parametrize("channel", [Channel.TELEMETRY, Channel.STATE, Channel.CMD_ACK])
def test_a_message_without_v_is_refused(channel: Channel) -> None:
    body = {
        Channel.TELEMETRY: READING,
        Channel.STATE: {"online": True},
        Channel.CMD_ACK: {"id": "c1", "status": "done"},
    }[channel]
    with pytest.raises(DecodeError) as caught:
        decode(channel, json.dumps(body).encode())
    assert caught.value.reason is DecodeReason.WRONG_VERSION
    assert "missing" in caught.value.detail
    assert decode(channel, json.dumps({"v": 1, **body}).encode()) is not None


def test_an_envelope_without_v_or_with_v_1_0_is_refused_records_likewise() -> None:
    good = encode(telemetry("router", ts=TS, seq=1, metrics=RouterMetrics(uptime_s=1)))
    no_v = json.dumps(READING).encode()
    float_v = json.dumps({**READING, "v": 1.0}).encode()
    payload = encode_batch_parts(
        "gw-1", 3, [("telemetry", "a", good, TS), ("telemetry", "b", no_v, TS)]
    )
    payload2 = encode_batch_parts("gw-1", 4, [("telemetry", "c", float_v, TS)])
    result = decode_batch_readings(payload)
    assert [dev for _, dev, _ in result.readings] == ["a"]
    ((record, error),) = result.refused
    assert record.dev == "b" and error.reason is DecodeReason.WRONG_VERSION
    assert decode_batch_readings(payload2).refused[0][1].reason is DecodeReason.WRONG_VERSION

    for envelope in (
        b'{"gw":"gw-1","seq":1,"records":[]}',
        b'{"v":1.0,"gw":"gw-1","seq":1,"records":[]}',
    ):
        with pytest.raises(DecodeError) as caught:
            decode_batch_readings(zlib.compress(envelope))
        assert caught.value.reason is DecodeReason.WRONG_VERSION
        with pytest.raises(DecodeError):
            decode_batch(zlib.compress(envelope))


def test_messages_built_in_python_still_carry_v_1_on_the_wire() -> None:
    wire = json.loads(encode(telemetry("router", ts=TS, seq=1, metrics=RouterMetrics(cpu_pct=1))))
    assert wire["v"] == 1 and type(wire["v"]) is int
    assert DynsecUpdate.model_validate_json(
        b'{"v":1,"op":"upsert","device_id":"d","kind":"router","credential_version":1,"seq":1}'
    )
    with pytest.raises(ValueError, match="v"):
        DynsecUpdate.model_validate_json(
            b'{"v":true,"op":"upsert","device_id":"d","kind":"router",'
            b'"credential_version":1,"seq":1}'
        )


# --- patient ids ------------------------------------------------------------------------

PATIENT = st.from_regex(r"PATIENT[A-Za-z0-9 \-]{1,20}", fullmatch=True)
OTHER_KEYS = st.sampled_from(["systolic_mmhg", "note", "detail", "metrics", "x"])


def documents(patient: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    """JSON documents with patient_id values at any depth, among other keys."""
    leaf = st.one_of(st.integers(), st.text(alphabet="abc xyz", max_size=6), st.booleans())
    return st.recursive(
        st.dictionaries(OTHER_KEYS, leaf, max_size=3).flatmap(
            lambda d: patient.map(lambda p: {**d, "patient_id": p})
        ),
        lambda inner: st.one_of(
            st.lists(inner, max_size=3),
            st.dictionaries(OTHER_KEYS, inner, max_size=3),
        ),
        max_leaves=6,
    )


@given(documents(PATIENT), st.booleans())
def test_no_patient_id_survives_redaction_whole_or_cut_anywhere(doc: Any, ascii_only: bool) -> None:
    payload = json.dumps(doc, ensure_ascii=ascii_only).encode()
    assert b"PATIENT" not in redact_patient_ids(payload)
    for cut in range(len(payload) + 1):
        assert b"PATIENT" not in redact_patient_ids(payload[:cut])
        assert b"PATIENT" not in redacted_excerpt(payload, cut)


@pytest.mark.parametrize(
    "payload",
    [
        b'{"v":1,"metrics":{"patient_id":12345678,"systolic_mmhg":999}}',
        b'{"metrics":{"patient\\u005fid":"12345678"}}',
        b'{"metrics":{"patient_id":"12345678", "x": [1,',
        b'\x00\xff{"patient_id" : "12345678"',
        b'{"detail":{"patient_id":{"name":"12345678"}}}',
    ],
)
def test_numbers_escaped_keys_broken_json_and_binary_are_redacted(payload: bytes) -> None:
    assert b"12345678" not in redact_patient_ids(payload)
    assert b"<redacted>" in redact_patient_ids(payload)


def test_a_payload_without_patient_ids_is_kept_byte_for_byte() -> None:
    payload = b'{"v": 1,  "kind":"bp_monitor", "note":"patient\\u0020id"}'
    assert redact_patient_ids(payload) == payload
    measured = BpMonitorMetrics(systolic_mmhg=120, patient_ref="a" * 64)
    reading = encode(event("bp_monitor", ts=TS, seq=1, name="m", metrics=measured))
    assert redact_patient_ids(reading) == reading


# --- admission --------------------------------------------------------------------------


def test_a_kind_differing_from_the_registered_one_is_refused_unknown_either_side_is_not() -> None:
    with pytest.raises(Refused) as caught:
        check_kind("pw-1", "router", "power")
    assert caught.value.reason is Refusal.KIND_MISMATCH
    assert "pw-1" in caught.value.detail and "power" in caught.value.detail
    check_kind("pw-1", "power", "power")
    check_kind("pw-1", None, "power")
    check_kind("pw-1", "router", None)


def test_internal_error_detail_names_the_type_and_is_cut_short() -> None:
    assert internal_error_detail(KeyError("metrics")) == "KeyError: 'metrics'"
    long = internal_error_detail(RuntimeError("x" * 1000))
    assert long.startswith("RuntimeError: xxx") and len(long) <= 200
