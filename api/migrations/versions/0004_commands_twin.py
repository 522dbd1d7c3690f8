"""Device management: commands, command batches, device twins (issue #15).

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "commands",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("device_id", sa.String(32), nullable=False),
        sa.Column("centre_id", sa.String(32), nullable=False, index=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("name", sa.String(32), nullable=False, index=True),
        sa.Column("args", sa.JSON, nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("detail", sa.String(512)),
        sa.Column("progress_pct", sa.Float),
        sa.Column("batch_id", sa.String(40)),
        sa.Column("actor", sa.String(80), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("sent_at", TS),
        sa.Column("delivered_at", TS),
        sa.Column("finished_at", TS),
    )
    op.create_index("ix_commands_device", "commands", ["device_id", "created_at"])
    op.create_index("ix_commands_open", "commands", ["status", "expires_at"])
    op.create_index("ix_commands_batch", "commands", ["batch_id", "status"])
    op.create_table(
        "command_batches",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("args", sa.JSON, nullable=False),
        sa.Column("filter", sa.JSON, nullable=False),
        sa.Column("actor", sa.String(80), nullable=False),
        sa.Column("total", sa.Integer, nullable=False),
        sa.Column("skipped", sa.Integer, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
    )
    op.create_table(
        "device_twins",
        sa.Column("device_id", sa.String(32), primary_key=True),
        sa.Column("centre_id", sa.String(32), nullable=False, index=True),
        sa.Column("desired", sa.JSON),
        sa.Column("desired_version", sa.Integer, nullable=False),
        sa.Column("desired_at", TS),
        sa.Column("desired_by", sa.String(80)),
        sa.Column("reported", sa.JSON),
        sa.Column("reported_version", sa.Integer),
        sa.Column("reported_at", TS),
    )


def downgrade() -> None:
    op.drop_table("device_twins")
    op.drop_table("command_batches")
    op.drop_index("ix_commands_batch", "commands")
    op.drop_index("ix_commands_open", "commands")
    op.drop_index("ix_commands_device", "commands")
    op.drop_table("commands")
