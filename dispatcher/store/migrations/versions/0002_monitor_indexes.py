"""Indexes the monitor needs to stay fast at a million jobs.

- ``job_events(time)``: the plots (transitions per hour) and ``/metrics`` (dispatch rate over the
  last five minutes) read recent events by time; without it both scan the whole history.
- ``pilots(last_seen)`` and ``workers(update_time)``: the pilots page lists the newest first.

Each costs one more B-tree insert per row written; ``job_events`` gets one row per transition.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_job_events_time", "job_events", ["time"])
    op.create_index("ix_pilots_last_seen", "pilots", ["last_seen"])
    op.create_index("ix_workers_update", "workers", ["update_time"])


def downgrade() -> None:
    op.drop_index("ix_workers_update", table_name="workers")
    op.drop_index("ix_pilots_last_seen", table_name="pilots")
    op.drop_index("ix_job_events_time", table_name="job_events")
