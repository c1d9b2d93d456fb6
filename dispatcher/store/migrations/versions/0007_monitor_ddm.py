"""Indexes for the monitor's data management pages (``/transfers/``, ``/tasks/``, ``/datasets/``).

The transfers page reads "every open request, plus the requests that ended since T" (the same
window rule as the jobs pages) one state at a time, newest change first:

- ``ddm_requests(state, updated, kind, error_code)``: each state's requests in the window, newest
  first, as a backward index range; the counts by state and kind (also when filtered by error
  code) are index-only ranges of the same index.
- ``ddm_requests(task_id, state)``: a task's requests (``/transfers/?task=N``) and the request
  counts per state next to each DDM task on ``/tasks/``.
- ``ddm_tasks(updated)``: the DDM tasks that ended in the window (the open ones come from
  ``ix_ddm_tasks_state``).

Each costs one more B-tree write when a request or task row changes.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_ddm_requests_window", "ddm_requests", ["state", "updated", "kind", "error_code"], if_not_exists=True
    )
    op.create_index("ix_ddm_requests_task", "ddm_requests", ["task_id", "state"], if_not_exists=True)
    op.create_index("ix_ddm_tasks_updated", "ddm_tasks", ["updated"], if_not_exists=True)


def downgrade() -> None:
    op.drop_index("ix_ddm_tasks_updated", table_name="ddm_tasks")
    op.drop_index("ix_ddm_requests_task", table_name="ddm_requests")
    op.drop_index("ix_ddm_requests_window", table_name="ddm_requests")
