"""Watchdog storage: requeue jobs that never started, fail attempts whose lease expired.

Candidates are locked with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so several dispatcher
processes can run their watchdogs at once without handling a job twice.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import Connection, delete, select

from ailuro import errorcodes
from ailuro.v1 import job_pb2
from dispatcher.decisions import Lapse, judge_lapse, lost_attempt
from dispatcher.states import JobState
from dispatcher.store.leases import kill_error, lease_of
from dispatcher.store.schema import jobs, pilot_commands, pilot_debug_reports
from dispatcher.store.transitions import Change, apply_changes

ACTOR = "watchdog"
_LEASED = [s.value for s in (JobState.STARTING, JobState.RUNNING, JobState.HOLDING, JobState.TRANSFERRING)]


def _candidates(
    conn: Connection, cond: Any, limit: int, only: Sequence[int] | None = None, exclude: Collection[int] = ()
) -> list[Any]:
    """Jobs matching ``cond``: among ``only`` when given, never those in ``exclude`` (quarantined)."""
    if only is not None:
        cond = cond & jobs.c.panda_id.in_(list(only))
    if exclude:
        cond = cond & jobs.c.panda_id.notin_(sorted(exclude))
    stmt = select(jobs).where(cond).order_by(jobs.c.panda_id).limit(limit)
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    return list(conn.execute(stmt).mappings())


def _error(code: int, diag: str) -> list[job_pb2.JobError]:
    return [job_pb2.JobError(component=job_pb2.ERROR_COMPONENT_DISPATCHER, code=code, diag=diag)]


def _killed(row: Any, now: float, why: str) -> Change:
    return Change(
        panda_id=row["panda_id"],
        from_status=JobState(row["status"]),
        epoch=row["lease_epoch"],
        to_status=JobState.CANCELLED,
        values={
            "end_time": now,
            "lease_expires": None,
            "errors": kill_error(row["kill_reason"]),
        },
        reason=f"{why} after a kill request ({row['kill_reason']})",
        actor=ACTOR,
        attempt_nr=row["attempt_nr"],
    )


def unstarted_cond(*, sent_timeout_s: float, now: float) -> Any:
    """``sent`` jobs whose pilot did not report ``starting`` within ``sent_timeout_s``."""
    return (jobs.c.status == JobState.SENT.value) & (jobs.c.sent_time < now - sent_timeout_s)


def expired_cond(*, now: float) -> Any:
    """Jobs on a pilot whose lease lapsed."""
    return jobs.c.status.in_(_LEASED) & (jobs.c.lease_expires < now)


def candidate_ids(conn: Connection, cond: Any, *, limit: int, exclude: Collection[int] = ()) -> list[int]:
    """The ids a sweep step would handle (a plain read: used to isolate a job the database refuses)."""
    if exclude:
        cond = cond & jobs.c.panda_id.notin_(sorted(exclude))
    stmt = select(jobs.c.panda_id).where(cond).order_by(jobs.c.panda_id).limit(limit)
    return [int(r[0]) for r in conn.execute(stmt)]


def requeue_unstarted(
    conn: Connection,
    *,
    sent_timeout_s: float,
    now: float,
    limit: int,
    only: Sequence[int] | None = None,
    exclude: Collection[int] = (),
) -> int:
    """``sent`` jobs whose pilot did not report ``starting`` in time go back to ``activated``.

    ``only``/``exclude`` restrict the candidates (isolating a job the database refuses).
    """
    rows = _candidates(conn, unstarted_cond(sent_timeout_s=sent_timeout_s, now=now), limit, only, exclude)
    changes = [
        _killed(row, now, "never started")
        if judge_lapse(lease_of(row)) is Lapse.KILLED
        else _unstarted(row, f"pilot {row['pilot_id']} did not start the job within {sent_timeout_s:g} s")
        for row in rows
    ]
    return len(apply_changes(conn, changes, now=now))


def expire_leases(
    conn: Connection, *, now: float, limit: int, only: Sequence[int] | None = None, exclude: Collection[int] = ()
) -> int:
    """Attempts whose lease lapsed fail with a lost-heartbeat error, then follow the retry rules."""
    rows = _candidates(conn, expired_cond(now=now), limit, only, exclude)
    changes = [
        _killed(row, now, "lease expired")
        if judge_lapse(lease_of(row)) is Lapse.KILLED
        else _lost(row, now, f"lost heartbeat: pilot {row['pilot_id']} stopped reporting")
        for row in rows
    ]
    return len(apply_changes(conn, changes, now=now))


def release_pilot_jobs(conn: Connection, pilot_ids: Sequence[str], *, now: float, why: str, limit: int) -> int:
    """Jobs still leased to pilots known to be gone are decided now, as their lease expiry would.

    A factory saw these pilots' workers end (or be held), so their leases cannot be renewed:
    a ``sent`` job goes back to ``activated`` (it never started), a started one fails its attempt
    with the lost-heartbeat error and follows the retry rules. Jobs whose lease is already cleared
    (the pilot's final report arrived) are left alone.
    """
    if not pilot_ids:
        return 0
    cond = (
        jobs.c.pilot_id.in_(list(pilot_ids))
        & jobs.c.status.in_([JobState.SENT.value, *_LEASED])
        & jobs.c.lease_expires.is_not(None)
    )
    changes = []
    for row in _candidates(conn, cond, limit):
        lapse = judge_lapse(lease_of(row))
        if lapse is Lapse.KILLED:
            changes.append(_killed(row, now, f"pilot gone ({why})"))
        elif lapse is Lapse.REQUEUED:
            changes.append(_unstarted(row, f"pilot {row['pilot_id']} {why} before starting the job"))
        else:
            changes.append(_lost(row, now, f"lost heartbeat: pilot {row['pilot_id']} {why}"))
    return len(apply_changes(conn, changes, now=now))


def _unstarted(row: Any, diag: str) -> Change:
    """A ``sent`` job back to ``activated`` (no attempt was spent: it never started)."""
    return Change(
        panda_id=row["panda_id"],
        from_status=JobState.SENT,
        epoch=row["lease_epoch"],
        to_status=JobState.ACTIVATED,
        values={"sent_time": None, "lease_expires": None, "errors": _error(errorcodes.NOT_STARTED, diag)},
        reason=f"requeued: {diag} (error {errorcodes.NOT_STARTED})",
        actor=ACTOR,
        attempt_nr=row["attempt_nr"],
    )


def _lost(row: Any, now: float, diag: str) -> Change:
    """A started attempt whose pilot is lost: failed with error LOST_HEARTBEAT, retried if allowed."""
    outcome = lost_attempt(lease_of(row), diag, errorcodes.LOST_HEARTBEAT)
    values: dict[str, Any] = {"lease_expires": None, "errors": _error(errorcodes.LOST_HEARTBEAT, diag)}
    if outcome.next_attempt is not None:
        values.update(attempt_nr=outcome.next_attempt, sent_time=None)
    else:
        values["end_time"] = now
    return Change(
        panda_id=row["panda_id"],
        from_status=JobState(row["status"]),
        epoch=row["lease_epoch"],
        to_status=outcome.to_status,
        values=values,
        reason=outcome.reason,
        actor=ACTOR,
        attempt_nr=row["attempt_nr"],
    )


def purge_commands(conn: Connection, *, before: float) -> int:
    """Delete pilot commands issued before ``before`` (their jobs' leases are long decided)."""
    conn.execute(delete(pilot_debug_reports).where(pilot_debug_reports.c.created < before))
    return conn.execute(delete(pilot_commands).where(pilot_commands.c.created < before)).rowcount or 0
