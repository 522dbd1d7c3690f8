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
    entity_id: Mapped[str] = mapped_column(String(32), index=True)
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
