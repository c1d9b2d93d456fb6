"""Pilots bound to leases: ``pilots.principal`` (who may present a pilot id) and
``jobs.kill_delivered`` (the kill command reached the pilot, so a later "finished" does not win).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"  # given 0013, which main's pilot_debug_reports took first
down_revision = "0013"  # the lead re-chains this at merge (after the highest revision then)
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Existing rows are bound to no one: the next principal to present such a pilot id owns it.
    # Plain ADD COLUMN on both databases (constant defaults: no table rewrite, triggers kept).
    op.add_column("pilots", sa.Column("principal", sa.String(length=520), nullable=False, server_default=""))
    op.add_column("jobs", sa.Column("kill_delivered", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("kill_delivered")
    with op.batch_alter_table("pilots") as batch:
        batch.drop_column("principal")
