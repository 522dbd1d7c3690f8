"""Alerts raised at the centre: the rules the API sends a gateway, and what it announces.

Rules (API -> gateway). The API publishes an :class:`EdgeRules` on
``gl/v1/{centre}/{gateway}/_gateway/rules`` (QoS 1, never retained) whenever a
rule that runs at the edge changes and whenever the gateway comes online. It is
the whole set for the centre (not a change), so the newest one replaces what the
gateway had; ``seq`` is the gateway's downlink counter (the one credential
updates use), and a gateway keeps an update only if its ``seq`` is newer than the
one it holds (that ``seq`` is the version of the set it holds). Each rule is a
stored rule's JSON (``alerting.rules.Rule``); the contract does not look inside
(``alerting`` imports the contract, not the other way round).

The gateway answers with an :class:`EdgeRulesAck` on ``.../rules/ack`` (QoS 1):
``ok`` with the number of rules it holds, or ``ok: false`` with the error and,
when the update named it, its ``seq``. The API follows every gateway's answers
(:func:`rules_ack_filter`, and ``contract.provisioning.dynsec_ack_filter`` for
credential updates; :func:`gateway_of` names the gateway of such a topic) and
shows per gateway which update it holds.

Alerts (gateway -> centre's tablets, and -> central). An :class:`EdgeAlert` is
published:

- on the centre's local broker on ``gl/v1/{centre}/{gateway}/_gateway/alert/{alert_id}``
  (QoS 1, retained): a tablet follows ``gl/v1/{centre}/+/_gateway/alert/+``. A
  ``firing`` alert stays retained until its ``resolved`` message replaces it; the
  resolved one carries a message expiry (:data:`RESOLVED_RETAIN_S`), so the broker
  forgets it after a while;
- upstream on ``gl/v1/{centre}/{gateway}/_gateway/alert`` (QoS 1, not retained) from
  the gateway's outbox in the priority lane, firing only: the central engine opens
  (or stamps) the alert of the same id with ``edge_raised_ms``. The engine reads this
  topic (:func:`alert_filter`) through a persistent session of its own, apart from
  the data channels, so the message never queues behind a backlog of envelopes.

``alert_id`` is derived (``alerting.ids``) from the rule, the subject and the
device's own ``ts`` and ``seq`` of the reading that opened it: central derives
the same id from the same reading.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter

from contract.codec import DecodeError, DecodeReason
from contract.messages import Id, SchemaVersion, Seq, TimestampMs
from contract.metrics import DeviceKind, PatientRef
from contract.topics import PREFIX, TopicError, check_id

RULES_CHANNEL: Final = "_gateway/rules"
RULES_ACK_CHANNEL: Final = "_gateway/rules/ack"
ALERT_CHANNEL: Final = "_gateway/alert"
MAX_RULES: Final = 256
MAX_RULES_BYTES: Final = 512 * 1024
MAX_ALERT_BYTES: Final = 8 * 1024
MAX_ACK_BYTES: Final = 4 * 1024
RESOLVED_RETAIN_S: Final = 3600

AlertId = Annotated[str, StringConstraints(pattern=r"^al-[0-9a-f]{24}$")]
RuleId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")]
Short = Annotated[str, StringConstraints(max_length=256)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)

    v: SchemaVersion = 1


class EdgeRules(_Model):
    """API -> gateway: every rule the centre's gateway evaluates (replaces the last set)."""

    seq: Seq
    rules: Annotated[list[dict[str, Any]], Field(max_length=MAX_RULES)]


class EdgeRulesAck(_Model):
    """Gateway -> API: the outcome of one :class:`EdgeRules`."""

    seq: Seq
    ok: bool
    rules: Annotated[int, Field(ge=0, le=MAX_RULES)] = 0
    error: Short | None = None


