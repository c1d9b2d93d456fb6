"""Steering a task once it runs: retry its failed jobs, abort it, and the lost-input policy.

Kept apart from :mod:`dispatcher.services.tasks` (submission and the step machine) so both stay
short. Everything here works on one open connection: the caller (the service) commits it together
with the audit row. Who may steer a task is the policy module's rule
(:func:`dispatcher.auth.policy.may_steer_task`); :func:`may_steer` only turns its answer into an error.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, select, update

from ailuro import errorcodes
from ailuro.errors import FailedPrecondition, NotFound, PermissionDenied
from dispatcher.auth.policy import Resource, may_steer_task
from dispatcher.config import DispatcherConfig
from dispatcher.identity import Identity
from dispatcher.store import catalog
from dispatcher.store import jobs as store
from dispatcher.store.schema import ddm_files, ddm_requests, ddm_tasks, jobs

ENDED_JOB_STATES = ("finished", "failed", "cancelled", "closed")
RETRYABLE_JOB_STATES = ("failed", "cancelled", "closed")
LOST_POLICIES = ("fail", "partial")
"""``lost_inputs`` values: fail the task, or finish it ``partial`` without the lost files."""


@dataclass(frozen=True, kw_only=True)
class RetryOutcome:
    """What :func:`retry_task` did."""

    retried: list[int] = field(default_factory=list)
    new_ids: list[int] = field(default_factory=list)
    requeued_requests: int = 0


@dataclass(frozen=True, kw_only=True)
class AbortOutcome:
    """What :func:`abort_task` did; ``commands`` are the kill commands to push to pilots."""

    killed: int
    cancelled_requests: int
    commands: list[store.KillCommand]


def task_row(conn: Connection, task_id: int, *, lock: bool = False) -> Any:
    """The ``ddm_tasks`` row (``NotFound`` naming ``task_id`` when unknown)."""
    stmt = select(ddm_tasks).where(ddm_tasks.c.task_id == task_id)
    if lock and conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    row = conn.execute(stmt).mappings().first()
    if row is None:
        raise NotFound(f"no task {task_id}", field="task_id")
    return row


def may_steer(identity: Identity, row: Any) -> None:
    """``PermissionDenied`` naming ``task_id`` unless the policy lets ``identity`` steer the task ``row``."""
    if may_steer_task(identity, Resource(vo=row["vo"], owner=row["owner"])):
        return
    raise PermissionDenied(
        f"task {row['task_id']} belongs to {row['owner']}; only its owner, an admin or {row['vo'] or 'its VO'}'s "
        "production role may steer it",
        field="task_id",
    )


def _latest_jobs(conn: Connection, task_id: int) -> list[Any]:
    """The task's jobs that no retry superseded (a retried job is some other job's parent)."""
    rows = list(
        conn.execute(
            select(jobs.c.panda_id, jobs.c.status, jobs.c.parent_panda_id, jobs.c.job_name).where(
                jobs.c.task_id == task_id
            )
        ).mappings()
    )
    parents = {int(r["parent_panda_id"]) for r in rows if r["parent_panda_id"]}
    return [r for r in rows if int(r["panda_id"]) not in parents]


def current_jobs(conn: Connection, task_id: int, merge_id: int) -> tuple[list[tuple[int, str]], str]:
    """``([(panda_id, status)] of the latest processing jobs, merge job status)`` of a task."""
    latest = _latest_jobs(conn, task_id)  # a retried merge job is superseded: only merge_id is left
    proc = [(int(r["panda_id"]), r["status"]) for r in latest if int(r["panda_id"]) != merge_id]
    merge = next((r["status"] for r in latest if int(r["panda_id"]) == merge_id), "")
    return proc, merge


def lost_files(conn: Connection, task_id: int, panda_ids: Sequence[int] = ()) -> list[str]:
    """``scope:lfn`` of the task's inputs declared lost (a failed request with error 110), sorted.

    ``panda_ids``: only files lost for these jobs (empty: any request of the task).
    """
    r, f = ddm_requests, ddm_files
    stmt = (
        select(f.c.scope, f.c.lfn)
        .select_from(r.join(f, f.c.file_id == r.c.file_id))
        .where(r.c.task_id == task_id, r.c.error_code == errorcodes.FILE_LOST)
    )
    if panda_ids:
        stmt = stmt.where(r.c.panda_id.in_(list(panda_ids)))
    return sorted({f"{s}:{n}" for s, n in conn.execute(stmt)})


def jobs_with_lost_inputs(conn: Connection, task_id: int, panda_ids: Sequence[int]) -> set[int]:
    """Which of ``panda_ids`` failed because an input was lost (their stage-in request has error 110)."""
    if not panda_ids:
        return set()
    stmt = select(ddm_requests.c.panda_id).where(
        ddm_requests.c.task_id == task_id,
        ddm_requests.c.error_code == errorcodes.FILE_LOST,
        ddm_requests.c.panda_id.in_(list(panda_ids)),
    )
    return {int(x[0]) for x in conn.execute(stmt)}


def retry_task(conn: Connection, task_id: int, config: DispatcherConfig, *, now: float) -> RetryOutcome:
    """Resubmit the failed jobs of the task's current step; put it back to ``processing``/``merging``.

    Jobs are resubmitted as new jobs (children of the failed ones), with their DDM planning done
    again, so lost or bad inputs are looked for anew. A failed archive transfer is queued again.
    """
    from dispatcher.services.submission import place_and_insert

    row = task_row(conn, task_id, lock=True)
    if row["state"] in ("done", "aborted"):
        raise FailedPrecondition(f"task {task_id} is {row['state']}; nothing to retry", field="task_id")
    merge_id = int(row["merge_panda_id"])
    proc, merge_status = current_jobs(conn, task_id, merge_id)
    if merge_id and merge_status in RETRYABLE_JOB_STATES:
        failed, state = [merge_id], "merging"
    elif merge_id:
        failed, state = [], row["state"]
    else:
        failed, state = [pid for pid, st in proc if st in RETRYABLE_JOB_STATES], "processing"
    requeued = _requeue_archive(conn, task_id, now=now) if not failed else 0
    if not failed and not requeued:
        raise FailedPrecondition(f"task {task_id} has no failed job or transfer to retry", field="task_id")
    new_ids: list[int] = []
    if failed:
        new_jobs, owners = store.retry_jobs(conn, failed)
        new_ids = place_and_insert(conn, [j.spec for j in new_jobs], config, owner=owners[0], now=now)
        for old, new in zip(failed, new_ids, strict=True):  # the old job is superseded: steps ignore it
            conn.execute(update(jobs).where(jobs.c.panda_id == new).values(parent_panda_id=old))
        values: dict[str, Any] = {"state": state, "diag": f"retrying job(s) {failed}", "updated": now}
        if state == "merging":
            values["merge_panda_id"] = new_ids[0]
        conn.execute(update(ddm_tasks).where(ddm_tasks.c.task_id == task_id).values(**values))
    else:
        why = f"archive transfer queued again ({requeued})"
        conn.execute(
            update(ddm_tasks).where(ddm_tasks.c.task_id == task_id).values(state="archiving", diag=why, updated=now)
        )
    return RetryOutcome(retried=failed, new_ids=new_ids, requeued_requests=requeued)


def _requeue_archive(conn: Connection, task_id: int, *, now: float) -> int:
    """Queue the task's failed archive transfer again (a new request for the same file); 0 or 1."""
    reqs = catalog.list_requests(conn, task_id=task_id, kind="transfer")
    archive = [r for r in reqs if r["activity"] == "archive"]
    if not archive or archive[0]["state"] not in (catalog.FAILED, catalog.CANCELLED):
        return 0
    last = archive[0]
    catalog.add_request(
        conn,
        kind="transfer",
        file_id=int(last["file_id"]),
        source_se=last["source_se"],
        dest_se=last["dest_se"],
        task_id=task_id,
        activity="archive",
        now=now,
    )
    return 1


