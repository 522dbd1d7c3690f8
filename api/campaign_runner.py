"""The campaign runner: a thread of the API process that moves campaigns on.

Every ``interval`` seconds (sooner when an ack or a birth arrives) it records
what devices answered, then for each running campaign: expires the commands
nobody answered (the device is retried), halts the campaign when the current
stage's failure rate passes its threshold, opens the next stage when the
success rate reaches its threshold, completes it when every device is done,
and sends ``ota`` to the open stages' waiting devices that are online and whose
centre is closed (the maintenance window), at most ``max_sends`` per tick.
At the deadline what is left fails (``deadline passed``).

All state lives in the registry (``campaigns``, ``campaign_devices``), so an API
restart continues where it stopped: command ids match acks after the restart,
and the retained births tell which devices switched meanwhile. ``clock`` (UTC
now) decides the windows and the deadline; tests replace it.
"""

from __future__ import annotations

import logging
import queue
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.db.models import Campaign, CampaignDevice, Centre, Device, Firmware, utcnow
from api.ota_link import AckEvent, Event, OtaLink, StateEvent, expiry_ms
from api.services.audit import record
from api.services.campaigns import TERMINAL
from api.windows import is_open, local_time
from contract.messages import Command, CommandAck

log = logging.getLogger(__name__)
ACTOR = "campaign-runner"
OPEN_STATES = ("waiting", "window")
IN_FLIGHT = ("sent", "downloading")
RETRY_DETAILS = frozenset({"expired", "busy"})


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class CampaignRunner:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        link: OtaLink,
        base_url: str,
        *,
        interval: float = 2.0,
        max_sends: int = 200,
        presence: bool = True,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.sessions = sessions
        self.link = link
        self.base_url = base_url
        self.interval = interval
        self.max_sends = max_sends
        self.presence = presence  # False: no online flags in the registry, send to all
        self.clock: Callable[[], datetime] = clock or (lambda: datetime.now(UTC))
        self.ticks = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="campaign-runner", daemon=True)

    def start(self) -> None:
        self.link.start()
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.link.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # the runner's outermost loop: log and go on
                log.exception("event=campaign_tick_failed")
            self._wait()

    def _wait(self) -> None:
        """Sleep ``interval``, or less when an answer arrives (then a short batch window)."""
        if self.link.arrived.wait(self.interval):
            self.link.arrived.clear()
            self._stop.wait(0.05)

    # -- one pass ---------------------------------------------------------------------------
    def tick(self) -> None:
        events = self._drain()
        with self.sessions.begin() as session:
            if events:
                self._record(session, events)
            for campaign in session.scalars(select(Campaign).where(Campaign.status == "running")):
                self._step(session, campaign)
        self.ticks += 1

    def _drain(self) -> list[Event]:
        out: list[Event] = []
        while True:
            try:
                out.append(self.link.events.get_nowait())
            except queue.Empty:
                return out

    def _record(self, session: Session, events: list[Event]) -> None:
        acks = {e.ack.id: e for e in events if isinstance(e, AckEvent) and e.ack.id[:4] == "ota-"}
        states = {e.device: e for e in events if isinstance(e, StateEvent) and e.state.fw}
        now = utcnow()
        if acks:
            rows = session.scalars(
                select(CampaignDevice).where(CampaignDevice.command_id.in_(list(acks)))
            )
            for row in rows:
                if row.state in IN_FLIGHT:
                    self._apply_ack(row, acks[row.command_id or ""].ack, now)
        if states:
            joined = session.execute(
                select(CampaignDevice, Firmware.version)
                .join(Campaign, Campaign.id == CampaignDevice.campaign_id)
                .join(Firmware, Firmware.id == Campaign.firmware_id)
                .where(
                    CampaignDevice.device_id.in_(list(states)),
                    CampaignDevice.state.not_in(TERMINAL),
                    Campaign.status != "cancelled",
                )
            )
            for row, version in joined:
                event = states[row.device_id]
                if event.centre == row.centre_id and event.state.fw == version:
                    row.state, row.progress_pct = "succeeded", 100.0
                    row.reason = f"announced fw={version}"
                    row.updated_at = now

    @staticmethod
    def _apply_ack(row: CampaignDevice, ack: CommandAck, now: datetime) -> None:
        row.updated_at = now
        if ack.status == "accepted":
            row.state, row.progress_pct, row.reason = "downloading", 0.0, ack.detail
        elif ack.status == "in_progress":
            row.state = "downloading"
            if ack.progress_pct is not None:
                row.progress_pct = ack.progress_pct
            row.reason = ack.detail
        elif ack.status == "done":
            row.state, row.progress_pct = "downloading", 100.0
            row.reason = "installed; waiting for its birth message"
        elif ack.status == "failed":
            if (ack.detail or "") in RETRY_DETAILS:
                row.state, row.command_id, row.expires_at = "waiting", None, None
                row.reason = f"device answered {ack.detail}; retried"
            else:
                row.state, row.reason = "failed", ack.detail or "failed"

    def _step(self, session: Session, campaign: Campaign) -> None:
        now = self.clock()
        fw = session.get(Firmware, campaign.firmware_id)
        rows = list(
            session.scalars(select(CampaignDevice).where(CampaignDevice.campaign_id == campaign.id))
        )
        if fw is None or not rows:
            return
        if now >= _aware(campaign.deadline):
            self._finish_at_deadline(session, campaign, rows)
            return
        wall = datetime.now(UTC)
        for row in rows:
            if (
                row.state in IN_FLIGHT
                and row.expires_at is not None
                and _aware(row.expires_at) < wall
            ):
                row.state, row.command_id, row.expires_at = "waiting", None, None
                row.reason = "no answer before the command expired; retried"
                row.updated_at = utcnow()
        if self._judge(session, campaign, rows):
            return
        self._send(session, campaign, fw, rows, now)

    def _judge(self, session: Session, campaign: Campaign, rows: list[CampaignDevice]) -> bool:
        """Halt, advance or complete; True when the campaign stopped running."""
        while True:
            stage = [r for r in rows if r.stage == campaign.current_stage]
            total = len(stage) or 1  # an empty stage (few devices) passes at once
            failed = sum(r.state == "failed" for r in stage)
            succeeded = sum(r.state == "succeeded" for r in stage) if stage else total
            if failed / total > campaign.failure_threshold:
                reason = (
                    f"stage {campaign.current_stage + 1}: {failed} of {len(stage)} failed "
                    f"(threshold {campaign.failure_threshold:.0%})"
                )
                self._set_status(session, campaign, "halted", reason)
                return True
            if succeeded / total < campaign.success_threshold:
                return False
            if campaign.current_stage + 1 < len(campaign.stages):
                before = {"current_stage": campaign.current_stage}
                campaign.current_stage += 1
                campaign.updated_at = utcnow()
                record(
                    session,
                    ACTOR,
                    "campaign.stage",
                    "campaign",
                    str(campaign.id),
                    before,
                    {"current_stage": campaign.current_stage},
                )
                log.info(
                    "event=campaign_stage campaign=%d stage=%d", campaign.id, campaign.current_stage
                )
                continue
            if all(r.state in TERMINAL for r in rows):
                self._set_status(session, campaign, "completed", None)
                return True
            return False

    def _set_status(
        self, session: Session, campaign: Campaign, status: str, reason: str | None
    ) -> None:
        before = {"status": campaign.status}
        campaign.status, campaign.reason, campaign.updated_at = status, reason, utcnow()
        record(
            session,
            ACTOR,
            f"campaign.{status}",
            "campaign",
            str(campaign.id),
            before,
            {"status": status, "reason": reason},
        )
        log.info("event=campaign_%s campaign=%d reason=%s", status, campaign.id, reason or "")

    def _finish_at_deadline(
        self, session: Session, campaign: Campaign, rows: list[CampaignDevice]
    ) -> None:
        for row in rows:
            if row.state not in TERMINAL:
                row.state, row.reason, row.updated_at = "failed", "deadline passed", utcnow()
        if not self._judge(session, campaign, rows):
            self._set_status(session, campaign, "expired", "deadline passed")

    def _send(
        self,
        session: Session,
        campaign: Campaign,
        fw: Firmware,
        rows: list[CampaignDevice],
        now: datetime,
    ) -> None:
        todo = [r for r in rows if r.stage <= campaign.current_stage and r.state in OPEN_STATES]
        if not todo:
            return
        devices = {
            d.id: d
            for d in session.scalars(
                select(Device).where(Device.id.in_([r.device_id for r in todo]))
            )
        }
        centres = {
            c.id: c
            for c in session.scalars(
                select(Centre).where(Centre.id.in_({r.centre_id for r in todo}))
            )
        }
        remaining = max(1, int((_aware(campaign.deadline) - now).total_seconds()))
        ttl = min(campaign.command_ttl_s, remaining)
        url = f"{self.base_url}/v1/firmware/{fw.id}/file"
        sent = 0
        for row in todo:
            if sent >= self.max_sends:
                break
            device, centre = devices.get(row.device_id), centres.get(row.centre_id)
            if device is None or centre is None or device.status not in ("provisioned", "active"):
                self._note(row, "waiting", "device not live in the registry")
                continue
            if self.presence and not device.online:
                self._note(row, "waiting", "offline; retried until the deadline")
                continue
            if campaign.respect_window and is_open(
                now, centre.utc_offset_h, campaign.opening_hours
            ):
                clock = local_time(now, centre.utc_offset_h).strftime("%H:%M")
                self._note(row, "window", f"centre open ({clock} local, {campaign.opening_hours})")
                continue
            command = Command(
                id=f"ota-{campaign.id}-{uuid.uuid4().hex[:16]}",
                name="ota",
                args={"url": url, "sha256": fw.sha256, "version": fw.version},
                expires=expiry_ms(ttl),
            )
            if not self.link.send(row.centre_id, row.device_id, command, ttl):
                return  # the link is down: next tick
            row.state, row.command_id, row.progress_pct = "sent", command.id, None
            row.attempts += 1
            row.expires_at = utcnow() + timedelta(seconds=ttl)
            row.reason, row.updated_at = None, utcnow()
            sent += 1

    @staticmethod
    def _note(row: CampaignDevice, state: str, reason: str) -> None:
        if row.state != state or row.reason != reason:
            row.state, row.reason, row.updated_at = state, reason, utcnow()
