"""Registry: centres, devices (and gateways), API tokens, audit log.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "centres",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("village", sa.String(128)),
        sa.Column("district", sa.String(128)),
        sa.Column("state", sa.String(128)),
        sa.Column("country", sa.String(64)),
        sa.Column("latitude", sa.Float),
        sa.Column("longitude", sa.Float),
        sa.Column("hub_id", sa.String(32), sa.ForeignKey("centres.id", ondelete="RESTRICT")),
        sa.Column("key_version", sa.Integer, nullable=False),
        sa.Column("created_at", TZ, nullable=False),
    )
    for column in ("district", "state", "country", "hub_id"):
        op.create_index(f"ix_centres_{column}", "centres", [column])
    op.create_table(
        "devices",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column(
            "centre_id",
            sa.String(32),
            sa.ForeignKey("centres.id", ondelete="RESTRICT"),
            nullable=False,
        ),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("model", sa.String(64), nullable=False),
        sa.Column("serial", sa.String(64)),
        sa.Column("firmware_version", sa.String(64)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("credential_version", sa.Integer, nullable=False),
        sa.Column("dynsec_seq", sa.Integer, nullable=False),
        sa.Column("online", sa.Boolean, nullable=False),
        sa.Column("last_seen", TZ),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_index("ix_devices_centre_kind", "devices", ["centre_id", "kind"])
    for column in ("kind", "model", "status"):
        op.create_index(f"ix_devices_{column}", "devices", [column])
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("revoked", sa.Boolean, nullable=False),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", TZ, nullable=False),
        sa.Column("actor", sa.String(80), nullable=False),
        sa.Column("action", sa.String(40), nullable=False),
        sa.Column("entity", sa.String(20), nullable=False),
        sa.Column("entity_id", sa.String(32), nullable=False),
        sa.Column("before", sa.JSON),
        sa.Column("after", sa.JSON),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    op.create_index("ix_audit_log_entity_id", "audit_log", ["entity_id"])


def downgrade() -> None:
    op.drop_table("audit_log")
    op.drop_table("api_tokens")
    op.drop_table("devices")
    op.drop_table("centres")
