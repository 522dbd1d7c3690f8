"""Storage receipts: ingest tells a gateway which of its batches storage holds.

After InfluxDB accepted every point of a gateway envelope (and the quarantine
points of its refused records), the ingest worker that wrote it publishes a
:class:`Receipt` on ``gl/v1/{centre}/{gateway}/_gateway/receipt`` (QoS 1, never
retained). The gateway deletes a batch's outbox rows only on its receipt (see
gateway/outbox.py: ready -> inflight -> sent -> receipted).

A receipt names batches by the envelope's ``seq`` as inclusive ranges
``[[first, last], ...]``, so one receipt names every batch of a gateway stored in
one write round in a few bytes. Only ingest's account may publish on this
channel and only the gateway itself may read its own (the brokers' ACLs).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Final

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from contract.messages import Id, SchemaVersion, Seq
from contract.topics import PREFIX, check_id

RECEIPT_CHANNEL: Final = "_gateway/receipt"
MAX_RANGES: Final = 4096
MAX_RECEIPT_BYTES: Final = 64 * 1024

SeqRange = Annotated[list[Seq], Field(min_length=2, max_length=2)]


class ReceiptError(ValueError):
    """A receipt payload that does not follow the contract (permanent)."""


class Receipt(BaseModel):
    """Ingest -> gateway: these batches (by envelope ``seq``) are in storage."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    v: SchemaVersion = 1
    gw: Id
    seqs: Annotated[list[SeqRange], Field(min_length=1, max_length=MAX_RANGES)]

    def batches(self) -> Iterable[tuple[int, int]]:
        """The inclusive ``(first, last)`` ranges, each with first <= last."""
        for first, last in self.seqs:
            yield (first, last) if first <= last else (last, first)


_RECEIPT: Final = TypeAdapter(Receipt)


def receipt_topic(centre: str, gateway: str) -> str:
    return f"{PREFIX}/{check_id(centre, 'centre')}/{check_id(gateway, 'gateway')}/{RECEIPT_CHANNEL}"


def receipt_filter(centre: str | None = None) -> str:
    """Every gateway's receipt topic (of one centre, or of all: ``+``)."""
    c = "+" if centre is None else check_id(centre, "centre")
    return f"{PREFIX}/{c}/+/{RECEIPT_CHANNEL}"


def seq_ranges(seqs: Iterable[int]) -> list[list[int]]:
    """Sorted, merged inclusive ranges of ``seqs``: ``[1, 2, 3, 7]`` -> ``[[1, 3], [7, 7]]``."""
    ranges: list[list[int]] = []
    for seq in sorted(set(seqs)):
        if ranges and seq == ranges[-1][1] + 1:
            ranges[-1][1] = seq
        else:
            ranges.append([seq, seq])
    return ranges


def encode_receipt(gw: str, seqs: Iterable[int]) -> bytes:
    """A receipt naming ``seqs`` of gateway ``gw`` as compact JSON."""
    ranges = ",".join(f"[{a},{b}]" for a, b in seq_ranges(seqs))
    return f'{{"v":1,"gw":"{check_id(gw, "gateway")}","seqs":[{ranges}]}}'.encode()


def decode_receipt(payload: bytes) -> Receipt:
    """Validate a receipt; raises :class:`ReceiptError` with the reason."""
    if len(payload) > MAX_RECEIPT_BYTES:
        raise ReceiptError(f"{len(payload)} bytes > {MAX_RECEIPT_BYTES}")
    try:
        receipt = _RECEIPT.validate_json(payload)
    except (ValidationError, ValueError) as exc:
        raise ReceiptError(str(exc).splitlines()[0][:300]) from None
    if "v" not in receipt.model_fields_set:
        raise ReceiptError("v: missing (every message carries the schema version, the integer 1)")
    return receipt
