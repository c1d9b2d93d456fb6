"""The ``job_errors`` table: the errors a job carries (those of its last failed attempt), one row each.

A job's ``errors`` are replaced as a whole whenever a state change sets them (a final report, the
watchdog, a kill, the DDM agent): :func:`apply_changes <dispatcher.store.transitions.apply_changes>`
calls :func:`replace` once per batch, which is one ``DELETE`` of the batch's jobs and one append
(``COPY`` on PostgreSQL) of their new rows, whatever the batch size. A change that sets an empty
list clears them (a retried attempt that then finished shows no error).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, delete, exists, select

from ailuro.v1 import job_pb2
from dispatcher.store import bulk
from dispatcher.store.schema import job_errors, jobs

COLUMNS = ("panda_id", "seq", "attempt_nr", "component", "code", "diag")
"""The order of the tuples :func:`replace` appends."""
_CHUNK = 900


def replace(conn: Connection, items: Sequence[tuple[int, int, Sequence[job_pb2.JobError]]]) -> None:
    """Set the errors of each ``(panda_id, attempt_nr, errors)``: old rows go, the new ones are appended."""
    if not items:
        return
    ids = sorted({pid for pid, _, _ in items})
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("DELETE FROM job_errors WHERE panda_id = ANY(%s::BIGINT[])", (ids,))
    else:
        for start in range(0, len(ids), _CHUNK):
            conn.execute(delete(job_errors).where(job_errors.c.panda_id.in_(ids[start : start + _CHUNK])))
    rows = [
        (pid, seq, attempt, int(e.component), int(e.code), e.diag)
        for pid, attempt, errs in items
        for seq, e in enumerate(errs)
    ]
    bulk.append_rows(conn, job_errors, COLUMNS, rows)


def fetch(conn: Connection, ids: Iterable[int]) -> dict[int, list[job_pb2.JobError]]:
    """The errors of the given jobs, in reported order; jobs without errors are absent."""
    out: dict[int, list[job_pb2.JobError]] = defaultdict(list)
    wanted = sorted(set(ids))
    cols = (job_errors.c.panda_id, job_errors.c.component, job_errors.c.code, job_errors.c.diag)
    for start in range(0, len(wanted), _CHUNK):
        stmt = (
            select(*cols)
            .where(job_errors.c.panda_id.in_(wanted[start : start + _CHUNK]))
            .order_by(job_errors.c.panda_id, job_errors.c.seq)
        )
        for pid, component, code, diag in conn.execute(stmt):
            out[int(pid)].append(job_pb2.JobError(component=component, code=code, diag=diag))  # type: ignore[arg-type]
    return dict(out)


def has_errors() -> Any:
    """A WHERE clause over ``jobs``: the job carries at least one error."""
    return exists().where(job_errors.c.panda_id == jobs.c.panda_id)
