"""The campaign runner: a thread of the API process that moves campaigns on.

Every ``interval`` seconds (sooner when the command service wrote an
acknowledgement) it records where each device's ``ota`` command stands and
which devices announced the campaign's version, then for each running
campaign: expires the commands nobody answered (the device is retried), halts
the campaign when the current stage's failure rate passes its threshold, opens
the next stage when the success rate reaches its threshold, completes it when
every device is done, and sends ``ota`` to the open stages' waiting devices
that are online and whose centre is closed (the maintenance window), at most
``max_sends`` per tick. At the deadline what is left fails (``deadline passed``).

The ``ota`` commands are ordinary commands (:mod:`api.services.commands`):
a ``commands`` row per send (actor ``campaign:{id}``, audited
``command.send``, in the device's command history with its status and
expiry), committed before it is published through the API's one device link
(:class:`api.device_link.DeviceLink`), whose ``cmd/ack`` follower moves it on.
The runner reads the command's status (``delivered`` with ``progress_pct``,
``succeeded``, ``failed`` with the device's reason, ``expired``) into the
campaign's device row. A device has succeeded when the registry holds the
campaign's version for it (presence writes the ``fw`` of each birth); with
presence off (no births followed) its ``done`` acknowledgement is enough.

All state lives in the registry (``campaigns``, ``campaign_devices``,
``commands``), so an API restart continues where it stopped. ``clock`` (UTC
now) decides the windows and the deadline; tests replace it.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

from sqlalchemy import and_, select
from sqlalchemy.orm import Session, sessionmaker

from api.campaign_metrics import CampaignMetrics
from api.command_schemas import CommandState
from api.db.models import (
    Campaign,
    CampaignDevice,
    Centre,
    CommandRow,
    Device,
    Firmware,
    utcnow,
)
from api.errors import ApiError
from api.services import commands
from api.services.audit import record
from api.services.campaigns import TERMINAL
from api.windows import is_open, local_time
from mqttlink.paho_link import MqttLink

log = logging.getLogger(__name__)
ACTOR = "campaign-runner"
OPEN_STATES = ("waiting", "window")
IN_FLIGHT = ("sent", "downloading")
RETRY_DETAILS = frozenset({"expired", "busy"})


class CommandSender(commands.Publisher, Protocol):
    """The API's device link, as the runner uses it."""

    @property
    def link(self) -> MqttLink:
        """The broker connection (nothing is sent while it is down)."""


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class CampaignRunner:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        sender: CommandSender,
        base_url: str,
        *,
        interval: float = 2.0,
        max_sends: int = 200,
        presence: bool = True,
        clock: Callable[[], datetime] | None = None,
        metrics: CampaignMetrics | None = None,
    ) -> None:
        self.sessions = sessions
        self.sender = sender
        self.base_url = base_url
        self.interval = interval
        self.max_sends = max_sends
        self.presence = presence  # False: no online flags nor births in the registry
        self.clock: Callable[[], datetime] = clock or (lambda: datetime.now(UTC))
        self.metrics = metrics
        self.ticks = 0
        self._stop = threading.Event()
        self._woken = threading.Event()
        self._thread = threading.Thread(target=self._run, name="campaign-runner", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._woken.set()
        self._thread.join(timeout=10)

    def wake(self) -> None:
        """An acknowledgement was written: look sooner than ``interval`` (any thread)."""
        self._woken.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # the runner's outermost loop: log and go on
                log.exception("event=campaign_tick_failed")
            self._wait()

    def _wait(self) -> None:
        """Sleep ``interval``, or less when woken (then a short batch window)."""
        if self._woken.wait(self.interval):
            self._woken.clear()
            self._stop.wait(0.05)

    # -- one pass ---------------------------------------------------------------------------
    def tick(self) -> None:
        sends: list[str] = []
        with self.sessions() as session:
            with session.begin():
                self._follow_commands(session)
                self._confirm_versions(session)
                for campaign in session.scalars(
                    select(Campaign).where(Campaign.status == "running")
                ):
                    self._step(session, campaign, sends)
            if sends:  # committed: every acknowledgement finds its command row
                with session.begin():
                    self._publish(session, sends)
        if self.metrics is not None:
            self.metrics.ticked()
        self.ticks += 1

    def _count(self, outcome: str, n: int = 1) -> None:
        if self.metrics is not None and n:
            self.metrics.ota.labels(outcome).inc(n)

    def _follow_commands(self, session: Session) -> None:
        """Where each in-flight ``ota`` command stands (the command service's acks)."""
        joined = session.execute(
            select(CampaignDevice, CommandRow)
            .join(CommandRow, CommandRow.id == CampaignDevice.command_id)
            .where(
                CampaignDevice.state.in_(IN_FLIGHT),
                CommandRow.status != CommandState.PENDING.value,
            )
        )
        for row, command in joined:
            self._apply(row, command)

    def _apply(self, row: CampaignDevice, command: CommandRow) -> None:
        status, detail = CommandState(command.status), command.detail
        if status == CommandState.DELIVERED:
            pct = command.progress_pct if command.progress_pct is not None else 0.0
            self._move(row, "downloading", detail, pct)
        elif status == CommandState.SUCCEEDED:
            if self.presence:
                self._move(row, "downloading", "installed; waiting for its birth message", 100.0)
            else:
                self._move(row, "succeeded", "the device acknowledged done", 100.0)
                self._count("succeeded")
        elif status == CommandState.EXPIRED or (detail or "") in RETRY_DETAILS:
            swept = status == CommandState.EXPIRED and detail == commands.SWEPT
            reason = (
                "no answer before the command expired" if swept else f"device answered {detail}"
            )
            self._retry(row, f"{reason}; retried")
            self._count("busy" if detail == "busy" else "expired")
        else:
            self._note(row, "failed", detail or "failed")
            self._count("failed")

    def _confirm_versions(self, session: Session) -> None:
        """Devices whose registry version is their campaign's: succeeded."""
        if not self.presence:
            return
        joined = session.execute(
            select(CampaignDevice, Firmware.version)
            .join(Campaign, Campaign.id == CampaignDevice.campaign_id)
            .join(Firmware, Firmware.id == Campaign.firmware_id)
            .join(
                Device,
                and_(
                    Device.id == CampaignDevice.device_id,
                    Device.centre_id == CampaignDevice.centre_id,
                ),
            )
            .where(
                CampaignDevice.state.not_in(TERMINAL),
                Campaign.status != "cancelled",
                Device.firmware_version == Firmware.version,
            )
        )
        for row, version in joined:
            self._move(row, "succeeded", f"announced fw={version}", 100.0)
            self._count("succeeded")

    def _step(self, session: Session, campaign: Campaign, sends: list[str]) -> None:
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
                self._retry(row, "no answer before the command expired; retried")
                self._count("expired")
        if self._judge(session, campaign, rows):
            return
        self._send(session, campaign, fw, rows, now, sends)

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
        sends: list[str],
    ) -> None:
        todo = [r for r in rows if r.stage <= campaign.current_stage and r.state in OPEN_STATES]
        if not todo or not self.sender.link.connected.is_set():
            return  # nothing to do, or the link is down: next tick
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
        args = {"url": f"{self.base_url}/v1/firmware/{fw.id}/file", "sha256": fw.sha256}
        args["version"] = fw.version
        for row in todo:
            if len(sends) >= self.max_sends:
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
            expires = utcnow() + timedelta(seconds=ttl)
            try:
                command = commands.create(
                    session,
                    f"campaign:{campaign.id}",
                    device,
                    "ota",
                    args,
                    expires,
                    command_id=f"ota-{campaign.id}-{uuid.uuid4().hex[:16]}",
                    audit={"campaign": campaign.id, "stage": row.stage},
                )
            except ApiError as exc:  # the catalogue refused it: this device cannot take it
                self._note(row, "failed", str(exc))
                continue
            self._move(row, "sent", None, None)
            row.updated_at = utcnow()
            row.command_id, row.expires_at = command.id, expires
            row.attempts += 1
            sends.append(command.id)

    def _publish(self, session: Session, sends: list[str]) -> None:
        """Publish the committed commands; one the broker refuses stays pending (swept
        ``expired``, then retried)."""
        now = datetime.now(UTC)
        rows = session.scalars(select(CommandRow).where(CommandRow.id.in_(sends)))
        published = 0
        try:
            for row in rows:
                published += commands.publish(self.sender, row, now)
        except ApiError as exc:
            log.warning("event=campaign_send_failed error=%s", exc)
        self._count("sent", published)

    def _retry(self, row: CampaignDevice, reason: str) -> None:
        row.state, row.command_id, row.expires_at = "waiting", None, None
        row.reason, row.updated_at = reason, utcnow()

    @staticmethod
    def _note(row: CampaignDevice, state: str, reason: str | None) -> None:
        if row.state != state or row.reason != reason:
            row.state, row.reason, row.updated_at = state, reason, utcnow()

    @classmethod
    def _move(
        cls, row: CampaignDevice, state: str, reason: str | None, progress: float | None
    ) -> None:
        if row.progress_pct != progress:
            row.progress_pct, row.updated_at = progress, utcnow()
        cls._note(row, state, reason)
