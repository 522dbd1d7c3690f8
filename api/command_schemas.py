"""Schemas of device management: commands, command batches and device twins (issue #15)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from api.schemas import DeviceOnlyKind, Id, Short, Status, Strict, Text

ExpiresIn = Annotated[int, Field(ge=1, le=7 * 86_400, description="seconds; default a setting")]


class CommandState(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    EXPIRED = "expired"


FINAL = frozenset({CommandState.SUCCEEDED, CommandState.FAILED, CommandState.EXPIRED})


class CommandCreate(Strict):
    name: Annotated[str, Field(max_length=32, examples=["set_interval"])]
    args: dict[str, Any] = Field(default_factory=dict, examples=[{"interval_s": 300}])
    expires_in_s: ExpiresIn | None = None


class CommandPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    device_id: str
    centre_id: str
    kind: str
    name: str
    args: dict[str, Any]
    status: CommandState
    detail: str | None
    progress_pct: float | None
    batch_id: str | None
    actor: str
    created_at: datetime
    expires_at: datetime
    sent_at: datetime | None
    delivered_at: datetime | None
    finished_at: datetime | None


class DeviceFilter(Strict):
    """Which devices a batch goes to; every field given must match (none: every device)."""

    kind: DeviceOnlyKind | None = None
    model: Short | None = None
    centre_id: Id | None = None
    hub_id: Id | None = Field(default=None, description="the hub and its spokes")
    district: Text | None = None
    status: Status | None = None


class BatchCreate(CommandCreate):
    filter: DeviceFilter


class BatchPublic(BaseModel):
    id: str
    name: str
    args: dict[str, Any]
    filter: dict[str, Any]
    actor: str
    created_at: datetime
    expires_at: datetime
    total: int = Field(description="devices the batch sends to")
    skipped: int = Field(description="devices matched whose kind lacks the command")
    waiting: int = Field(description="not yet published (the batch's rate bound)")
    counts: dict[CommandState, int]
    done: bool = Field(description="every command succeeded, failed or expired")


class TwinDesiredSet(Strict):
    config: dict[str, Any] = Field(examples=[{"interval_s": 300, "led": False}])


class TwinSide(BaseModel):
    version: int
    config: dict[str, Any]
    at: datetime | None
    by: str | None = None


class Difference(BaseModel):
    desired: Any
    reported: Any


class TwinPublic(BaseModel):
    device_id: str
    centre_id: str
    desired: TwinSide | None
    reported: TwinSide | None
    difference: dict[str, Difference] = Field(description="keys whose reported value differs")
    applied: bool = Field(description="the reported version and values match the desired ones")


class NotApplied(BaseModel):
    device_id: str
    centre_id: str
    desired_version: int
    reported_version: int | None
    difference: dict[str, Difference]