class EdgeAlert(_Model):
    """An alert raised (or resolved) by a centre's gateway."""

    alert_id: AlertId
    state: Literal["firing", "resolved"]
    rule_id: RuleId
    rule_version: Annotated[int, Field(ge=1)] = 1
    rule_name: Short
    severity: Literal["info", "warning", "critical"]
    clinical: bool
    centre: Id
    device: Id
    kind: DeviceKind
    subject: Short
    # the reading: its time as stored (the gateway's receive time when its clock is
    # suspect), and the device's own time and seq (the alert id derives from these)
    ts: TimestampMs
    device_ts: TimestampMs
    seq: Seq
    started_ms: TimestampMs
    raised_ms: TimestampMs  # the gateway's wall clock when it raised (or resolved) it
    value: float | bool | None = None
    metric: Annotated[str, StringConstraints(max_length=64)] | None = None
    patient_ref: PatientRef | None = None


_ALERT: Final = TypeAdapter(EdgeAlert)
_RULES: Final = TypeAdapter(EdgeRules)
_RULES_ACK: Final = TypeAdapter(EdgeRulesAck)


def _topic(centre: str, gateway: str, channel: str) -> str:
    return f"{PREFIX}/{check_id(centre, 'centre')}/{check_id(gateway, 'gateway')}/{channel}"


def rules_topic(centre: str, gateway: str) -> str:
    return _topic(centre, gateway, RULES_CHANNEL)


def rules_ack_topic(centre: str, gateway: str) -> str:
    return _topic(centre, gateway, RULES_ACK_CHANNEL)


def rules_ack_filter() -> str:
    """Every gateway's :class:`EdgeRulesAck` (what the API follows)."""
    return f"{PREFIX}/+/+/{RULES_ACK_CHANNEL}"


def gateway_of(topic: str) -> tuple[str, str, str]:
    """``(centre, gateway, channel)`` of a gateway's own ``gl/v1/{c}/{g}/_gateway/...`` topic."""
    parts = topic.split("/", 4)
    if (
        len(parts) != 5
        or f"{parts[0]}/{parts[1]}" != PREFIX
        or not parts[4].startswith("_gateway/")
    ):
        raise TopicError(f"not a gateway topic: {topic[:120]!r}")
    return check_id(parts[2], "centre"), check_id(parts[3], "gateway"), parts[4]


def alert_upstream_topic(centre: str, gateway: str) -> str:
    return _topic(centre, gateway, ALERT_CHANNEL)


def alert_local_topic(centre: str, gateway: str, alert_id: str) -> str:
    return f"{_topic(centre, gateway, ALERT_CHANNEL)}/{alert_id}"


def alert_filter(centre: str | None = None) -> str:
    """Upstream edge alerts of every gateway (of one centre, or of all)."""
    c = "+" if centre is None else check_id(centre, "centre")
    return f"{PREFIX}/{c}/+/{ALERT_CHANNEL}"


def local_alert_filter(centre: str) -> str:
    """What a centre's tablet subscribes to on its local broker."""
    return f"{PREFIX}/{check_id(centre, 'centre')}/+/{ALERT_CHANNEL}/+"


def _decode(adapter: TypeAdapter[Any], payload: bytes, limit: int) -> Any:
    if len(payload) > limit:
        raise DecodeError(DecodeReason.TOO_LARGE, f"{len(payload)} bytes > {limit}")
    try:
        return adapter.validate_json(payload)
    except ValueError as exc:
        raise DecodeError(DecodeReason.INVALID, str(exc)[:200]) from None


def decode_alert(payload: bytes) -> EdgeAlert:
    result: EdgeAlert = _decode(_ALERT, payload, MAX_ALERT_BYTES)
    return result


def decode_rules(payload: bytes) -> EdgeRules:
    result: EdgeRules = _decode(_RULES, payload, MAX_RULES_BYTES)
    return result


def decode_rules_ack(payload: bytes) -> EdgeRulesAck:
    result: EdgeRulesAck = _decode(_RULES_ACK, payload, MAX_ACK_BYTES)
    return result
