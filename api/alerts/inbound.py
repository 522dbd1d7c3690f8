"""What the engine reads off the central broker, decoded with the contract.

A message is a gateway envelope (``_gateway/batch``: many readings, each with
the gateway's receive time ``rx``), one reading published straight to the
central broker (``telemetry``, ``event``) or a ``state`` (birth or Last Will).
:func:`decode_message` turns it into :class:`Item` s in order (a message's
readings as one :class:`Observed` per device, in the order sent) and raises
:class:`BadMessage` (with the contract's reason) for one that does not follow the
contract. A refused record
inside a good envelope is counted and skipped. The patient's raw local id
(``patient_id``) is never carried on: only the pseudonym ``patient_ref``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

import msgspec

from alerting.evaluation import Reading
from contract import fast_schema
from contract.codec import (
    DecodeError,
    decode,
    decode_batch_readings,
    decode_batch_structs,
    decode_reading,
    refused_by_models,
)
from contract.edge import ALERT_CHANNEL, EdgeAlert, decode_alert
from contract.topics import Channel, Topic, TopicError


class BadMessage(ValueError):
    """A message that does not follow the contract (permanent: counted, acknowledged)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


class Observed(NamedTuple):
    """One device's readings of one message, in the order sent, and when the centre's
    gateway received each (``rx_ms``, by index; None: sent straight to the central
    broker). Per device rather than per reading: the engine evaluates a device's
    readings together, and an envelope carries hundreds of a few devices."""

    centre: str
    device: str
    kind: str
    readings: list[Reading]
    rx_ms: list[int | None]


@dataclass(frozen=True, slots=True)
class Presence:
    """A ``state`` message: ``kind`` as the birth says it (a Last Will may not say)."""

    centre: str
    device: str
    online: bool
    kind: str | None


@dataclass(frozen=True, slots=True)
class EdgeRaised:
    """An alert a centre's gateway raised (the gateway's id from the topic)."""

    alert: EdgeAlert
    gateway: str


Item = Observed | Presence | EdgeRaised


_TUPLE: Final = tuple.__new__  # a named tuple's own ``__new__`` is a Python call per reading


def observed(centre: str, records: Iterable[tuple[str, dict[str, Any], int | None]]) -> list[Item]:
    """``(device, body, rx_ms)`` of decoded readings (dicts of their own) as the evaluator
    takes them, one :class:`Observed` per device and kind, in order of first appearance."""
    runs: dict[tuple[str, str], Observed] = {}
    for device, body, rx_ms in records:
        # the contract validated the body (strict: ``ts``, ``seq`` ints, ``kind`` a str)
        metrics: dict[str, Any] = body.get("metrics") or {}
        if "patient_id" in metrics:  # never goes further
            metrics = {k: v for k, v in metrics.items() if k != "patient_id"}
        ref = metrics.get("patient_ref")
        kind = body["kind"]
        reading = _TUPLE(
            Reading,
            (
                centre,
                device,
                kind,
                body["ts"],
                body["seq"],
                metrics,
                ref if isinstance(ref, str) else None,
                body.get("device_ts"),  # a clock-suspect record: ts is the receive time
            ),
        )
        run = runs.get((device, kind))
        if run is None:
            run = runs[device, kind] = Observed(centre, device, kind, [], [])
        run.readings.append(reading)
        run.rx_ms.append(rx_ms)
    return list(runs.values())


def envelope_items(centre: str, payload: bytes) -> tuple[list[Item], int]:
    """A gateway envelope's items and how many of its records were refused.

    Straight from the msgspec structs to the evaluator's tuples when the envelope
    passed the one-pass validation and holds nothing the models refuse (no dicts
    between: a backlog's envelopes are many readings each); else the models' way
    (:func:`envelope_items_by_dicts`), which gives the same items.
    """
    typed = decode_batch_structs(payload)
    items = None if typed is None else _struct_items(centre, typed.batch.records, typed.nulls)
    if items is None:
        return envelope_items_by_dicts(centre, payload)
    return items, 0


