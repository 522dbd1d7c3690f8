"""The registry tables (SQLAlchemy 2). Changes need an Alembic revision in ``api/migrations``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class Centre(Base):
    __tablename__ = "centres"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    village: Mapped[str | None] = mapped_column(String(128))
    district: Mapped[str | None] = mapped_column(String(128), index=True)
    state: Mapped[str | None] = mapped_column(String(128), index=True)
    country: Mapped[str | None] = mapped_column(String(64), index=True)
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)
    hub_id: Mapped[str | None] = mapped_column(
        String(32), ForeignKey("centres.id", ondelete="RESTRICT"), index=True
    )
    # local time = UTC + offset (solar-yield rule's day); rated PV array power (W)
    utc_offset_h: Mapped[float] = mapped_column(Float, default=5.5)
    pv_rated_w: Mapped[float | None] = mapped_column(Float)
    key_version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Device(Base):
    """A device or a gateway (``kind == "gateway"``): one MQTT client each, username == id."""

    __tablename__ = "devices"
    __table_args__ = (Index("ix_devices_centre_kind", "centre_id", "kind"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    centre_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("centres.id", ondelete="RESTRICT")
    )
    kind: Mapped[str] = mapped_column(String(32), index=True)
    model: Mapped[str] = mapped_column(String(64), index=True)
    serial: Mapped[str | None] = mapped_column(String(64))
    firmware_version: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), index=True, default="provisioned")
    credential_version: Mapped[int] = mapped_column(Integer, default=1)
    dynsec_seq: Mapped[int] = mapped_column(Integer, default=0)
    online: Mapped[bool] = mapped_column(Boolean, default=False)
    last_seen: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AuditEntry(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(80))
    action: Mapped[str] = mapped_column(String(40))
    entity: Mapped[str] = mapped_column(String(20))
    entity_id: Mapped[str] = mapped_column(String(64), index=True)  # an alert rule's: 64
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class SequenceState(Base):
    """Sequence accounting of one device (``api.services.sequences``); times in ns."""

    __tablename__ = "sequence_states"

    centre: Mapped[str] = mapped_column(String(32), primary_key=True)
    device: Mapped[str] = mapped_column(String(32), primary_key=True)
    epoch: Mapped[int] = mapped_column(Integer, default=1)
    low: Mapped[int] = mapped_column(BigInteger)
    high: Mapped[int] = mapped_column(BigInteger)
    low_ts: Mapped[int] = mapped_column(BigInteger)  # device time (ms) of ``low``
    high_ts: Mapped[int] = mapped_column(BigInteger)  # device time (ms) of ``high``
    prev_high_ts: Mapped[int] = mapped_column(BigInteger, default=-1)  # of the epoch before
    stored: Mapped[int] = mapped_column(BigInteger, default=0)
    late_gaps: Mapped[int] = mapped_column(BigInteger, default=0)
    late_readings: Mapped[int] = mapped_column(BigInteger, default=0)
    lost_gaps: Mapped[int] = mapped_column(BigInteger, default=0)
    lost_readings: Mapped[int] = mapped_column(BigInteger, default=0)
    recovered_readings: Mapped[int] = mapped_column(BigInteger, default=0)
    resets: Mapped[int] = mapped_column(Integer, default=0)
    first_report_ns: Mapped[int] = mapped_column(BigInteger)
    last_report_ns: Mapped[int] = mapped_column(BigInteger)


class SequenceGap(Base):
    """Missing readings ``lo..hi`` of one device: ``open``, ``closed`` (late) or ``lost``."""

    __tablename__ = "sequence_gaps"
    __table_args__ = (
        Index("ix_sequence_gaps_device", "centre", "device", "status"),
        Index("ix_sequence_gaps_status_opened", "status", "opened_ns"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    centre: Mapped[str] = mapped_column(String(32))
    device: Mapped[str] = mapped_column(String(32))
    epoch: Mapped[int] = mapped_column(Integer)
    lo: Mapped[int] = mapped_column(BigInteger)
    hi: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(8))
    opened_ns: Mapped[int] = mapped_column(BigInteger)
    ended_ns: Mapped[int | None] = mapped_column(BigInteger)
    # device times (ms) of the stored readings either side: where to look in storage
    ts_before: Mapped[int] = mapped_column(BigInteger)
    ts_after: Mapped[int] = mapped_column(BigInteger)
    checked_ns: Mapped[int | None] = mapped_column(BigInteger)  # looked up in storage


class SequenceCheckpoint(Base):
    """One row: the ``sequences`` reports up to ``until_ns`` were merged."""

    __tablename__ = "sequence_checkpoint"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    until_ns: Mapped[int] = mapped_column(BigInteger)


class AlertRule(Base):
    """A rule (``alerting.rules.Rule``): ``spec`` is its RuleSpec JSON, as validated."""

    __tablename__ = "alert_rules"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    severity: Mapped[str] = mapped_column(String(8), index=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    version: Mapped[int] = mapped_column(Integer, default=1)
    # a rule of the default pack (``gramlink alerts install-defaults``): its pack key
    pack_key: Mapped[str | None] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Alert(Base):
    """One alert: one trouble of one rule for one subject (repeats fold into it).

    ``state``: pending, firing, acknowledged or resolved. Times ``*_ms`` are
    device time (epoch ms); ``*_at`` are the engine's wall clock.
    """

    __tablename__ = "alerts"
    __table_args__ = (
        Index("ix_alerts_open", "state", "centre"),
        Index("ix_alerts_rule_subject", "rule_id", "subject"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    rule_id: Mapped[str] = mapped_column(String(64), index=True)
    rule_name: Mapped[str] = mapped_column(String(128))
    subject: Mapped[str] = mapped_column(String(160))
    centre: Mapped[str] = mapped_column(String(32), index=True)
    device: Mapped[str | None] = mapped_column(String(32), index=True)
    severity: Mapped[str] = mapped_column(String(8), index=True)
    clinical: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    state: Mapped[str] = mapped_column(String(16), index=True)
    started_ms: Mapped[int] = mapped_column(BigInteger)
    fired_ms: Mapped[int | None] = mapped_column(BigInteger)
    resolved_ms: Mapped[int | None] = mapped_column(BigInteger)
    last_seen_ms: Mapped[int] = mapped_column(BigInteger)
    count: Mapped[int] = mapped_column(Integer, default=1)
    value: Mapped[float | None] = mapped_column(Float)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    patient_ref: Mapped[str | None] = mapped_column(String(64))
    # the episode happened while the centre was offline (seen in its backlog)
    during_outage: Mapped[bool] = mapped_column(Boolean, default=False)
    inhibited: Mapped[bool] = mapped_column(Boolean, default=False)
    silenced: Mapped[bool] = mapped_column(Boolean, default=False)
    # raised at the centre's gateway first (issue #13), at this device time
    edge_raised_ms: Mapped[int | None] = mapped_column(BigInteger)
    notified: Mapped[str | None] = mapped_column(String(16))  # last event notified
    acknowledged_by: Mapped[str | None] = mapped_column(String(80))
    acknowledged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    ack_note: Mapped[str | None] = mapped_column(String(1024))
    resolved_by: Mapped[str | None] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AlertEvent(Base):
    """An alert's history: every transition, by whom, with what."""

    __tablename__ = "alert_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    alert_id: Mapped[str] = mapped_column(String(40), index=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    at_ms: Mapped[int | None] = mapped_column(BigInteger)  # device time, when from a reading
    event: Mapped[str] = mapped_column(String(24))
    actor: Mapped[str] = mapped_column(String(80), default="engine")
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class AlertCondition(Base):
    """The engine's state of one rule for one subject (``alerting.evaluation.State``)."""

    __tablename__ = "alert_conditions"

    rule_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    subject: Mapped[str] = mapped_column(String(160), primary_key=True)
    state: Mapped[dict[str, Any]] = mapped_column(JSON)


