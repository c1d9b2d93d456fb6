"""The VO in the job counters: ``vo`` in ``job_counts``, ``job_error_counts`` and their delta tables.

A VO member's monitor pages sum the counter rows of their VOs, as an admin's sum every row,
instead of counting the jobs table (issue #16). The two counter tables get ``vo`` in their
primary key, so they are created anew and backfilled from ``jobs``, ``job_events`` and
``job_errors`` by the store's own :func:`counters.rebuild` (it reads every job once: about a
minute per million jobs on PostgreSQL, with the dispatchers stopped as for any migration). The
delta tables gain the column; the rebuild empties them (what they held is recounted from the jobs).
The flow counters (transitions per hour) have no VO: their rows carry ``vo`` ''.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"  # the lead re-chains this at merge (after the highest revision then)
branch_labels = None
depends_on = None

_COUNT_KEY = ["facet", "width", "bucket", "value", "status"]
_ERROR_KEY = ["facet", "width", "bucket", "status", "component", "code", "value"]


def _count_columns() -> list[sa.Column]:
    return [
        sa.Column("facet", sa.String(length=16), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("bucket", sa.BigInteger(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.Column("last", sa.Float(), nullable=False),
    ]


def _error_columns() -> list[sa.Column]:
    return [
        sa.Column("facet", sa.String(length=16), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("bucket", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("component", sa.Integer(), nullable=False),
        sa.Column("code", sa.Integer(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.Column("example", sa.BigInteger(), nullable=False),
    ]


def _vo() -> sa.Column:
    return sa.Column("vo", sa.String(length=255), nullable=False, server_default="")


def upgrade() -> None:
    op.drop_table("job_counts")
    op.drop_table("job_error_counts")
    op.create_table(
        "job_counts", *_count_columns(), _vo(), sa.PrimaryKeyConstraint(*_COUNT_KEY, "vo", name="pk_job_counts")
    )
    op.create_table(
        "job_error_counts",
        *_error_columns(),
        _vo(),
        sa.PrimaryKeyConstraint(*_ERROR_KEY, "vo", name="pk_job_error_counts"),
    )
    op.add_column("job_count_deltas", _vo())
    op.add_column("job_error_count_deltas", _vo())
    # The backfill uses the store's own counting code, so migration and runtime cannot disagree.
    from dispatcher.store import counters

    counters.rebuild(op.get_bind())


def downgrade() -> None:
    """Fold what is pending, then sum the counters over the VOs into the old tables."""
    from dispatcher.store import counters

    conn = op.get_bind()
    while counters.fold(conn):
        pass
    for table, columns, key, sums in (
        ("job_counts", _count_columns(), _COUNT_KEY, "SUM(n), MAX(last)"),
        ("job_error_counts", _error_columns(), _ERROR_KEY, "SUM(n), MAX(example)"),
    ):
        op.create_table(f"{table}_old", *columns, sa.PrimaryKeyConstraint(*key, name=f"pk_{table}_old"))
        keys = ", ".join(key)
        op.execute(
            f"INSERT INTO {table}_old ({', '.join(c.name for c in columns)}) "
            f"SELECT {keys}, {sums} FROM {table} GROUP BY {keys}"
        )
        op.drop_table(table)
        op.rename_table(f"{table}_old", table)
        if conn.dialect.name == "postgresql":
            op.execute(f"ALTER TABLE {table} RENAME CONSTRAINT pk_{table}_old TO pk_{table}")
    for table in ("job_count_deltas", "job_error_count_deltas"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("vo")
