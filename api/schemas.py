"""Request and response bodies: Create / Update / Public families per resource."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Generic, Literal, TypeAlias, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from contract.metrics import DeviceKind
from contract.topics import ID_RE

Id = Annotated[str, StringConstraints(pattern=f"^{ID_RE.pattern}$"), Field(examples=["ctr-hub-1"])]
# A registry row's integer id (an INTEGER column: larger ones are a 4xx, never an overflow)
MAX_ROW_ID = 2**31 - 1
RowId = Annotated[int, Field(ge=1, le=MAX_ROW_ID)]
Text = Annotated[str, StringConstraints(min_length=1, max_length=128, strip_whitespace=True)]
Short = Annotated[str, StringConstraints(min_length=1, max_length=64, strip_whitespace=True)]
Latitude = Annotated[float, Field(ge=-90, le=90, examples=[26.85])]
Longitude = Annotated[float, Field(ge=-180, le=180, examples=[80.95])]
UtcOffset = Annotated[
    float,
    Field(ge=-12, le=14, description="local time = UTC + this (hours)", examples=[5.5]),
]
RatedPower = Annotated[
    float,
    Field(gt=0, le=10_000_000, description="rated power of the PV array (W)", examples=[600]),
]


class Role(StrEnum):
    ADMIN = "admin"
    TECHNICIAN = "technician"
    VIEWER = "viewer"


class Status(StrEnum):
    PROVISIONED = "provisioned"
    ACTIVE = "active"
    SUSPENDED = "suspended"
    DECOMMISSIONED = "decommissioned"


# Every DeviceKind except GATEWAY, in DeviceKind's order (spelled out so mypy can check it;
# tests/api/test_schemas.py keeps it in step with contract.metrics.DeviceKind).
DeviceOnlyKind: TypeAlias = Literal[
    "router",
    "power",
    "bp_monitor",
    "pulse_oximeter",
    "thermometer",
    "glucometer",
    "weighing_scale",
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CentreBase(Strict):
    name: Text = Field(examples=["Smartpur Hub Sitapur"])
    village: Text | None = None
    district: Text | None = None
    state: Text | None = None
    country: Short | None = Field(default=None, examples=["IN"])
    latitude: Latitude | None = None
    longitude: Longitude | None = None
    hub_id: Id | None = Field(default=None, description="the hub of a spoke centre")
    utc_offset_h: UtcOffset = 5.5
    pv_rated_w: RatedPower | None = None


class CentreCreate(CentreBase):
    id: Id


class CentreUpdate(Strict):
    name: Text | None = None
    village: Text | None = None
    district: Text | None = None
    state: Text | None = None
    country: Short | None = None
    latitude: Latitude | None = None
    longitude: Longitude | None = None
    hub_id: Id | None = None
    utc_offset_h: UtcOffset | None = None
    pv_rated_w: RatedPower | None = None


class CentrePublic(CentreBase):
    model_config = ConfigDict(from_attributes=True)

    id: Id
    created_at: datetime
    online: bool = Field(description="true while one of the centre's gateways is online")
    spokes: list[Id] = Field(default_factory=list, description="spoke centres of a hub")


class DeviceBase(Strict):
    model: Short = Field(examples=["omron-hem-7120"])
    serial: Short | None = None
    firmware_version: Short | None = Field(default=None, examples=["1.4.2"])


class DeviceCreate(DeviceBase):
    id: Id = Field(examples=["bp-0001"])
    centre_id: Id
    kind: DeviceOnlyKind = Field(examples=["bp_monitor"])


class GatewayCreate(DeviceBase):
    id: Id = Field(examples=["gw-sitapur-1"])
    centre_id: Id


class DeviceUpdate(Strict):
    model: Short | None = None
    serial: Short | None = None
    firmware_version: Short | None = None


class DownlinkStatus(StrEnum):
    NONE = "none"  # nothing sent yet
    APPLIED = "applied"  # the gateway acknowledged the newest update sent
    BEHIND = "behind"  # an update sent is not acknowledged (gateway or uplink down)
    REJECTED = "rejected"  # the gateway refused the newest update (see error)


class DownlinkChannel(BaseModel):
    """One downlink of a gateway (edge rules or credentials): sent vs acknowledged."""

    status: DownlinkStatus
    sent_seq: int | None = Field(default=None, description="the newest update sent")
    sent_at: datetime | None = None
    acknowledged_seq: int | None = Field(
        default=None,
        description="rules: the set the gateway holds; credentials: the newest update answered",
    )
    acknowledged_at: datetime | None = None
    rules: int | None = Field(default=None, description="rules: how many the gateway holds")
    error: str | None = Field(default=None, description="why the gateway refused an update")
    error_seq: int | None = None
    error_at: datetime | None = None
    error_device: str | None = Field(default=None, description="credentials: whose update")


class GatewayDownlinkPublic(BaseModel):
    """What a gateway holds of the updates the API sent it (numbered per gateway)."""

    gateway_id: str
    rules: DownlinkChannel
    credentials: DownlinkChannel
    stale_acks: int = Field(default=0, description="acknowledgements that changed nothing")


class DevicePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: Id
    centre_id: Id
    kind: DeviceKind
    model: str
    serial: str | None
    firmware_version: str | None
    status: Status
    credential_version: int
    created_at: datetime
    last_seen: datetime | None
    online: bool
    downlink: GatewayDownlinkPublic | None = Field(
        default=None, description="a gateway's own view: the edge rules and credentials it holds"
    )


class EdgeRuleRef(BaseModel):
    id: str
    version: int


class CentreEdgeRules(BaseModel):
    """The edge rule set of a centre, and which version each of its gateways holds."""

    centre_id: str
    rules: list[EdgeRuleRef] = Field(description="what the centre's gateways should hold now")
    gateways: list[GatewayDownlinkPublic]


class Credentials(BaseModel):
    """Shown once: at provisioning and at rotation. Never stored in clear."""

    username: str
    password: str
    credential_version: int
    centre_key: str | None = Field(
        default=None, description="gateways only: GRAMLINK_GATEWAY_CENTRE_KEY (base64url)"
    )


class Provisioned(BaseModel):
    device: DevicePublic
    credentials: Credentials


class CredentialRow(BaseModel):
    centre_id: str
    device_id: str
    kind: str
    model: str
    username: str
    password: str


class CentreKey(BaseModel):
    centre_id: str
    gateway_id: str
    centre_key: str


class KeyRotation(BaseModel):
    centre_id: str = Field(examples=["spoke-1"])
    key_version: int = Field(examples=[2])
    centre_key: str = Field(description="the new key, for GRAMLINK_GATEWAY_CENTRE_KEY (once)")
    credentials: list[CredentialRow] = Field(
        description="new MQTT credentials of the centre's live devices and gateways (once)"
    )


class BulkResult(BaseModel):
    created_centres: int
    created_devices: int
    credentials: list[CredentialRow]
    centre_keys: list[CentreKey]


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


class TokenPublic(BaseModel):
    """An API token without its secret (never stored, never shown again)."""

    model_config = ConfigDict(from_attributes=True)

    id: int = Field(examples=[3])
    name: str = Field(examples=["technician-sitapur"])
    role: Role
    created_at: datetime
    revoked: bool = Field(examples=[False])


class AuditPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    at: datetime
    actor: str
    action: str
    entity: str
    entity_id: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None


class Reading(BaseModel):
    time_ns: int
    time: datetime
    values: dict[str, float | int | bool | str | None]


class TelemetryAnswer(BaseModel):
    device_id: str
    centre_id: str
    measurement: str
    window: str | None = None
    readings: list[Reading]


class SequenceGapPublic(BaseModel):
    """Missing readings ``first_seq..last_seq`` of one numbering (``epoch``) of a device."""

    epoch: int
    first_seq: int
    last_seq: int
    readings: int
    status: Literal["settling", "open", "closed", "lost"]
    opened_at: datetime
    ended_at: datetime | None


class SequenceCounts(BaseModel):
    readings_stored: int = 0
    open_gaps: int = 0
    open_readings: int = 0
    settling_gaps: int = 0
    gaps_closed_late: int = 0
    readings_late: int = 0
    gaps_lost: int = 0
    readings_lost: int = 0
    readings_recovered: int = 0
    resets: int = 0


class SequenceSummary(SequenceCounts):
    device_id: str
    centre_id: str
    reported: bool
    epoch: int | None = None
    lowest_seq: int | None = None
    highest_seq: int | None = None
    first_report_at: datetime | None = None
    last_report_at: datetime | None = None


class DeviceSequence(SequenceSummary):
    gaps: list[SequenceGapPublic]


class CentreSequence(BaseModel):
    centre_id: str
    devices_reported: int
    totals: SequenceCounts
    devices: list[SequenceSummary]
