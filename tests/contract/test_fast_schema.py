"""The msgspec first pass gives what the models give, or steps aside for them."""

from __future__ import annotations

import json
import zlib
from typing import Annotated, Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field, StringConstraints, ValidationError

from bench.convert import corpus
from contract import fast_schema
from contract.codec import (
    DecodeError,
    _inflate,
    _reading_dict,
    decode,
    decode_batch,
    decode_batch_readings,
    decode_reading,
    decode_record,
    refused_by_models,
)
from contract.messages import Batch, BatchRecord
from contract.metrics import METRICS_BY_KIND
from contract.topics import Channel

_, MESSAGES = corpus(seed=3, singles=600, envelopes=30, records=20)
SINGLES = [
    (Channel(topic.rsplit("/", 1)[1]), payload)
    for topic, payload in MESSAGES
    if topic.endswith(("/telemetry", "/event")) and topic.startswith("gl/v1/")
]
ENVELOPES = [payload for topic, payload in MESSAGES if topic.endswith("/_gateway/batch")]


def models_verdict(channel: Channel, payload: bytes) -> dict[str, Any] | str:
    """The models' dict of a reading, or the reason they refuse it."""
    try:
        return _reading_dict(decode(channel, payload))
    except DecodeError as exc:
        return exc.reason.value


def fast_only(channel: Channel, payload: bytes) -> dict[str, Any] | None:
    """What the msgspec pass alone makes of a message (None: it steps aside)."""
    try:
        struct = fast_schema.READINGS[channel].decode(payload)
    except msgspec.DecodeError:
        return None
    return fast_schema.BUILDERS[type(struct)](struct)


def agrees(fast: dict[str, Any], models: dict[str, Any] | str) -> None:
    """Every field the fast dict has, the models have with the same value and type."""
    assert isinstance(models, dict), f"msgspec took what the models refuse: {models}"
    for key, value in fast.items():
        expected = models[key]
        if key == "metrics" and value is not None:
            assert list(value) == [k for k in expected if k in value]  # the models' order
            expected = {k: expected[k] for k in value}
            assert {k: type(v) for k, v in value.items()} == {
                k: type(v) for k, v in expected.items()
            }
        assert value == expected, key
        assert type(value) is type(expected), key
    # what the models fill in and the fast dict leaves out was absent (None) in the message
    assert all(models[k] in (None, 1) for k in models.keys() - fast.keys())


def test_the_corpus_singles_are_read_as_the_models_read_them() -> None:
    taken = 0
    for channel, payload in SINGLES:
        fast = fast_only(channel, payload)
        models = models_verdict(channel, payload)
        if fast is None:
            continue
        taken += 1
        if refused_by_models(fast.get("metrics")):
            continue  # a metrics set without a metric: decode_reading asks the models
        agrees(fast, models)
        got = decode_reading(channel, payload)
        assert got == fast
    assert taken > len(SINGLES) // 2


def test_decode_reading_refuses_with_the_models_reasons() -> None:
    for channel, payload in SINGLES:
        models = models_verdict(channel, payload)
        try:
            got: dict[str, Any] | str = decode_reading(channel, payload)
        except DecodeError as exc:
            got = exc.reason.value
        if isinstance(models, str):
            assert got == models
        else:
            assert isinstance(got, dict)


def slow_batch(payload: bytes) -> Any:
    batch = decode_batch(payload)
    good, refused = [], []
    for record in batch.records:
        try:
            good.append((record.ch, record.dev, _reading_dict(decode_record(record)), record.m))
        except DecodeError as exc:
            refused.append(exc.reason.value)
    return batch.gw, batch.seq, good, refused


def test_envelopes_are_read_as_the_models_read_them() -> None:
    whole = 0
    for payload in ENVELOPES:
        try:
            slow = slow_batch(payload)
        except DecodeError as exc:
            reason = exc.reason
            with pytest.raises(DecodeError) as raised:
                decode_batch_readings(payload)
            assert raised.value.reason == reason
            continue
        got = decode_batch_readings(payload)
        assert (got.gw, got.seq) == slow[:2]
        assert [e.reason.value for _, e in got.refused] == slow[3]
        assert got.models == [m for *_, m in slow[2]]
        assert len(got.readings) == len(slow[2])
        for (ch, dev, fast), (sch, sdev, models, _) in zip(got.readings, slow[2], strict=True):
            assert (ch, dev) == (sch, sdev)
            agrees(fast, models)
        whole += not got.refused
    assert whole >= 5  # some took the fast path whole


