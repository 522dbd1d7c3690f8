"""Request and response bodies of alerting: rules, alerts, silences, channels.

A rule's body is :class:`alerting.rules.RuleSpec` itself (validated against the
contract), so the API, the engine and the gateway read one model.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AnyUrl,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    computed_field,
    model_validator,
)

from alerting.rules import Condition, Rule, RuleSpec, Scope, Severity
from api.schemas import Strict


def _utc(at: datetime) -> datetime:
    """SQLite hands datetimes back without their zone; every one stored is UTC."""
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


UtcTime = Annotated[datetime, AfterValidator(_utc)]
RuleId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$", examples=["battery-low"])]
Note = Annotated[str, StringConstraints(max_length=1024, strip_whitespace=True)]
ConditionType = Literal[
    "threshold", "rate", "absence", "offline", "forecast", "solar_yield", "clinical"
]
AlertState = Literal["pending", "firing", "acknowledged", "resolved"]
OPEN_STATES: tuple[AlertState, ...] = ("pending", "firing", "acknowledged")


class RuleCreate(RuleSpec):
    """A rule; ``id`` optional (default: a slug of the name and a short random suffix)."""

    id: RuleId | None = None


class RulePatch(Strict):
    """Any of a rule's parts; a new ``condition`` replaces the old one whole."""

    name: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    description: Annotated[str, Field(max_length=1024)] | None = None
    severity: Severity | None = None
    scope: Scope | None = None
    condition: Condition | None = None
    enabled: bool | None = None
    edge: bool | None = None


class RulePublic(Rule):
    """A stored rule: its spec, ``id``, ``version`` (bumped by every change)."""

    pack_key: str | None = Field(None, description="its key in the default pack, if from it")
    created_at: UtcTime
    updated_at: UtcTime

    @computed_field(  # type: ignore[prop-decorator]
        alias="clinical", description="a clinical rule (its alerts carry a patient pseudonym)"
    )
    @property
    def is_clinical(self) -> bool:
        return self.clinical


class Acknowledge(Strict):
    note: Note | None = None


class Resolve(Strict):
    note: Note | None = None


class AlertPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    rule_id: str
    rule_name: str
    subject: str
    centre: str
    device: str | None
    severity: Severity
    clinical: bool
    state: AlertState
    started_ms: int = Field(description="device time (epoch ms) the condition began to hold")
    fired_ms: int | None
    resolved_ms: int | None
    last_seen_ms: int
    count: int = Field(description="readings folded into this alert")
    value: float | None
    detail: dict[str, Any]
    patient_ref: str | None = Field(description="a pseudonym, never a raw patient id")
    during_outage: bool
    inhibited: bool
    silenced: bool
    edge_raised_ms: int | None
    notified: str | None
    acknowledged_by: str | None
    acknowledged_at: UtcTime | None
    ack_note: str | None
    resolved_by: str | None
    created_at: UtcTime
    updated_at: UtcTime


class AlertEventPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    at: UtcTime
    at_ms: int | None = Field(description="device time, when the event came from a reading")
    event: str
    actor: str
    detail: dict[str, Any] | None


class AttemptPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    at: UtcTime
    status_code: int | None
    error: str | None
    duration_ms: float


class DeliveryPublic(BaseModel):
    """One notification of the alert to one channel; ``id`` is its delivery id."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    channel_id: int
    event: str
    status: Literal["queued", "delivered", "failed"]
    attempts: int
    next_try_at: UtcTime | None = Field(description="none once delivered")
    last_status_code: int | None
    last_error: str | None
    created_at: UtcTime
    delivered_at: UtcTime | None
    tries: list[AttemptPublic] = Field(default_factory=list)


class AlertDetail(AlertPublic):
    history: list[AlertEventPublic]
    deliveries: list[DeliveryPublic]


class SeverityCounts(BaseModel):
    critical: int = 0
    warning: int = 0
    info: int = 0
    total: int = 0


class CentreCounts(SeverityCounts):
    centre: str
    clinical: int = 0


class AlertCounts(BaseModel):
    """Open alerts (pending, firing, acknowledged), per centre and severity."""

    totals: SeverityCounts
    centres: list[CentreCounts]


class SilenceCreate(Strict):
    """Every matcher given must match; at least one. ``starts_at`` default: now."""

    centre: Annotated[str, Field(min_length=1, max_length=32)] | None = None
    device: Annotated[str, Field(min_length=1, max_length=32)] | None = None
    rule_id: RuleId | None = None
    severity: Severity | None = None
    starts_at: datetime | None = None
    ends_at: datetime
    comment: Note | None = None

    @model_validator(mode="after")
    def _valid(self) -> SilenceCreate:
        if not (self.centre or self.device or self.rule_id or self.severity):
            raise ValueError("centre: give at least one of centre, device, rule_id, severity")
        for name in ("starts_at", "ends_at"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise ValueError(f"{name}: give a time zone, e.g. 2026-12-02T10:00:00Z")
        if self.starts_at is not None and self.ends_at <= self.starts_at:
            raise ValueError("ends_at: must be after starts_at")
        return self


class AlertSilence(Strict):
    """Silence an alert's rule at its centre (and device) from now until ``ends_at``."""

    ends_at: datetime
    comment: Note | None = None


class SilencePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    centre: str | None
    device: str | None
    rule_id: str | None
    severity: Severity | None
    starts_at: UtcTime
    ends_at: UtcTime
    comment: str | None
    created_by: str
    created_at: UtcTime
    active: bool = Field(False, description="in force now")


ChannelName = Annotated[str, StringConstraints(min_length=1, max_length=128, strip_whitespace=True)]
Secret = Annotated[str, StringConstraints(min_length=16, max_length=128)]


def _http_url(url: AnyUrl) -> AnyUrl:
    if url.scheme not in ("http", "https"):
        raise ValueError("url: must be http:// or https://")
    if len(str(url)) > 1024:
        raise ValueError("url: longer than 1024 characters")
    return url


class ChannelCreate(Strict):
    """A webhook channel; ``secret`` signs its bodies (HMAC-SHA256), generated if omitted."""

    name: ChannelName
    url: AnyUrl = Field(examples=["https://sms-gateway.example/hooks/gramlink"])
    secret: Secret | None = Field(
        None, description="write-only; generated and shown once if omitted"
    )
    scope: Scope = Scope()
    min_severity: Severity = Severity.INFO
    enabled: bool = True

    @model_validator(mode="after")
    def _valid(self) -> ChannelCreate:
        _http_url(self.url)
        return self


class ChannelUpdate(Strict):
    name: ChannelName | None = None
    url: AnyUrl | None = None
    secret: Secret | None = Field(None, description="a new secret (write-only)")
    scope: Scope | None = None
    min_severity: Severity | None = None
    enabled: bool | None = None

    @model_validator(mode="after")
    def _valid(self) -> ChannelUpdate:
        if self.url is not None:
            _http_url(self.url)
        return self


class ChannelPublic(BaseModel):
    """A channel without its secret (never shown again after creation)."""

    id: int
    name: str
    type: Literal["webhook"]
    url: str
    scope: Scope
    min_severity: Severity
    enabled: bool
    created_at: UtcTime


class ChannelCreated(ChannelPublic):
    secret: str = Field(description="shown once: configure it on the receiver")
