"""Firmware files and staged OTA campaigns.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "firmware",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("model", sa.String(64), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("filename", sa.String(128), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("created_by", sa.String(80), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index(
        "ux_firmware_kind_model_version", "firmware", ["kind", "model", "version"], unique=True
    )
    op.create_table(
        "campaigns",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column(
            "firmware_id",
            sa.Integer,
            sa.ForeignKey("firmware.id", ondelete="RESTRICT"),
            nullable=False,
        ),
        sa.Column("target", sa.JSON, nullable=False),
        sa.Column("stages", sa.JSON, nullable=False),
        sa.Column("success_threshold", sa.Float, nullable=False),
        sa.Column("failure_threshold", sa.Float, nullable=False),
        sa.Column("deadline", TS, nullable=False),
        sa.Column("respect_window", sa.Boolean, nullable=False),
        sa.Column("opening_hours", sa.String(16), nullable=False),
        sa.Column("command_ttl_s", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False, index=True),
        sa.Column("current_stage", sa.Integer, nullable=False),
        sa.Column("reason", sa.String(256)),
        sa.Column("created_by", sa.String(80), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_table(
        "campaign_devices",
        sa.Column(
            "campaign_id",
            sa.Integer,
            sa.ForeignKey("campaigns.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("device_id", sa.String(32), primary_key=True),
        sa.Column("centre_id", sa.String(32), nullable=False),
        sa.Column("stage", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False, index=True),
        sa.Column("progress_pct", sa.Float),
        sa.Column("reason", sa.String(512)),
        sa.Column("command_id", sa.String(64), index=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("expires_at", TS),
        sa.Column("updated_at", TS, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("campaign_devices")
    op.drop_table("campaigns")
    op.drop_index("ux_firmware_kind_model_version", table_name="firmware")
    op.drop_table("firmware")
