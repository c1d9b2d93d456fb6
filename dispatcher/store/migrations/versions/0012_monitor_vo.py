"""The monitor's VO index: a viewer who is not an admin sees the jobs of their VOs.

Every monitor query over jobs starts with the viewer's visibility rule (``jobs.vo IN (...)``,
``monitor/filters.py``), and the window is read as two ranges (the non-final states, and the final
states changed since T). ``jobs(vo, status, modification_time)`` makes both halves index ranges
inside the VO, as ``ix_jobs_owner_window`` (0006) does for an owner filter, instead of a scan of
every job of every VO. It costs one more B-tree write per job insert and per state change.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # IF NOT EXISTS: a database rewound to an older revision with its newer objects kept upgrades again
    op.create_index("ix_jobs_vo_window", "jobs", ["vo", "status", "modification_time"], if_not_exists=True)


def downgrade() -> None:
    op.drop_index("ix_jobs_vo_window", table_name="jobs")
