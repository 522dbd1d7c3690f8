"""Alerting: rules, alerts and their history, engine state, silences, channels, deliveries.

Also the centre facts the solar-yield rule needs (UTC offset, rated PV power).

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

BIG = sa.BigInteger
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("centres") as batch:
        batch.add_column(sa.Column("utc_offset_h", sa.Float, nullable=False, server_default="5.5"))
        batch.add_column(sa.Column("pv_rated_w", sa.Float))
    with op.batch_alter_table("audit_log") as batch:  # alert rule ids are up to 64 characters
        batch.alter_column("entity_id", type_=sa.String(64), existing_type=sa.String(32))
    op.create_table(
        "alert_rules",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("severity", sa.String(8), nullable=False, index=True),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("pack_key", sa.String(64), unique=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_table(
        "alerts",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("rule_id", sa.String(64), nullable=False, index=True),
        sa.Column("rule_name", sa.String(128), nullable=False),
        sa.Column("subject", sa.String(160), nullable=False),
        sa.Column("centre", sa.String(32), nullable=False, index=True),
        sa.Column("device", sa.String(32), index=True),
        sa.Column("severity", sa.String(8), nullable=False, index=True),
        sa.Column("clinical", sa.Boolean, nullable=False, index=True),
        sa.Column("state", sa.String(16), nullable=False, index=True),
        sa.Column("started_ms", BIG, nullable=False),
        sa.Column("fired_ms", BIG),
        sa.Column("resolved_ms", BIG),
        sa.Column("last_seen_ms", BIG, nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("value", sa.Float),
        sa.Column("detail", sa.JSON, nullable=False),
        sa.Column("patient_ref", sa.String(64)),
        sa.Column("during_outage", sa.Boolean, nullable=False),
        sa.Column("inhibited", sa.Boolean, nullable=False),
        sa.Column("silenced", sa.Boolean, nullable=False),
        sa.Column("edge_raised_ms", BIG),
        sa.Column("notified", sa.String(16)),
        sa.Column("acknowledged_by", sa.String(80)),
        sa.Column("acknowledged_at", TS),
        sa.Column("ack_note", sa.String(1024)),
        sa.Column("resolved_by", sa.String(80)),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_index("ix_alerts_open", "alerts", ["state", "centre"])
    op.create_index("ix_alerts_rule_subject", "alerts", ["rule_id", "subject"])
    op.create_table(
        "alert_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("alert_id", sa.String(40), nullable=False, index=True),
        sa.Column("at", TS, nullable=False),
        sa.Column("at_ms", BIG),
        sa.Column("event", sa.String(24), nullable=False),
        sa.Column("actor", sa.String(80), nullable=False),
        sa.Column("detail", sa.JSON),
    )
    op.create_table(
        "alert_conditions",
        sa.Column("rule_id", sa.String(64), primary_key=True),
        sa.Column("subject", sa.String(160), primary_key=True),
        sa.Column("state", sa.JSON, nullable=False),
    )
    op.create_table(
        "silences",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("centre", sa.String(32)),
        sa.Column("device", sa.String(32)),
        sa.Column("rule_id", sa.String(64)),
        sa.Column("severity", sa.String(8)),
        sa.Column("starts_at", TS, nullable=False),
        sa.Column("ends_at", TS, nullable=False, index=True),
        sa.Column("comment", sa.String(1024)),
        sa.Column("created_by", sa.String(80), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "notification_channels",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("url", sa.String(1024), nullable=False),
        sa.Column("secret", sa.String(128), nullable=False),
        sa.Column("scope_kind", sa.String(16), nullable=False),
        sa.Column("scope_value", sa.String(128)),
        sa.Column("min_severity", sa.String(8), nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "notifications",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("alert_id", sa.String(40), nullable=False, index=True),
        sa.Column("channel_id", sa.Integer, nullable=False, index=True),
        sa.Column("event", sa.String(16), nullable=False),
        sa.Column("clinical", sa.Boolean, nullable=False),
        sa.Column("body", sa.JSON, nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_try_at", TS, nullable=False),
        sa.Column("last_status_code", sa.Integer),
        sa.Column("last_error", sa.String(512)),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("delivered_at", TS),
    )
    op.create_index("ix_notifications_due", "notifications", ["status", "clinical", "next_try_at"])
    op.create_table(
        "delivery_attempts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("notification_id", sa.String(40), nullable=False, index=True),
        sa.Column("at", TS, nullable=False),
        sa.Column("status_code", sa.Integer),
        sa.Column("error", sa.String(512)),
        sa.Column("duration_ms", sa.Float, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "delivery_attempts",
        "notifications",
        "notification_channels",
        "silences",
        "alert_conditions",
        "alert_events",
        "alerts",
        "alert_rules",
    ):
        op.drop_table(table)
    with op.batch_alter_table("audit_log") as batch:
        batch.alter_column("entity_id", type_=sa.String(32), existing_type=sa.String(64))
    with op.batch_alter_table("centres") as batch:
        batch.drop_column("pv_rated_w")
        batch.drop_column("utc_offset_h")
