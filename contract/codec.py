"""Encoding and decoding of every message on the wire.

Errors: decoding raises only :class:`DecodeError`, whatever the input; its
``reason`` is a :class:`DecodeReason` a program can count and quarantine by.
A message (and every record of an envelope) must carry ``"v": 1``, the integer:
without it, or with ``1.0``, ``true``, ``"1"`` or another number, the reason
is ``wrong_version``.
Encoding a valid model cannot fail.
"""

from __future__ import annotations

import functools
import json
import zlib
from collections.abc import Iterable
from enum import StrEnum
from typing import Any, Final, NamedTuple, cast

import msgspec
from isal import isal_zlib  # inflates about 2.5x faster than zlib (docs/architecture.md)
from pydantic import BaseModel, TypeAdapter, ValidationError

from contract import fast_schema
from contract.messages import (
    EVENT,
    SCHEMA_VERSION,
    TELEMETRY,
    Batch,
    BatchRecord,
    Command,
    CommandAck,
    Event,
    State,
    Telemetry,
    Twin,
)
from contract.topics import Channel

MAX_MESSAGE_BYTES: Final = 16 * 1024
MAX_BATCH_BYTES: Final = 1024 * 1024
MAX_BATCH_INFLATED_BYTES: Final = 32 * 1024 * 1024
BATCH_COMPRESSION_LEVEL: Final = 6


class DecodeReason(StrEnum):
    BAD_JSON = "bad_json"
    BAD_COMPRESSION = "bad_compression"
    TOO_LARGE = "too_large"
    WRONG_VERSION = "wrong_version"
    UNKNOWN_KIND = "unknown_kind"
    OUT_OF_RANGE = "out_of_range"
    INVALID = "invalid_schema"
    BAD_TOPIC = "bad_topic"


