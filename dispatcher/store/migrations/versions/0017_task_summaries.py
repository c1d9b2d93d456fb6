"""Per-task summaries of the task counters: ``task_summaries``, kept by the counter fold.

The monitor's ``/tasks/`` ranked tasks by summing every task's counter rows of the window on
each request (~500 ms at a million jobs with ~20,000 tasks holding a job not final yet, issue
#16). One row per (task, VO) now holds its jobs not final yet and the times of its latest
changes (see :mod:`dispatcher.store.task_summaries`), so a page is one index range; the index
``ix_job_counts_value`` then reads the counter rows of the page's tasks alone.

The backfill reads the task counters only (``job_counts`` rows of facet ``taskid``, one GROUP BY;
not ``jobs``), with the dispatchers stopped as for any migration; deltas still pending are added
by the next fold. The downgrade folds what is pending first (the fold keeps the table while it
exists), then drops it.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"  # the lead re-chains this at merge (after the highest revision then)
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "task_summaries",
        sa.Column("task_id", sa.BigInteger(), nullable=False),
        sa.Column("vo", sa.String(length=255), nullable=False),
        sa.Column("active", sa.BigInteger(), nullable=False),
        sa.Column("active_last", sa.Float(), nullable=False),
        sa.Column("final_last", sa.Float(), nullable=False),
        sa.Column("last", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("task_id", "vo", name="pk_task_summaries"),
    )
    # The backfill uses the store's own code, so migration and runtime cannot disagree.
    from dispatcher.store import task_summaries

    task_summaries.rebuild(op.get_bind())
    # indexes after the backfill: built once rather than maintained row by row
    op.create_index("ix_task_summaries_last", "task_summaries", ["last", "task_id"])
    op.create_index("ix_task_summaries_vo_last", "task_summaries", ["vo", "last", "task_id"])
    # the counter rows of the page's tasks alone, not every task's rows of the window
    op.create_index("ix_job_counts_value", "job_counts", ["facet", "value", "width", "bucket"])
    if op.get_bind().dialect.name == "postgresql":
        # Without it PostgreSQL multiplies the selectivities of facet, width and bucket, expects ~1,000
        # width-0 task rows where there are ~40,000, and scans them all instead of the page's tasks.
        op.execute("CREATE STATISTICS st_job_counts_bucket (mcv) ON facet, width, bucket FROM job_counts")
        op.execute("ANALYZE job_counts")


def downgrade() -> None:
    from dispatcher.store import counters

    conn = op.get_bind()
    while counters.fold(conn):
        pass
    if conn.dialect.name == "postgresql":
        op.execute("DROP STATISTICS IF EXISTS st_job_counts_bucket")
    op.drop_index("ix_job_counts_value", table_name="job_counts")
    op.drop_table("task_summaries")
