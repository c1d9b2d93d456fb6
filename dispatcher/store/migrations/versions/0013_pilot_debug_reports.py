"""Pilot debug reports: the answers to DEBUG commands (``ailuro job debug``), kept until the
DebugJob call that asked for one reads it (possibly in another dispatcher process).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pilot_debug_reports",
        sa.Column("command_id", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("panda_id", sa.BigInteger(), nullable=False),
        sa.Column("pilot_id", sa.String(length=255), nullable=False),
        sa.Column("snapshot", sa.Text(), nullable=False),
        sa.Column("created", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("pilot_debug_reports")