class Silence(Base):
    """No notifications for matching alerts between ``starts_at`` and ``ends_at``.

    Every non-null matcher must match (centre, device, rule, severity).
    """

    __tablename__ = "silences"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    centre: Mapped[str | None] = mapped_column(String(32))
    device: Mapped[str | None] = mapped_column(String(32))
    rule_id: Mapped[str | None] = mapped_column(String(64))
    severity: Mapped[str | None] = mapped_column(String(8))
    starts_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ends_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    comment: Mapped[str | None] = mapped_column(String(1024))
    created_by: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class NotificationChannel(Base):
    """Where notifications go: a webhook for a scope (``alerting.rules.Scope``)."""

    __tablename__ = "notification_channels"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128))
    type: Mapped[str] = mapped_column(String(16), default="webhook")
    url: Mapped[str] = mapped_column(String(1024))
    secret: Mapped[str] = mapped_column(String(128))
    scope_kind: Mapped[str] = mapped_column(String(16), default="all")
    scope_value: Mapped[str | None] = mapped_column(String(128))
    min_severity: Mapped[str] = mapped_column(String(8), default="info")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Notification(Base):
    """One notification of one alert event to one channel: the delivery log's head.

    ``id`` is the delivery id the receiver de-duplicates on. ``status``: queued,
    delivered or failed (kept trying past ``NOTIFY_FAILED_AFTER``: visible, never dropped).
    """

    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_due", "status", "clinical", "next_try_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    alert_id: Mapped[str] = mapped_column(String(40), index=True)
    channel_id: Mapped[int] = mapped_column(Integer, index=True)
    event: Mapped[str] = mapped_column(String(16))  # firing, resolved, episode, ...
    clinical: Mapped[bool] = mapped_column(Boolean, default=False)
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(12), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_try_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(512))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class DeliveryAttempt(Base):
    __tablename__ = "delivery_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    notification_id: Mapped[str] = mapped_column(String(40), index=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(String(512))
    duration_ms: Mapped[float] = mapped_column(Float)