def abort_task(conn: Connection, task_id: int, *, who: str, reason: str, now: float) -> AbortOutcome:
    """Stop a task: state ``aborted`` first (so no step starts), then kill its jobs and withdraw its requests."""
    row = task_row(conn, task_id, lock=True)
    if row["state"] in ("done", "aborted"):
        raise FailedPrecondition(f"task {task_id} is {row['state']}; it cannot be aborted", field="task_id")
    diag = f"aborted by {who}" + (f": {reason}" if reason else "")
    conn.execute(
        update(ddm_tasks).where(ddm_tasks.c.task_id == task_id).values(state="aborted", diag=diag[:1000], updated=now)
    )
    open_jobs = [
        int(x[0])
        for x in conn.execute(
            select(jobs.c.panda_id).where(jobs.c.task_id == task_id, jobs.c.status.not_in(ENDED_JOB_STATES))
        )
    ]
    commands: list[store.KillCommand] = []
    killed = 0
    if open_jobs:
        results, commands = store.kill_jobs(conn, open_jobs, who=who, reason=f"task {task_id} aborted", now=now)
        killed = sum(1 for r in results if r.accepted)
    r = ddm_requests
    ids = [
        int(x[0])
        for x in conn.execute(
            select(r.c.request_id).where(
                r.c.state.in_(catalog.OPEN_REQUEST_STATES),
                (r.c.task_id == task_id) | (r.c.panda_id.in_(open_jobs) if open_jobs else False),
            )
        )
    ]
    cancelled = catalog.cancel_requests(conn, ids, now=now, reason=f"task {task_id} aborted") if ids else 0
    return AbortOutcome(killed=killed, cancelled_requests=cancelled, commands=commands)


def lost_policy(spec_json: str) -> str:
    """The task's ``lost_inputs`` policy from its stored spec (``fail`` when not given)."""
    return str(json.loads(spec_json).get("lost_inputs") or "fail")
