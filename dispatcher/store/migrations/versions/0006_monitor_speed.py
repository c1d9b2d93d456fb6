"""Indexes that keep the monitor's filtered job lists and counts fast at a million jobs.

The monitor's time window is "every job not final yet, plus the jobs that became final since T"
(``monitor/filters.py``). It is read as two index ranges (the non-final states, and the final
states with ``modification_time >= T``) instead of a scan of ``jobs``:

- ``jobs(owner, status, modification_time)``: a view filtered by owner counts its facets from
  ``jobs`` (the counters are per facet, not per combination); with this index it reads only the
  owner's jobs inside the window, not all of the owner's history.
- ``jobs(status, modification_time, creation_time, panda_id)``: the final jobs of the window,
  sorted by creation time, as an index-only range (``sort=created``).
- ``jobs(creation_time, panda_id) WHERE status is not final``: the non-final jobs in creation
  order, a partial index as small as the set of live jobs.

Each costs one more B-tree write per job insert and per state change that moves it.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# The non-final states when this revision was written (dispatcher/states.py). A state added later
# is simply not in the partial index: queries naming it then fall back to another plan, still exact.
_ACTIVE = "status IN ('defined', 'assigned', 'activated', 'sent', 'starting', 'running', 'holding', 'transferring')"


def upgrade() -> None:
    # IF NOT EXISTS: a database rewound to an older revision with its newer objects kept (the
    # counter migration tests do that) upgrades through here again.
    op.create_index("ix_jobs_owner_window", "jobs", ["owner", "status", "modification_time"], if_not_exists=True)
    op.create_index(
        "ix_jobs_final_created",
        "jobs",
        ["status", "modification_time", "creation_time", "panda_id"],
        if_not_exists=True,
    )
    op.create_index(
        "ix_jobs_active_created",
        "jobs",
        ["creation_time", "panda_id"],
        postgresql_where=sa.text(_ACTIVE),
        sqlite_where=sa.text(_ACTIVE),
        if_not_exists=True,
    )


def downgrade() -> None:
    op.drop_index("ix_jobs_active_created", table_name="jobs")
    op.drop_index("ix_jobs_final_created", table_name="jobs")
    op.drop_index("ix_jobs_owner_window", table_name="jobs")
