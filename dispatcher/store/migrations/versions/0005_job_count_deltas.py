"""Pending job counter deltas: ``job_count_deltas`` and ``job_error_count_deltas``.

Writers used to upsert ``job_counts`` at commit, which made every claim, final and submission
transaction wait for the same few hot counter rows. From this revision on they append their
deltas here, and the dispatcher folds them into the counters about once a second. The tables
start empty: the counters backfilled by 0004 stay as they are.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "job_count_deltas",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("facet", sa.String(length=16), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("bucket", sa.BigInteger(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.Column("last", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "job_error_count_deltas",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("facet", sa.String(length=16), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("bucket", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("component", sa.Integer(), nullable=False),
        sa.Column("code", sa.Integer(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.Column("example", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    # 0016's downgrade folded what was pending (the dispatchers are stopped while migrating), so
    # dropping the delta tables loses no count; today's fold() needs 0016's columns.
    op.drop_table("job_error_count_deltas")
    op.drop_table("job_count_deltas")