def test_every_kind_and_channel_has_a_struct_and_its_fields_in_the_models_order() -> None:
    for channel in ("telemetry", "event"):
        for kind, metrics_model in METRICS_BY_KIND.items():
            first = next(iter(metrics_model.model_fields))
            value = 1 if first.endswith(("_s", "_bytes", "_clients")) else 1.0
            body: dict[str, Any] = {"v": 1, "kind": kind.value, "ts": 5, "seq": 1}
            if channel == "event":
                body["name"] = "measurement"
            body["metrics"] = {name: None for name in reversed(metrics_model.model_fields)}
            body["metrics"][first] = value
            fast = fast_only(Channel(channel), json.dumps(body).encode())
            assert fast is not None, (channel, kind)
            assert list(fast["metrics"]) == list(metrics_model.model_fields)


@pytest.mark.parametrize(
    "payload",
    [
        b'{"v":1.0,"kind":"router","ts":1,"seq":1,"metrics":{"wan_up":true}}',
        b'{"kind":"router","ts":1,"seq":1,"metrics":{"wan_up":true}}',
        b'{"v":true,"kind":"router","ts":1,"seq":1,"metrics":{"wan_up":true}}',
        b'{"v":1,"kind":"router","ts":1.0,"seq":1,"metrics":{"wan_up":true}}',
        b'{"v":1,"kind":"router","ts":1,"seq":1,"metrics":{"wan_up":1}}',
        b'{"v":1,"kind":"router","ts":1,"seq":1,"metrics":{"uptime_s":1.5}}',
        b'{"v":1,"kind":"router","ts":1,"seq":1,"metrics":{"cpu_pct":100.5}}',
        b'{"v":1,"kind":"router","ts":1,"seq":1,"metrics":{"cpu_pct":"5"}}',
        b'{"v":1,"kind":"router","ts":1,"seq":1,"metrics":{"wan_up":true},"x":1}',
        b'{"v":1,"kind":"router","ts":1,"seq":1,"metrics":{"wan_up":true,"x":1}}',
        b'{"v":1,"kind":"toaster","ts":1,"seq":1,"metrics":{"wan_up":true}}',
        b'{"v":1,"kind":"power","ts":1,"seq":1,"metrics":{"wan_up":true}}',
        b'{"v":1,"kind":"router","ts":-1,"seq":1,"metrics":{"wan_up":true}}',
        b'{"v":1,"kind":"router","ts":1,"seq":9007199254740993,"metrics":{"wan_up":true}}',
        b'{"v":1,"kind":"router","ts":1,"seq":1,"metrics":{}}',
        b'{"v":1,"kind":"router","ts":1,"seq":1,"metrics":{"wan_up":null}}',
        b'{"v":1,"kind":"pulse_oximeter","ts":1,"seq":1,"metrics":{"patient_ref":"AB"}}',
        b'{"v":1,"kind":"pulse_oximeter","ts":1,"seq":1,"metrics":{"patient_id":""}}',
        b'{"v":1,"kind":"pulse_oximeter","ts":1,"seq":1,"metrics":{"patient_id":"%s"}}'
        % (b"p" * 65),
        b'{"v":1,"kind":"router","ts":1,"seq":1,"metrics":{"wan_up":true}} x',
        b'{"v":1,"kind":"router","ts":1,"seq":1,"metrics":{"rssi_dbm":NaN}}',
        b'{"v":1,"kind":"gateway","ts":1,"seq":1,"metrics":{"disk_free_mb":1e400}}',
    ],
)
def test_what_the_first_pass_refuses_the_models_decide(payload: bytes) -> None:
    fast = fast_only(Channel.TELEMETRY, payload)
    assert fast is None or refused_by_models(fast.get("metrics"))
    models = models_verdict(Channel.TELEMETRY, payload)
    try:
        got: dict[str, Any] | str = decode_reading(Channel.TELEMETRY, payload)
    except DecodeError as exc:
        got = exc.reason.value
    assert got == models if isinstance(models, str) else isinstance(got, dict)


