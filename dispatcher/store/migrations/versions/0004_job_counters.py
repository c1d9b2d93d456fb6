"""Job counters for the monitor: ``job_counts`` and ``job_error_counts``, backfilled from ``jobs``.

The dispatcher maintains them from now on (``dispatcher/store/counters.py``): every job insert
and state change adds its deltas in the same transaction. The backfill recomputes them from the
existing ``jobs`` and ``job_events`` rows; on a large database it reads every job once (about a
minute per million jobs), with the dispatchers stopped as for any migration.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "job_counts",
        sa.Column("facet", sa.String(length=16), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("bucket", sa.BigInteger(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.Column("last", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("facet", "width", "bucket", "value", "status", name="pk_job_counts"),
    )
    op.create_table(
        "job_error_counts",
        sa.Column("facet", sa.String(length=16), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("bucket", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("component", sa.Integer(), nullable=False),
        sa.Column("code", sa.Integer(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.Column("example", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "facet", "width", "bucket", "status", "component", "code", "value", name="pk_job_error_counts"
        ),
    )
    # The backfill uses the store's own counting code, so migration and runtime cannot disagree.
    from dispatcher.store import counters

    counters.rebuild(op.get_bind())


def downgrade() -> None:
    op.drop_table("job_error_counts")
    op.drop_table("job_counts")
