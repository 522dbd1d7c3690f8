"""What the engine reads off the central broker, decoded with the contract.

A message is a gateway envelope (``_gateway/batch``: many readings, each with
the gateway's receive time ``rx``), one reading published straight to the
central broker (``telemetry``, ``event``) or a ``state`` (birth or Last Will).
:func:`decode_message` turns it into :class:`Item` s in order (a batch's
records are in order per device) and raises :class:`BadMessage` (with the
contract's reason) for one that does not follow the contract. A refused record
inside a good envelope is counted and skipped. The patient's raw local id
(``patient_id``) is never carried on: only the pseudonym ``patient_ref``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from alerting.evaluation import Reading
from contract.codec import DecodeError, decode, decode_batch_readings, decode_reading
from contract.edge import ALERT_CHANNEL, EdgeAlert, decode_alert
from contract.topics import Channel, Topic, TopicError


class BadMessage(ValueError):
    """A message that does not follow the contract (permanent: counted, acknowledged)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


class Observed(NamedTuple):
    """A reading and when the centre's gateway received it (``rx_ms``; None: sent direct)."""

    reading: Reading
    rx_ms: int | None


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


def reading_of(centre: str, device: str, body: dict[str, Any]) -> Reading:
    """``body`` (a decoded reading, a dict of its own) as the evaluator takes it."""
    # the contract validated the body (strict: ``ts`` and ``seq`` are ints, ``kind`` a str)
    metrics: dict[str, Any] = body.get("metrics") or {}
    if "patient_id" in metrics:
        metrics = {k: v for k, v in metrics.items() if k != "patient_id"}  # never goes further
    ref = metrics.get("patient_ref")
    return Reading(
        centre,
        device,
        body["kind"],
        body["ts"],
        body["seq"],
        metrics,
        ref if isinstance(ref, str) else None,
        body.get("device_ts"),  # a clock-suspect record: ts is the receive time
    )


def decode_message(topic_text: str, payload: bytes) -> tuple[list[Item], int]:
    """The items of one message and how many of its records were refused."""
    if topic_text.endswith("/" + ALERT_CHANNEL):
        return [_edge_alert(topic_text, payload)], 0
    try:
        topic = Topic.parse(topic_text)
    except TopicError as exc:
        raise BadMessage("bad_topic", str(exc)) from None
    try:
        if topic.channel is Channel.GATEWAY_BATCH:
            batch = decode_batch_readings(payload)
            rx: list[int | None] = [None] * len(batch.readings)
            if batch.rx is not None:
                rx = list(batch.rx)
            items: list[Item] = [
                Observed(reading_of(topic.centre, dev, body), at)
                for (_ch, dev, body), at in zip(batch.readings, rx, strict=True)
            ]
            return items, len(batch.refused)
        if topic.channel in (Channel.TELEMETRY, Channel.EVENT):
            body = decode_reading(topic.channel, payload)
            if body.get("metrics") is None:
                return [], 0  # an event without metrics (a reboot): nothing to evaluate
            return [Observed(reading_of(topic.centre, topic.device, body), None)], 0
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