def test_an_id_or_a_name_with_a_final_newline_is_refused() -> None:
    event = b'{"v":1,"kind":"router","ts":1,"seq":1,"name":"reboot\\n"}'
    assert fast_only(Channel.EVENT, event) is None
    assert models_verdict(Channel.EVENT, event) == "invalid_schema"
    record = {"ch": "telemetry", "dev": "r-1\n", "rx": 5}
    record["p"] = {"v": 1, "kind": "router", "ts": 1, "seq": 1, "metrics": {"wan_up": True}}
    envelope = json.dumps({"v": 1, "gw": "gw-1", "seq": 1, "records": [record]}).encode()
    with pytest.raises(msgspec.ValidationError):
        fast_schema.BATCH.decode(envelope)


ID_TEXT = st.text(max_size=40) | st.from_regex(r"[a-z0-9][a-z0-9-]{0,33}", fullmatch=True)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(ID_TEXT, st.sampled_from(["dev", "gw"])), min_size=1, max_size=4))
def test_envelope_ids_are_refused_exactly_as_the_models_refuse_them(
    ids: list[tuple[str, str]],
) -> None:
    """The pattern of ``gw`` and of each record's ``dev`` is checked after msgspec's pass,
    once per id (remembered, up to a bound that is passed here): an envelope passes only
    when the models take its ids, whatever ids came before it."""
    decoder = fast_schema.BatchDecoder(limit=3)
    p = {"v": 1, "kind": "router", "ts": 1, "seq": 1, "metrics": {"wan_up": True}}
    for value, where in [*ids, *ids]:  # each again, once remembered
        devs = ("r-1", value) if where == "dev" else ("r-1",)
        records = [{"ch": "telemetry", "dev": d, "rx": 5, "p": p} for d in devs]
        gw = value if where == "gw" else "gw-1"
        envelope = {"v": 1, "gw": gw, "seq": 1, "records": records}
        try:
            decoder.decode(json.dumps(envelope).encode())
            fast_took = True
        except msgspec.ValidationError:
            fast_took = False
        try:
            Batch.model_validate(envelope)
            for record in records:
                BatchRecord.model_validate(record)
            models_took = True
        except ValidationError:
            models_took = False
        assert fast_took == models_took, (value, where)


def test_a_clock_suspect_flag_of_false_is_left_to_the_models() -> None:
    p = {"v": 1, "kind": "router", "ts": 1, "seq": 1, "metrics": {"wan_up": True}}
    record = {"ch": "telemetry", "dev": "r-1", "rx": 5, "p": p, "cs": False}
    raw = zlib.compress(json.dumps({"v": 1, "gw": "gw-1", "seq": 1, "records": [record]}).encode())
    assert type(fast_schema.BATCH.decode(_inflate(raw)).records[0].cs) is bool
    with pytest.raises(DecodeError) as raised:  # the models refuse the record, so the envelope
        decode_batch_readings(raw)
    assert raised.value.reason.value == "invalid_schema"


def test_a_constraint_msgspec_cannot_express_stops_the_import() -> None:
    class Odd(BaseModel):
        v: int = 1
        even: Annotated[int, Field(multiple_of=2)]

    class Shouting(BaseModel):
        v: int = 1
        word: Annotated[str, StringConstraints(to_upper=True)]

    for model in (Odd, Shouting):
        with pytest.raises(fast_schema.UnmappedConstraint):
            fast_schema._struct("x", model)


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([p for _, p in SINGLES]),
    st.lists(
        st.tuples(st.integers(0, 20), st.sampled_from(["set", "drop"]), JSON_VALUES), max_size=3
    ),
)
def test_a_mutated_reading_is_taken_only_as_the_models_take_it(
    payload: bytes, mutations: list[tuple[int, str, Any]]
) -> None:
    try:
        body = json.loads(payload)
    except ValueError:
        return
    if not isinstance(body, dict):
        return
    for at, how, value in mutations:
        target = body.get("metrics") if at % 2 and isinstance(body.get("metrics"), dict) else body
        keys = sorted(target)
        if not keys:
            continue
        key = keys[at % len(keys)]
        if how == "drop":
            del target[key]
        else:
            target[key] = value
    mutated = json.dumps(body).encode()
    channel = Channel.EVENT if "name" in body else Channel.TELEMETRY
    fast = fast_only(channel, mutated)
    if fast is not None and not refused_by_models(fast.get("metrics")):
        agrees(fast, models_verdict(channel, mutated))
