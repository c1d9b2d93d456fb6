"""Job errors in their own table: ``job_errors`` (one row per error) replaces ``jobs.errors``, which
held them serialized as an otherwise empty ``Job`` message.

The upgrade moves every stored list into rows (attempt_nr: the job's attempt when the list was
last written, the closest the blob can tell) and drops the column; the downgrade serializes the
rows back. Both stream the jobs in batches, so a large table is not read into memory at once.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

from ailuro.v1 import job_pb2

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_BATCH = 2000

_job_errors = sa.table(
    "job_errors",
    sa.column("panda_id", sa.BigInteger()),
    sa.column("seq", sa.Integer()),
    sa.column("attempt_nr", sa.Integer()),
    sa.column("component", sa.Integer()),
    sa.column("code", sa.Integer()),
    sa.column("diag", sa.Text()),
)
_jobs = sa.table(
    "jobs",
    sa.column("panda_id", sa.BigInteger()),
    sa.column("attempt_nr", sa.Integer()),
    sa.column("errors", sa.LargeBinary()),
)


def _error_rows(batch: Sequence[Any]) -> list[dict[str, Any]]:
    out = []
    for pid, attempt, blob in batch:
        for seq, e in enumerate(job_pb2.Job.FromString(bytes(blob)).errors):
            row = {"panda_id": pid, "seq": seq, "attempt_nr": attempt, "component": e.component, "code": e.code}
            out.append({**row, "diag": e.diag})
    return out


def upgrade() -> None:
    op.create_table(
        "job_errors",
        sa.Column("panda_id", sa.BigInteger(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("attempt_nr", sa.Integer(), nullable=False),
        sa.Column("component", sa.Integer(), nullable=False),
        sa.Column("code", sa.Integer(), nullable=False),
        sa.Column("diag", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("panda_id", "seq", name="pk_job_errors"),
    )
    op.create_index("ix_job_errors_code", "job_errors", ["component", "code"])
    conn = op.get_bind()
    stmt = (
        sa.select(_jobs.c.panda_id, _jobs.c.attempt_nr, _jobs.c.errors)
        .where(_jobs.c.errors.is_not(None))
        .order_by(_jobs.c.panda_id)
    )
    last = None
    while True:  # keyset pages: a server-side cursor cannot stay open across the inserts on SQLite
        page = stmt if last is None else stmt.where(_jobs.c.panda_id > last)
        batch = list(conn.execute(page.limit(_BATCH)))
        if not batch:
            break
        rows = _error_rows(batch)
        if rows:
            conn.execute(_job_errors.insert(), rows)
        last = batch[-1][0]
    op.drop_column("jobs", "errors")  # SQLite >= 3.35 drops it in place (the column has no index)
    # the error counters are recounted from the rows, with the store's own code (a database
    # upgraded from before 0004 had no rows to count them from until now)
    from dispatcher.store import counters

    counters.rebuild_errors(conn)


def downgrade() -> None:
    op.add_column("jobs", sa.Column("errors", sa.LargeBinary(), nullable=True))
    conn = op.get_bind()
    ids_stmt = sa.select(_job_errors.c.panda_id).distinct().order_by(_job_errors.c.panda_id).limit(_BATCH)
    rows_stmt = sa.select(_job_errors.c.panda_id, _job_errors.c.component, _job_errors.c.code, _job_errors.c.diag)
    update = _jobs.update().where(_jobs.c.panda_id == sa.bindparam("pid")).values(errors=sa.bindparam("blob"))
    last = None
    while True:  # a batch of jobs at a time, each job's rows whole
        ids = [r[0] for r in conn.execute(ids_stmt if last is None else ids_stmt.where(_job_errors.c.panda_id > last))]
        if not ids:
            break
        held: dict[int, job_pb2.Job] = {}
        page = rows_stmt.where(_job_errors.c.panda_id.in_(ids)).order_by(_job_errors.c.panda_id, _job_errors.c.seq)
        for pid, component, code, diag in conn.execute(page):
            held.setdefault(pid, job_pb2.Job()).errors.add(component=component, code=code, diag=diag)
        conn.execute(update, [{"pid": pid, "blob": job.SerializeToString()} for pid, job in held.items()])
        last = ids[-1]
    op.drop_index("ix_job_errors_code", table_name="job_errors")
    op.drop_table("job_errors")