class DecodeError(ValueError):
    """A payload that does not follow the contract (permanent: retrying cannot help)."""

    def __init__(self, reason: DecodeReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


_BATCH: Final = TypeAdapter(Batch)
_ADAPTERS: Final[dict[Channel, TypeAdapter[Any]]] = {
    Channel.TELEMETRY: TELEMETRY,
    Channel.EVENT: EVENT,
    Channel.STATE: TypeAdapter(State),
    Channel.CMD: TypeAdapter(Command),
    Channel.CMD_ACK: TypeAdapter(CommandAck),
    Channel.TWIN_DESIRED: TypeAdapter(Twin),
    Channel.TWIN_REPORTED: TypeAdapter(Twin),
}
_RANGE_ERRORS: Final = frozenset(
    {
        "less_than",
        "less_than_equal",
        "greater_than",
        "greater_than_equal",
        "too_long",
        "too_short",
        "finite_number",  # infinity or NaN: outside every range
    }
)


class _VersionProbe(BaseModel):
    v: Any = None


_VERSION_PROBE: Final = TypeAdapter(_VersionProbe)
_NO_VERSION: Final = "v: missing (every message carries the schema version, the integer 1)"


def _version_problem(payload: bytes | dict[str, Any]) -> str | None:
    """Why ``payload``'s ``v`` is not the integer 1 (None: it is, or not a JSON object).

    Looked at only once a payload failed: a missing or wrong ``v`` explains
    everything else.
    """
    try:
        if isinstance(payload, bytes):
            probe = _VERSION_PROBE.validate_json(payload)
        else:
            probe = _VERSION_PROBE.validate_python(payload)
    except (ValidationError, ValueError, TypeError, RecursionError):
        return None
    if "v" not in probe.model_fields_set:
        return _NO_VERSION
    if type(probe.v) is not int or probe.v != SCHEMA_VERSION:
        shown = json.dumps(probe.v, default=str)[:40]
        return f"v: {shown} is not the schema version (the integer 1)"
    return None


def _reason(exc: ValidationError, payload: bytes | dict[str, Any]) -> DecodeError:
    errors = exc.errors(include_url=False, include_input=False)
    types = {e["type"] for e in errors}
    if "json_invalid" in types or "json_type" in types:
        return DecodeError(DecodeReason.BAD_JSON, _first(errors))
    version = _version_problem(payload)
    if version is not None:
        return DecodeError(DecodeReason.WRONG_VERSION, version)
    if "union_tag_invalid" in types or "union_tag_not_found" in types:
        reason = DecodeReason.UNKNOWN_KIND
    elif types & _RANGE_ERRORS:
        reason = DecodeReason.OUT_OF_RANGE
    else:
        reason = DecodeReason.INVALID
    return DecodeError(reason, _first(errors))


def _first(errors: list[Any]) -> str:
    first = errors[0]
    where = ".".join(str(part) for part in first["loc"]) or "payload"
    return f"{where}: {first['msg']}"[:300]


def _versioned(message: Any) -> Any:
    """``message`` if it was sent with its ``v`` (a default filled in is not enough)."""
    if "v" not in message.model_fields_set:
        raise DecodeError(DecodeReason.WRONG_VERSION, _NO_VERSION)
    return message


def _validate_json(adapter: TypeAdapter[Any], payload: bytes) -> Any:
    try:
        message = adapter.validate_json(payload)
    except ValidationError as exc:
        raise _reason(exc, payload) from None
    except (ValueError, TypeError, RecursionError) as exc:  # pydantic-core edge cases
        raise DecodeError(DecodeReason.BAD_JSON, str(exc)[:300]) from None
    return _versioned(message)


def encode(message: BaseModel) -> bytes:
    """A device message as compact JSON (absent optional fields left out)."""
    return message.model_dump_json(exclude_none=True).encode()


def decode(channel: Channel, payload: bytes) -> Any:
    """Decode a device-side message received on ``channel``.

    Returns the model for the channel (a Telemetry, Event, State, Command,
    CommandAck or Twin; a Batch for ``_gateway/batch``).
    """
    if channel is Channel.GATEWAY_BATCH:
        return decode_batch(payload)
    if len(payload) > MAX_MESSAGE_BYTES:
        raise DecodeError(DecodeReason.TOO_LARGE, f"{len(payload)} bytes > {MAX_MESSAGE_BYTES}")
    return _validate_json(_ADAPTERS[channel], payload)


def encode_batch(batch: Batch) -> bytes:
    """The gateway envelope: compact JSON, zlib-compressed."""
    return zlib.compress(batch.model_dump_json(exclude_none=True).encode(), BATCH_COMPRESSION_LEVEL)


RecordParts = (
    tuple[str, str, bytes, int]
    | tuple[str, str, bytes, int, str | None]
    | tuple[str, str, bytes, int, str | None, bool]
)


def encode_batch_parts(gw: str, seq: int, records: Iterable[RecordParts]) -> bytes:
    """Build an envelope from already-encoded payloads without re-parsing them.

    Each record is ``(channel, device, payload_json, rx_ms[, model[, clock_suspect]])``;
    payloads must be output of :func:`encode` (the gateway stores exactly that)
    and ids valid; a missing or None ``model`` leaves the record's ``m`` out, a
    true ``clock_suspect`` adds ``"cs":true``.
    """
    body = b",".join(
        b'{"ch":"%s","dev":"%s","p":%s,"rx":%d%s%s}'
        % (
            r[0].encode(),
            r[1].encode(),
            r[2],
            r[3],
            _model_part(r[4] if len(r) > 4 else None),  # type: ignore[misc]
            b',"cs":true' if len(r) > 5 and r[5] else b"",  # type: ignore[misc]
        )
        for r in records
    )
    head = b'{"v":1,"gw":"%s","seq":%d,"records":[' % (gw.encode(), seq)
    return zlib.compress(head + body + b"]}", BATCH_COMPRESSION_LEVEL)


@functools.lru_cache(maxsize=1024)
def _model_part(model: str | None) -> bytes:
    return b"" if model is None else b',"m":' + json.dumps(model[:64]).encode()


# isal's stubs declare ``error`` as an instance, not the exception class it is
_INFLATE_ERROR: Final = cast(type[Exception], isal_zlib.error)


def _inflate(payload: bytes) -> bytes:
    if len(payload) > MAX_BATCH_BYTES:
        raise DecodeError(DecodeReason.TOO_LARGE, f"{len(payload)} bytes > {MAX_BATCH_BYTES}")
    inflater = isal_zlib.decompressobj()
    try:
        raw = inflater.decompress(payload, MAX_BATCH_INFLATED_BYTES)
    except _INFLATE_ERROR as exc:
        raise DecodeError(DecodeReason.BAD_COMPRESSION, str(exc)) from None
    if not inflater.eof and len(raw) >= MAX_BATCH_INFLATED_BYTES:
        # stopped at the limit (isal keeps the rest inside: unconsumed_tail stays empty)
        raise DecodeError(DecodeReason.TOO_LARGE, f"inflates past {MAX_BATCH_INFLATED_BYTES} bytes")
    if not inflater.eof:
        raise DecodeError(DecodeReason.BAD_COMPRESSION, "truncated zlib stream")
    return raw


def decode_batch(payload: bytes) -> Batch:
    """Inflate and validate a gateway envelope (records' payloads not yet validated)."""
    batch: Batch = _validate_json(_BATCH, _inflate(payload))
    return batch


def decode_record(record: BatchRecord) -> Telemetry[Any, Any] | Event[Any, Any]:
    """Validate one record's payload from a decoded batch."""
    adapter = TELEMETRY if record.ch == "telemetry" else EVENT
    try:
        reading: Telemetry[Any, Any] | Event[Any, Any] = adapter.validate_python(record.p)
    except ValidationError as exc:
        raise _reason(exc, record.p) from None
    return _versioned(reading)  # type: ignore[no-any-return]


class BatchReadings(NamedTuple):
    """A gateway envelope with every record validated (:func:`decode_batch_readings`)."""

    gw: str
    seq: int
    # (channel, device, reading) of the valid records, in order; a reading is a
    # validated plain dict: the Telemetry/Event fields (optional ones may be
    # absent or None), ``metrics`` a dict of the metrics present (None values possible)
    readings: list[tuple[str, str, dict[str, Any]]]
    # the refused records as received, each with the error decode_record gives it
    refused: list[tuple[BatchRecord, DecodeError]]
    # the gateway's model for each valid record (``m``; None: not stamped), by index.
    # A clock-suspect record's reading has ``ts`` = its receive time and ``device_ts``
    # = the device's own time (:func:`at_receive_time`).
    models: list[str | None] | None = None
    # the gateway's receive time (``rx``, ms) of each valid record, by index
    rx: list[int] | None = None


def refused_by_models(
    metrics: dict[str, Any] | None, cs: object = None, nulls: bool = True
) -> bool:
    """What the one-pass validation lets through and the models refuse: a metrics set
    without a metric (``Metrics._not_empty``), or a record's ``"cs": false``.

    ``nulls=False``: the message holds no JSON null at all (:class:`TypedBatch`), so
    no metric is None and the values need no look.
    """
    if cs is False:
        return True
    if metrics is None:
        return False
    if not nulls or (metrics and None not in metrics.values()):
        return not metrics  # the common case, without a Python-level loop
    return all(value is None for value in metrics.values())


def record_reading(record: Any) -> dict[str, Any]:
    """The reading of an envelope record struct (``fast_schema.BATCH``) as a plain dict, as
    :func:`decode_batch_readings` gives it (clock suspect: :func:`at_receive_time`)."""
    reading = fast_schema.BUILDERS[type(record.p)](record.p)
    return at_receive_time(reading, record.rx) if record.cs else reading


def decode_reading(channel: Channel, payload: bytes) -> dict[str, Any]:
    """:func:`decode` of a telemetry or event message, as a validated plain dict.

    The same rules and the same :class:`DecodeError` as :func:`decode` (whose
    models decide every refusal); the dict is what
    :func:`decode_batch_readings` gives for a record (optional fields may be
    absent or None, ``metrics`` a dict). Cheaper than the models: a valid
    message is validated in one msgspec pass (``contract.fast_schema``) and no
    model objects are built.
    """
    return reading_of_struct(channel, decode_reading_struct(channel, payload), payload)


def decode_reading_struct(channel: Channel, payload: bytes) -> Any | None:
    """The first pass of :func:`decode_reading` alone: the reading's msgspec struct, or
    None when the pass refused it (the models then judge it: :func:`reading_of_struct`).
    The struct may still hold what the models refuse (:func:`refused_by_models`).

    Raises :class:`DecodeError` for a message too large, as :func:`decode` does.
    """
    if len(payload) > MAX_MESSAGE_BYTES:
        raise DecodeError(DecodeReason.TOO_LARGE, f"{len(payload)} bytes > {MAX_MESSAGE_BYTES}")
    try:
        return fast_schema.READINGS[channel].decode(payload)
    except (msgspec.DecodeError, RecursionError):
        return None


def reading_of_struct(channel: Channel, struct: Any | None, payload: bytes) -> dict[str, Any]:
    """What :func:`decode_reading` gives for ``payload`` once its first pass gave ``struct``."""
    if struct is not None:
        reading = fast_schema.BUILDERS[type(struct)](struct)
        if not refused_by_models(reading.get("metrics")):
            return reading
    return _reading_dict(decode(channel, payload))  # the models' verdict and error


def _reading_dict(reading: Telemetry[Any, Any] | Event[Any, Any]) -> dict[str, Any]:
    out = dict(reading.__dict__)
    if out.get("metrics") is not None:
        out["metrics"] = dict(out["metrics"].__dict__)
    return out


class TypedBatch(NamedTuple):
    """An envelope as msgspec structs (``contract.fast_schema.BATCH``: ``gw``, ``seq``,
    ``records``), and whether its JSON holds a ``null`` anywhere (``nulls``; False:
    no metric of any record is None, which spares a look at every record's values)."""

    batch: Any
    nulls: bool


def decode_batch_structs(payload: bytes) -> TypedBatch | None:
    """An envelope as msgspec structs, or None when the one-pass validation refused it:
    then :func:`decode_batch_readings` (the models) must judge it, record by record. A
    struct may still hold what the models refuse: a metrics set without a metric,
    ``"cs": false`` (:func:`refused_by_models`, see :func:`decode_batch_readings`).

    Raises :class:`DecodeError` for an envelope too large or not zlib, as the others do.
    """
    raw = _inflate(payload)
    try:
        batch = fast_schema.BATCH.decode(raw)
    except (msgspec.DecodeError, RecursionError):
        return None
    # "null" inside a string makes this True too: only the cheap check is skipped
    return TypedBatch(batch, b"null" in raw)


def decode_batch_readings(payload: bytes) -> BatchReadings:
    """:func:`decode_batch` plus :func:`decode_record` of every record, as plain dicts.

    When every record is valid (the common case) the whole envelope is validated
    in one msgspec pass (``contract.fast_schema``: the same rules as the
    models). Otherwise the envelope is validated again the slow way to find the
    refused records with exactly the errors :func:`decode_record` gives them.
    Raises :class:`DecodeError` for the envelope as :func:`decode_batch` does.
    """
    raw = _inflate(payload)
    try:
        typed = fast_schema.BATCH.decode(raw)
    except (msgspec.DecodeError, RecursionError):
        typed = None
    if typed is not None:
        readings = []
        models: list[str | None] = []
        rx: list[int] = []
        channels, unset = fast_schema.RECORD_CHANNELS, msgspec.UNSET
        for r in typed.records:
            p = record_reading(r)
            if refused_by_models(p.get("metrics"), r.cs):
                break  # refused by the models: the slow way below gives their error
            readings.append((channels[type(r)], r.dev, p))
            models.append(None if r.m is unset else r.m)
            rx.append(r.rx)
        else:
            return BatchReadings(typed.gw, typed.seq, readings, [], models, rx)
    batch: Batch = _validate_json(_BATCH, raw)
    good: list[tuple[str, str, dict[str, Any]]] = []
    good_models: list[str | None] = []
    good_rx: list[int] = []
    refused: list[tuple[BatchRecord, DecodeError]] = []
    for record in batch.records:
        try:
            reading = _reading_dict(decode_record(record))
            if record.cs:
                reading = at_receive_time(reading, record.rx)
            good.append((record.ch, record.dev, reading))
            good_models.append(record.m)
            good_rx.append(record.rx)
        except DecodeError as exc:
            refused.append((record, exc))
    return BatchReadings(batch.gw, batch.seq, good, refused, good_models, good_rx)


def at_receive_time(reading: dict[str, Any], rx_ms: int) -> dict[str, Any]:
    """A clock-suspect record's reading (``BatchRecord.cs``): ``ts`` is the gateway's
    receive time, the device's own time is kept as ``device_ts``."""
    return {**reading, "ts": rx_ms, "device_ts": reading["ts"]}
