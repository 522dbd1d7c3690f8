"""Campaigns: create (targets resolved, staged), view (per stage and per device),
pause, resume, cancel; every action audited. The runner moves them on."""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from datetime import UTC, datetime
from typing import Final

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from api.db.models import Campaign, CampaignDevice, Centre, Device, Firmware, utcnow
from api.errors import Conflict, NotFound, Unprocessable
from api.firmware_schemas import (
    CampaignCreate,
    CampaignDevicePublic,
    CampaignPublic,
    FirmwarePublic,
    StageProgress,
    StageStatus,
)
from api.services.audit import record

LIVE: Final = ("provisioned", "active")
TERMINAL: Final = ("succeeded", "failed")
ACTIVE: Final = ("running", "paused")  # a device is in one of these at most
FIELDS: Final = ("status", "current_stage", "reason")


def resolve_targets(session: Session, fw: Firmware, body: CampaignCreate) -> list[Device]:
    target = body.target
    query = (
        select(Device)
        .join(Centre, Centre.id == Device.centre_id)
        .where(Device.kind == fw.kind, Device.model == fw.model, Device.status.in_(LIVE))
    )
    if target.centre_id:
        query = query.where(Device.centre_id.in_(target.centre_id))
    if target.hub_id is not None:
        query = query.where(or_(Centre.id == target.hub_id, Centre.hub_id == target.hub_id))
    if target.district is not None:
        query = query.where(Centre.district == target.district)
    if target.current_version is not None:
        query = query.where(Device.firmware_version == target.current_version)
    if target.device_id:
        query = query.where(Device.id.in_(target.device_id))
    devices = list(session.scalars(query))
    # A stable spread: stage 1 is not one centre's devices but a sample of the fleet.
    devices.sort(key=lambda d: hashlib.sha256(d.id.encode()).hexdigest())
    return devices


def stage_of(index: int, total: int, stages: list[int]) -> int:
    for stage, pct in enumerate(stages):
        if index < max(1, math.ceil(total * pct / 100)):
            return stage
    return len(stages) - 1


def create(session: Session, actor: str, body: CampaignCreate, default_hours: str) -> Campaign:
    fw = session.get(Firmware, body.firmware_id)
    if fw is None:
        raise Unprocessable(f"no firmware {body.firmware_id}", field="body.firmware_id")
    if body.kind is not None and body.kind.value != fw.kind:
        raise Unprocessable(f"firmware {fw.id} is for {fw.kind}", field="body.kind")
    if body.model is not None and body.model != fw.model:
        raise Unprocessable(f"firmware {fw.id} is for model {fw.model}", field="body.model")
    deadline = body.deadline if body.deadline.tzinfo else body.deadline.replace(tzinfo=UTC)
    if deadline <= datetime.now(UTC):
        raise Unprocessable("the deadline has passed", field="body.deadline")
    devices = resolve_targets(session, fw, body)
    if not devices:
        raise Unprocessable("no device matches the target", field="body.target")
    busy = sorted(
        set(
            session.scalars(
                select(CampaignDevice.campaign_id)
                .join(Campaign, Campaign.id == CampaignDevice.campaign_id)
                .where(
                    Campaign.status.in_(ACTIVE),
                    CampaignDevice.device_id.in_([d.id for d in devices]),
                )
            )
        )
    )
    if busy:
        raise Conflict(f"some of these devices are in running campaign(s) {busy}; end those first")
    campaign = Campaign(
        name=body.name,
        firmware_id=fw.id,
        target=body.target.model_dump(exclude_none=True),
        stages=body.stages,
        success_threshold=body.success_threshold,
        failure_threshold=body.failure_threshold,
        deadline=deadline,
        respect_window=body.respect_window,
        opening_hours=body.opening_hours or default_hours,
        command_ttl_s=body.command_ttl_s,
        status="running",
        current_stage=0,
        created_by=actor,
    )
    session.add(campaign)
    session.flush()
    for index, device in enumerate(devices):
        session.add(
            CampaignDevice(
                campaign_id=campaign.id,
                device_id=device.id,
                centre_id=device.centre_id,
                stage=stage_of(index, len(devices), body.stages),
                state="waiting",
                attempts=0,
            )
        )
    after = {**body.model_dump(mode="json"), "devices": len(devices)}
    record(session, actor, "campaign.create", "campaign", str(campaign.id), None, after)
    return campaign


def get(session: Session, campaign_id: int) -> Campaign:
    row = session.get(Campaign, campaign_id)
    if row is None:
        raise NotFound(f"no campaign {campaign_id}")
    return row


ALLOWED: Final = {
    "pause": ({"running"}, "paused"),
    "resume": ({"paused"}, "running"),
    "cancel": ({"running", "paused", "halted"}, "cancelled"),
}


def act(session: Session, actor: str, campaign_id: int, action: str) -> Campaign:
    row = get(session, campaign_id)
    sources, target = ALLOWED[action]
    if row.status not in sources:
        raise Conflict(f"campaign {campaign_id} is {row.status}: cannot {action}")
    before = {"status": row.status}
    row.status = target
    row.updated_at = utcnow()
    record(
        session, actor, f"campaign.{action}", "campaign", str(row.id), before, {"status": target}
    )
    return row


def view(session: Session, row: Campaign, *, with_devices: bool = True) -> CampaignPublic:
    devices = list(
        session.scalars(
            select(CampaignDevice)
            .where(CampaignDevice.campaign_id == row.id)
            .order_by(CampaignDevice.stage, CampaignDevice.device_id)
        )
    )
    counts = Counter(d.state for d in devices)
    progress = []
    for stage, pct in enumerate(row.stages):
        members = [d for d in devices if d.stage == stage]
        progress.append(
            StageProgress(
                stage=stage,
                percent=pct,
                devices=len(members),
                counts=dict(Counter(d.state for d in members)),
                status=_stage_status(row, stage),
            )
        )
    fw = session.get(Firmware, row.firmware_id)
    return CampaignPublic(
        id=row.id,
        name=row.name,
        firmware=FirmwarePublic.model_validate(fw),
        target=row.target,
        stages=row.stages,
        success_threshold=row.success_threshold,
        failure_threshold=row.failure_threshold,
        deadline=row.deadline,
        respect_window=row.respect_window,
        opening_hours=row.opening_hours,
        command_ttl_s=row.command_ttl_s,
        status=row.status,  # type: ignore[arg-type]
        current_stage=row.current_stage,
        reason=row.reason,
        created_by=row.created_by,
        created_at=row.created_at,
        counts=dict(counts),
        stage_progress=progress,
        devices=[CampaignDevicePublic.model_validate(d) for d in devices] if with_devices else None,
    )


def _stage_status(row: Campaign, stage: int) -> StageStatus:
    if stage > row.current_stage:
        return "pending"
    if stage < row.current_stage or row.status == "completed":
        return "passed"
    if row.status in ("halted", "expired"):
        return "failed"
    return "open"


def listing(
    session: Session, status: str | None, limit: int, offset: int
) -> tuple[list[Campaign], int]:
    query = select(Campaign)
    if status is not None:
        query = query.where(Campaign.status == status)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(Campaign.id.desc()).limit(limit).offset(offset))
    return list(rows), total
