"""Storage receipts on the wire, and the model a gateway stamps into a record."""

from __future__ import annotations

import pytest

from contract.codec import decode_batch, decode_batch_readings, encode, encode_batch_parts
from contract.messages import telemetry
from contract.metrics import RouterMetrics
from contract.receipts import (
    ReceiptError,
    decode_receipt,
    encode_receipt,
    receipt_filter,
    receipt_topic,
    seq_ranges,
)


def test_a_receipt_names_many_batches_in_a_few_ranges() -> None:
    seqs = [*range(1_764_670_000_000, 1_764_670_000_400), 1_764_670_000_900]
    payload = encode_receipt("gw-1", reversed(seqs))
    assert len(payload) < 100  # 401 batches
    receipt = decode_receipt(payload)
    assert receipt.gw == "gw-1"
    named = {s for first, last in receipt.batches() for s in range(first, last + 1)}
    assert named == set(seqs)
    assert seq_ranges([5, 3, 4, 4, 9]) == [[3, 5], [9, 9]]


@pytest.mark.parametrize(
    "payload",
    [
        b'{"gw":"gw-1","seqs":[[1,2]]}',  # no schema version
        b'{"v":1,"gw":"gw-1","seqs":[]}',  # names nothing
        b'{"v":1,"gw":"gw-1","seqs":[[1]]}',  # not a range
        b'{"v":1,"gw":"GW 1","seqs":[[1,2]]}',  # not an id
        b'{"v":1,"gw":"gw-1","seqs":[[-1,2]]}',
        b'{"v":1,"gw":"gw-1","seqs":[[1,2]],"more":1}',
        b"not json",
        b"x" * 70_000,
    ],
)
def test_a_bad_receipt_raises_one_error(payload: bytes) -> None:
    with pytest.raises(ReceiptError):
        decode_receipt(payload)


def test_receipt_topics_are_on_the_gateways_own_subtree() -> None:
    assert receipt_topic("c-1", "gw-1") == "gl/v1/c-1/gw-1/_gateway/receipt"
    assert receipt_filter() == "gl/v1/+/+/_gateway/receipt"


def test_a_record_carries_the_model_the_gateway_stamped() -> None:
    reading = encode(telemetry("router", ts=1, seq=1, metrics=RouterMetrics(uptime_s=1)))
    envelope = encode_batch_parts(
        "gw-1",
        3,
        [
            ("telemetry", "r-1", reading, 1, 'quote " and, comma'),
            ("telemetry", "r-2", reading, 1, None),
            ("telemetry", "r-3", reading, 1),
        ],
    )
    assert [r.m for r in decode_batch(envelope).records] == ['quote " and, comma', None, None]
    assert decode_batch_readings(envelope).models == ['quote " and, comma', None, None]