class CommandRow(Base):
    """A command to one device (issue #15); ``batch_id`` when sent to many by a filter.

    ``status``: pending (published, or waiting for its turn in a batch while
    ``sent_at`` is empty) → delivered (the device acknowledged ``accepted``) →
    succeeded / failed / expired. Timestamps are the API's clock (UTC).
    """

    __tablename__ = "commands"
    __table_args__ = (
        Index("ix_commands_device", "device_id", "created_at"),
        Index("ix_commands_open", "status", "expires_at"),
        Index("ix_commands_batch", "batch_id", "status"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    device_id: Mapped[str] = mapped_column(String(32))
    centre_id: Mapped[str] = mapped_column(String(32), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(32), index=True)
    args: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(12))
    detail: Mapped[str | None] = mapped_column(String(512))
    progress_pct: Mapped[float | None] = mapped_column(Float)
    batch_id: Mapped[str | None] = mapped_column(String(40))
    actor: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class CommandBatch(Base):
    """One command sent to every device a filter matched, at a bounded rate."""

    __tablename__ = "command_batches"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(32))
    args: Mapped[dict[str, Any]] = mapped_column(JSON)
    filter: Mapped[dict[str, Any]] = mapped_column(JSON)
    actor: Mapped[str] = mapped_column(String(80))
    total: Mapped[int] = mapped_column(Integer)
    skipped: Mapped[int] = mapped_column(Integer, default=0)  # matched, kind lacks the command
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class DeviceTwin(Base):
    """A device's desired configuration (ours, versioned) and what it last reported."""

    __tablename__ = "device_twins"

    device_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    centre_id: Mapped[str] = mapped_column(String(32), index=True)
    desired: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    desired_version: Mapped[int] = mapped_column(Integer, default=0)
    desired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    desired_by: Mapped[str | None] = mapped_column(String(80))
    reported: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    reported_version: Mapped[int | None] = mapped_column(Integer)
    reported_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Firmware(Base):
    """An uploaded firmware file (``api.firmware_store`` keeps the bytes, by id)."""

    __tablename__ = "firmware"
    __table_args__ = (
        Index("ux_firmware_kind_model_version", "kind", "model", "version", unique=True),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(64))
    version: Mapped[str] = mapped_column(String(64))
    filename: Mapped[str] = mapped_column(String(128))
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    created_by: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Campaign(Base):
    """A staged OTA roll-out; the runner (``api.campaign_runner``) moves it on."""

    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128))
    firmware_id: Mapped[int] = mapped_column(ForeignKey("firmware.id", ondelete="RESTRICT"))
    target: Mapped[dict[str, Any]] = mapped_column(JSON)  # the filter as given
    stages: Mapped[list[int]] = mapped_column(JSON)  # cumulative percentages, e.g. [5, 25, 100]
    success_threshold: Mapped[float] = mapped_column(Float)  # 0..1 of a stage's devices
    failure_threshold: Mapped[float] = mapped_column(Float)  # 0..1; passed: halt
    deadline: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    respect_window: Mapped[bool] = mapped_column(Boolean, default=True)
    opening_hours: Mapped[str] = mapped_column(String(16))  # local "HH:MM-HH:MM"
    command_ttl_s: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), index=True)
    current_stage: Mapped[int] = mapped_column(Integer, default=0)
    reason: Mapped[str | None] = mapped_column(String(256))
    created_by: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class CampaignDevice(Base):
    """One device of a campaign: its stage and where its update stands."""

    __tablename__ = "campaign_devices"

    campaign_id: Mapped[int] = mapped_column(
        ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True
    )
    device_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    centre_id: Mapped[str] = mapped_column(String(32))
    stage: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), index=True)
    progress_pct: Mapped[float | None] = mapped_column(Float)
    reason: Mapped[str | None] = mapped_column(String(512))
    command_id: Mapped[str | None] = mapped_column(String(64), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class GatewayDownlink(Base):
    """What a gateway holds of its downlink (``api.services.gateway_downlink``).

    Per channel (``rules``: the centre's edge rule set; ``creds``: credential
    updates), numbered from the gateway's ``Device.dynsec_seq``: the newest update
    sent, the newest the gateway answered, and the last one it rejected (its error).
    For rules, ``rules_held_*`` is the set the gateway keeps (its newest ``ok``).
    """

    __tablename__ = "gateway_downlink"

    gateway_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True
    )
    centre_id: Mapped[str] = mapped_column(String(32), index=True)
    rules_sent_seq: Mapped[int] = mapped_column(Integer, default=0)
    rules_sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    rules_answered_seq: Mapped[int] = mapped_column(Integer, default=0)
    rules_held_seq: Mapped[int] = mapped_column(Integer, default=0)
    rules_held_count: Mapped[int | None] = mapped_column(Integer)
    rules_held_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    rules_error: Mapped[str | None] = mapped_column(String(256))
    rules_error_seq: Mapped[int | None] = mapped_column(Integer)
    rules_error_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    creds_sent_seq: Mapped[int] = mapped_column(Integer, default=0)
    creds_sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    creds_answered_seq: Mapped[int] = mapped_column(Integer, default=0)
    creds_answered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    creds_error: Mapped[str | None] = mapped_column(String(256))
    creds_error_seq: Mapped[int | None] = mapped_column(Integer)
    creds_error_device: Mapped[str | None] = mapped_column(String(32))
    creds_error_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    stale_acks: Mapped[int] = mapped_column(Integer, default=0)
