"""What each gateway holds of its downlink: edge rule sets and credential updates.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "gateway_downlink",
        sa.Column(
            "gateway_id",
            sa.String(32),
            sa.ForeignKey("devices.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("centre_id", sa.String(32), nullable=False, index=True),
        sa.Column("rules_sent_seq", sa.Integer, nullable=False),
        sa.Column("rules_sent_at", TS),
        sa.Column("rules_answered_seq", sa.Integer, nullable=False),
        sa.Column("rules_held_seq", sa.Integer, nullable=False),
        sa.Column("rules_held_count", sa.Integer),
        sa.Column("rules_held_at", TS),
        sa.Column("rules_error", sa.String(256)),
        sa.Column("rules_error_seq", sa.Integer),
        sa.Column("rules_error_at", TS),
        sa.Column("creds_sent_seq", sa.Integer, nullable=False),
        sa.Column("creds_sent_at", TS),
        sa.Column("creds_answered_seq", sa.Integer, nullable=False),
        sa.Column("creds_answered_at", TS),
        sa.Column("creds_error", sa.String(256)),
        sa.Column("creds_error_seq", sa.Integer),
        sa.Column("creds_error_device", sa.String(32)),
        sa.Column("creds_error_at", TS),
        sa.Column("stale_acks", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("gateway_downlink")
