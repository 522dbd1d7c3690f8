"""Request and response bodies of ``/v1/firmware`` and ``/v1/campaigns``."""

from __future__ import annotations

from datetime import datetime
from itertools import pairwise
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from api.schemas import RowId
from api.windows import parse_hours
from contract.metrics import DeviceKind
from contract.topics import ID_RE

Version = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[\w.+-]+$")]
Model = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Id = Annotated[str, StringConstraints(pattern=f"^{ID_RE.pattern}$")]


class FirmwarePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: str
    model: str
    version: str
    filename: str
    sha256: str = Field(description="SHA-256 of the file, lower-case hex")
    size: int = Field(description="bytes")
    created_by: str
    created_at: datetime


CampaignStatus = Literal["running", "paused", "halted", "cancelled", "completed", "expired"]
StageStatus = Literal["pending", "open", "passed", "failed"]
DeviceState = Literal["waiting", "window", "sent", "downloading", "succeeded", "failed"]


class CampaignTarget(BaseModel):
    """Which devices: those of the firmware's kind and model, narrowed by these filters."""

    model_config = ConfigDict(extra="forbid")

    centre_id: list[Id] | None = None
    hub_id: Id | None = Field(default=None, description="the hub and its spoke centres")
    district: str | None = None
    current_version: str | None = Field(default=None, description="only devices on this version")
    device_id: list[Id] | None = None


class CampaignCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    firmware_id: RowId
    kind: DeviceKind | None = Field(default=None, description="must match the firmware's")
    model: Model | None = Field(default=None, description="must match the firmware's")
    target: CampaignTarget = Field(default_factory=CampaignTarget)
    stages: list[Annotated[int, Field(ge=1, le=100)]] = Field(
        default=[5, 25, 100], min_length=1, max_length=10, description="cumulative % of devices"
    )
    success_threshold: float = Field(0.9, ge=0, le=1, description="opens the next stage")
    failure_threshold: float = Field(0.2, ge=0, le=1, description="passed: the campaign halts")
    deadline: datetime
    respect_window: bool = Field(True, description="no ota while a centre is open")
    opening_hours: str | None = Field(None, description="local HH:MM-HH:MM; default: setting")
    command_ttl_s: int = Field(600, ge=10, le=7 * 86_400, description="one command's expiry")

    @field_validator("stages")
    @classmethod
    def _stages(cls, value: list[int]) -> list[int]:
        if any(b <= a for a, b in pairwise(value)) or value[-1] != 100:
            raise ValueError("stages must grow and end at 100")
        return value

    @field_validator("opening_hours")
    @classmethod
    def _hours(cls, value: str | None) -> str | None:
        if value is not None:
            parse_hours(value)
        return value


class CampaignDevicePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    device_id: str
    centre_id: str
    stage: int
    state: DeviceState
    progress_pct: float | None
    reason: str | None
    attempts: int
    command_id: str | None  # its ota command in flight or last answered (/v1/commands/{id})
    updated_at: datetime


class StageProgress(BaseModel):
    stage: int
    percent: int
    devices: int
    counts: dict[str, int]
    status: StageStatus


class CampaignPublic(BaseModel):
    id: int
    name: str
    firmware: FirmwarePublic
    target: dict[str, object]
    stages: list[int]
    success_threshold: float
    failure_threshold: float
    deadline: datetime
    respect_window: bool
    opening_hours: str
    command_ttl_s: int
    status: CampaignStatus
    current_stage: int
    reason: str | None
    created_by: str
    created_at: datetime
    counts: dict[str, int]
    stage_progress: list[StageProgress]
    devices: list[CampaignDevicePublic] | None = None