def envelope_items_by_dicts(centre: str, payload: bytes) -> tuple[list[Item], int]:
    """The same through :func:`contract.codec.decode_batch_readings` (every record judged
    by the models when one is refused)."""
    batch = decode_batch_readings(payload)
    rx: Sequence[int | None] = batch.rx or [None] * len(batch.readings)
    records = zip(batch.readings, rx, strict=True)
    items = observed(centre, ((dev, body, at) for (_ch, dev, body), at in records))
    return items, len(batch.refused)


def _struct_items(centre: str, records: Sequence[Any], nulls: bool = True) -> list[Item] | None:
    """What :func:`observed` makes of the records, from their structs; None when one holds
    what the models refuse (a metrics set without a metric, ``"cs": false``), or when a
    device's records carry two kinds (:func:`observed` then sorts them out). ``nulls``:
    the envelope's JSON may hold a null (else no metric is None)."""
    runs: dict[str, Observed] = {}  # by device: one kind each, checked
    kinds, unset, as_dict = fast_schema.KINDS, msgspec.UNSET, msgspec.to_builtins
    with_patient = fast_schema.WITH_PATIENT
    for r in records:
        p = r.p
        m, cs = p.metrics, r.cs
        if cs is False:
            return None
        if m is unset or m is None:
            metrics: dict[str, Any] = {}
        else:
            # the metrics sent (null ones too), in the model's order
            metrics = as_dict(m)
            if not metrics or (nulls and refused_by_models(metrics, cs, nulls)):
                return None
        ref = None
        struct = type(p)
        if struct in with_patient:
            metrics.pop("patient_id", None)  # never goes further
            ref = metrics.get("patient_ref")
            if not isinstance(ref, str):
                ref = None
        ts, device_ts = (r.rx, p.ts) if cs is True else (p.ts, None)
        dev, kind = r.dev, kinds[struct]
        run = runs.get(dev)
        if run is None:
            run = runs[dev] = Observed(centre, dev, kind, [], [])
        elif run.kind != kind:
            return None
        # device_ts: a clock-suspect record's own time (ts is then the receive time)
        run.readings.append(
            _TUPLE(Reading, (centre, dev, kind, ts, p.seq, metrics, ref, device_ts))
        )
        run.rx_ms.append(r.rx)
    return list(runs.values())


@functools.lru_cache(maxsize=65_536)  # a centre's few topics come back every message
def _topic(text: str) -> Topic:
    return Topic.parse(text)


def decode_message(topic_text: str, payload: bytes) -> tuple[list[Item], int]:
    """The items of one message and how many of its records were refused."""
    if topic_text.endswith("/" + ALERT_CHANNEL):
        return [_edge_alert(topic_text, payload)], 0
    try:
        topic = _topic(topic_text)
    except TopicError as exc:
        raise BadMessage("bad_topic", str(exc)) from None
    try:
        if topic.channel is Channel.GATEWAY_BATCH:
            return envelope_items(topic.centre, payload)
        if topic.channel in (Channel.TELEMETRY, Channel.EVENT):
            body = decode_reading(topic.channel, payload)
            if body.get("metrics") is None:
                return [], 0  # an event without metrics (a reboot): nothing to evaluate
            return observed(topic.centre, [(topic.device, body, None)]), 0
        if topic.channel is Channel.STATE:
            state = decode(Channel.STATE, payload)
            return [Presence(topic.centre, topic.device, bool(state.online), state.kind)], 0
    except DecodeError as exc:
        raise BadMessage(exc.reason.value, exc.detail[:200]) from None
    return [], 0


def _edge_alert(topic_text: str, payload: bytes) -> EdgeRaised:
    parts = topic_text.split("/")
    if len(parts) != 6:
        raise BadMessage("bad_topic", topic_text[:120])
    try:
        alert = decode_alert(payload)
    except DecodeError as exc:
        raise BadMessage(exc.reason.value, exc.detail[:200]) from None
    if alert.centre != parts[2]:
        raise BadMessage("bad_topic", f"an alert of {alert.centre} on {parts[2]}'s topic")
    return EdgeRaised(alert, parts[3])
