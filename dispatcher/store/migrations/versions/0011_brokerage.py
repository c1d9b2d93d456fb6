"""Brokerage (issue 17): job and pilot resources, queue status with history, share weights and usage.

- ``jobs.disk_mb``/``jobs.tags`` (what a job needs besides cores, memory and walltime) and an
  index for claiming the activated jobs of one share leaf;
- ``pilots.cores``/``memory_mb``/``disk_mb``/``tags`` (what a pilot advertised, for ``job why``);
- ``queue_status`` (a queue without a row is online) and ``queue_status_history``;
- ``share_weights`` (admins' live edits over the queue file) and ``share_usage`` (decayed usage
  per share leaf, with the time it was written).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("disk_mb", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("tags", sa.String(length=255), nullable=False, server_default=""))
    with op.batch_alter_table("pilots") as batch:
        for name in ("cores", "memory_mb", "disk_mb"):
            batch.add_column(sa.Column(name, sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("tags", sa.String(length=255), nullable=False, server_default=""))
    op.create_index(
        "ix_jobs_claim_leaf",
        "jobs",
        ["computing_site", "status", "vo", "prod_source_label", "owner", sa.text("current_priority DESC"), "panda_id"],
    )
    op.create_table(
        "queue_status",
        sa.Column("queue", sa.String(length=255), primary_key=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("changed_by", sa.String(length=255), nullable=False),
        sa.Column("changed_at", sa.Float(), nullable=False),
    )
    op.create_table(
        "queue_status_history",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("queue", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("changed_by", sa.String(length=255), nullable=False),
        sa.Column("changed_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_queue_status_history", "queue_status_history", ["queue", "id"])
    op.create_table(
        "share_weights",
        sa.Column("path", sa.String(length=255), primary_key=True),
        sa.Column("weight", sa.Float(), nullable=False),
        sa.Column("changed_by", sa.String(length=255), nullable=False),
        sa.Column("changed_at", sa.Float(), nullable=False),
    )
    op.create_table(
        "share_usage",
        sa.Column("vo", sa.String(length=255), nullable=False),
        sa.Column("grp", sa.String(length=255), nullable=False),
        sa.Column("owner", sa.String(length=255), nullable=False),
        sa.Column("usage", sa.Float(), nullable=False),
        sa.Column("updated", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("vo", "grp", "owner", name="pk_share_usage"),
    )


def downgrade() -> None:
    op.drop_table("share_usage")
    op.drop_table("share_weights")
    op.drop_index("ix_queue_status_history", table_name="queue_status_history")
    op.drop_table("queue_status_history")
    op.drop_table("queue_status")
    op.drop_index("ix_jobs_claim_leaf", table_name="jobs")
    with op.batch_alter_table("pilots") as batch:
        for name in ("tags", "disk_mb", "memory_mb", "cores"):
            batch.drop_column(name)
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("tags")
        batch.drop_column("disk_mb")
