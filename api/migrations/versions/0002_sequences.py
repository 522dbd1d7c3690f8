"""Sequence accounting: per-device state, gaps, the reports' checkpoint.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

BIG = sa.BigInteger


def upgrade() -> None:
    op.create_table(
        "sequence_states",
        sa.Column("centre", sa.String(32), primary_key=True),
        sa.Column("device", sa.String(32), primary_key=True),
        sa.Column("epoch", sa.Integer, nullable=False),
        sa.Column("low", BIG, nullable=False),
        sa.Column("high", BIG, nullable=False),
        sa.Column("low_ts", BIG, nullable=False),
        sa.Column("high_ts", BIG, nullable=False),
        sa.Column("prev_high_ts", BIG, nullable=False),
        sa.Column("stored", BIG, nullable=False),
        sa.Column("late_gaps", BIG, nullable=False),
        sa.Column("late_readings", BIG, nullable=False),
        sa.Column("lost_gaps", BIG, nullable=False),
        sa.Column("lost_readings", BIG, nullable=False),
        sa.Column("recovered_readings", BIG, nullable=False),
        sa.Column("resets", sa.Integer, nullable=False),
        sa.Column("first_report_ns", BIG, nullable=False),
        sa.Column("last_report_ns", BIG, nullable=False),
    )
    op.create_table(
        "sequence_gaps",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("centre", sa.String(32), nullable=False),
        sa.Column("device", sa.String(32), nullable=False),
        sa.Column("epoch", sa.Integer, nullable=False),
        sa.Column("lo", BIG, nullable=False),
        sa.Column("hi", BIG, nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("opened_ns", BIG, nullable=False),
        sa.Column("ended_ns", BIG),
        sa.Column("ts_before", BIG, nullable=False),
        sa.Column("ts_after", BIG, nullable=False),
        sa.Column("checked_ns", BIG),
    )
    op.create_index("ix_sequence_gaps_device", "sequence_gaps", ["centre", "device", "status"])
    op.create_index("ix_sequence_gaps_status_opened", "sequence_gaps", ["status", "opened_ns"])
    op.create_table(
        "sequence_checkpoint",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("until_ns", BIG, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("sequence_checkpoint")
    op.drop_table("sequence_gaps")
    op.drop_table("sequence_states")
