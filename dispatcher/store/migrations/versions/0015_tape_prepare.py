"""Tape staging through the storage's own protocol: ``ddm_requests.external_id`` (the storage
system's id of a bring-online request, e.g. an XRootD prepare request id) and
``ddm_requests.external_since`` (when it was made), so a stage request can be polled across
agent cycles, agent restarts and agents.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"  # the lead re-chains this at merge (after the highest revision then)
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN on both databases (constant default / nullable: no table rewrite).
    op.add_column("ddm_requests", sa.Column("external_id", sa.String(length=255), nullable=False, server_default=""))
    op.add_column("ddm_requests", sa.Column("external_since", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("ddm_requests") as batch:
        batch.drop_column("external_since")
        batch.drop_column("external_id")
