"""Leases as the decisions see them: job rows to :class:`dispatcher.decisions.Lease`, who owns a
pilot id, and the kill's record (its error, whether it was delivered).

Reads and small writes only; every rule is in :mod:`dispatcher.decisions`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, select, update

from ailuro import errorcodes
from ailuro.errors import PermissionDenied
from ailuro.v1 import job_pb2
from dispatcher import decisions as dec
from dispatcher.states import ON_PILOT_STATES, JobState
from dispatcher.store.jobs import chunks
from dispatcher.store.schema import jobs, pilots

_ON_PILOT = [s.value for s in ON_PILOT_STATES]


LEASE_COLUMNS = (
    "panda_id",
    "status",
    "lease_epoch",
    "pilot_id",
    "attempt_nr",
    "max_attempt",
    "start_time",
    "kill_requested",
    "kill_reason",
    "kill_delivered",
    "last_final_epoch",
    "last_final_status",
)
"""The columns :func:`lease_of` reads: what a heartbeat's or a reconnecting pilot's locked read fetches."""


def lease_of(row: Any) -> dec.Lease:
    """A job row as the decisions see it (any row with :data:`LEASE_COLUMNS`)."""
    return dec.Lease(
        panda_id=row["panda_id"],
        status=JobState(row["status"]),
        lease_epoch=row["lease_epoch"],
        pilot_id=row["pilot_id"],
        attempt_nr=row["attempt_nr"],
        max_attempt=row["max_attempt"],
        started=row["start_time"] is not None,
        kill_requested=bool(row["kill_requested"]),
        kill_reason=row["kill_reason"],
        kill_delivered=bool(row["kill_delivered"]),
        last_final_epoch=row["last_final_epoch"],
        last_final_status=row["last_final_status"],
    )


def kill_error(reason: str) -> list[job_pb2.JobError]:
    """The kill's error as a job's errors (rows of ``job_errors``): dispatcher, 1144 (killed by
    user), the kill's reason."""
    return [job_pb2.JobError(component=job_pb2.ERROR_COMPONENT_DISPATCHER, code=errorcodes.KILLED_BY_USER, diag=reason)]


def pilot_claim(
    conn: Connection, pilot_id: str, *, principal: str, now: float, stale_s: float, lock: bool = False
) -> dec.PilotClaim | None:
    """What the registry knows about ``pilot_id`` for :func:`dispatcher.decisions.judge_pilot_claim`.

    Whether it holds leases is looked up (one indexed read) only when another principal owns it.
    ``lock`` takes the row lock on PostgreSQL (the caller is about to rewrite the row).
    """
    stmt = select(pilots.c.principal, pilots.c.connected, pilots.c.last_seen).where(pilots.c.pilot_id == pilot_id)
    if lock and conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    row = conn.execute(stmt).first()
    if row is None:
        return None
    holds = False
    if row.principal and row.principal != principal:
        leased = select(jobs.c.panda_id).where(jobs.c.pilot_id == pilot_id, jobs.c.status.in_(_ON_PILOT)).limit(1)
        holds = conn.execute(leased).first() is not None
    live = bool(row.connected) and row.last_seen >= now - stale_s
    return dec.PilotClaim(principal=row.principal, live=live, holds_leases=holds)


def pilot_principals(conn: Connection, pilot_ids: Sequence[str]) -> dict[str, str]:
    """The principal each of these pilot ids is bound to (absent: unknown id)."""
    out: dict[str, str] = {}
    for part in chunks(sorted(set(pilot_ids))):
        stmt = select(pilots.c.pilot_id, pilots.c.principal).where(pilots.c.pilot_id.in_(part))
        out.update({pid: principal for pid, principal in conn.execute(stmt)})
    return out


def check_pilot_owner(
    conn: Connection, pilot_id: str, *, principal: str, now: float, stale_s: float, error_field: str = "pilot_id"
) -> None:
    """``PermissionDenied`` (naming ``error_field``) unless ``principal`` may act as ``pilot_id``; binds nothing."""
    known = pilot_claim(conn, pilot_id, principal=principal, now=now, stale_s=stale_s)
    verdict = dec.judge_pilot_claim(known, principal, pilot_id)
    if not verdict.allowed:
        raise PermissionDenied(verdict.message, field=error_field)


def mark_kills_delivered(conn: Connection, ids: Sequence[int]) -> None:
    """Record that these jobs' kills were handed to their pilots: a later "finished" no longer wins.

    Not a state change (no event, no epoch check): the flag only tells the final-report decision
    that the pilot was told. Rows are locked in panda_id order first, as every batch locks them.
    """
    if not ids:
        return
    for part in chunks(sorted(set(ids))):
        if conn.dialect.name == "postgresql":
            conn.execute(
                select(jobs.c.panda_id).where(jobs.c.panda_id.in_(part)).order_by(jobs.c.panda_id).with_for_update()
            )
        conn.execute(update(jobs).where(jobs.c.panda_id.in_(part), jobs.c.kill_requested).values(kill_delivered=True))
