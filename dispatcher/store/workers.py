"""Storage for the factory side: workers (batch jobs running pilots) and per-queue statistics."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, and_, bindparam, case, exists, func, select, update

from ailuro.errors import NotFound
from ailuro.v1 import factory_pb2
from dispatcher.convert import FINAL_WORKER_STATES, WORKER_STATE_NAMES, WORKER_STATES_BY_NAME
from dispatcher.states import ON_PILOT_STATES, JobState
from dispatcher.store.jobs import chunks
from dispatcher.store.pilots import connected_clause, insert_for
from dispatcher.store.schema import jobs, pilots, workers

_ON_PILOT = [s.value for s in ON_PILOT_STATES]


def register_workers(conn: Connection, items: Sequence[factory_pb2.Worker], *, now: float) -> None:
    """Insert workers; registering an existing worker_id again updates it (factories retry)."""
    for w in items:
        values = {
            "queue": w.queue,
            "backend": w.backend,
            "factory_id": w.factory_id,
            "batch_id": w.batch_id,
            "state": WORKER_STATE_NAMES.get(w.state, "submitted"),
            "diag": w.diag,
            "submit_time": w.submit_time.ToNanoseconds() / 1e9 if w.HasField("submit_time") else now,
            "update_time": now,
            "log_path": w.log_path,
        }
        ins = insert_for(conn)(workers).values(worker_id=w.worker_id, **values)
        conn.execute(ins.on_conflict_do_update(index_elements=[workers.c.worker_id], set_=values))


def update_workers(conn: Connection, items: Sequence[factory_pb2.WorkerUpdate], *, now: float) -> None:
    """Record new batch states; ``NotFound`` (nothing written) names an unknown worker."""
    ids = [u.worker_id for u in items]
    known: set[str] = set()
    for part in chunks(sorted(set(ids))):
        known |= {r[0] for r in conn.execute(select(workers.c.worker_id).where(workers.c.worker_id.in_(part)))}
    for i, wid in enumerate(ids):
        if wid not in known:
            raise NotFound(f"no worker {wid!r}", field=f"updates[{i}].worker_id")
    stmt = (
        update(workers)
        .where(workers.c.worker_id == bindparam("b_id"))
        .values(state=bindparam("b_state"), diag=bindparam("b_diag"), update_time=now)
    )
    conn.execute(stmt, [{"b_id": u.worker_id, "b_state": WORKER_STATE_NAMES[u.state], "b_diag": u.diag} for u in items])


def list_workers(
    conn: Connection, *, queue: str, factory_id: str, include_final: bool, limit: int
) -> list[factory_pb2.Worker]:
    """Workers, newest first, each with the job its pilot holds now."""
    conds: list[Any] = []
    if queue:
        conds.append(workers.c.queue == queue)
    if factory_id:
        conds.append(workers.c.factory_id == factory_id)
    if not include_final:
        conds.append(workers.c.state.notin_(FINAL_WORKER_STATES))
    current = (
        select(func.max(jobs.c.panda_id))
        .where(jobs.c.pilot_id == workers.c.worker_id, jobs.c.status.in_(_ON_PILOT))
        .scalar_subquery()
    )
    node = select(pilots.c.node).where(pilots.c.pilot_id == workers.c.worker_id).scalar_subquery()
    stmt = (
        select(workers, current.label("current_panda_id"), node.label("node"))
        .where(and_(True, *conds))
        .order_by(workers.c.submit_time.desc(), workers.c.worker_id)
        .limit(limit)
    )
    out = []
    for r in conn.execute(stmt).mappings():
        w = factory_pb2.Worker(
            worker_id=r["worker_id"],
            queue=r["queue"],
            backend=r["backend"],
            factory_id=r["factory_id"],
            batch_id=r["batch_id"],
            state=WORKER_STATES_BY_NAME.get(r["state"], factory_pb2.WORKER_STATE_UNKNOWN),
            diag=r["diag"],
            log_path=r["log_path"],
            current_panda_id=r["current_panda_id"] or 0,
            node=r["node"] or "",
        )
        w.submit_time.FromNanoseconds(int(r["submit_time"] * 1e9))
        w.update_time.FromNanoseconds(int(r["update_time"] * 1e9))
        out.append(w)
    return out


def disconnect_pilots(conn: Connection, pilot_ids: Sequence[str]) -> None:
    """Mark pilots whose workers ended as no longer connected (a stream left open by a dead
    process must not count as an idle pilot)."""
    for part in chunks(sorted(set(pilot_ids))):
        conn.execute(update(pilots).where(pilots.c.pilot_id.in_(part), pilots.c.connected).values(connected=False))


def connected_pilots(conn: Connection, *, now: float, stale_s: float) -> dict[str, tuple[int, int]]:
    """``{queue: (connected, idle)}``: pilots with a live stream, and those of them holding no job."""
    busy = exists().where(jobs.c.pilot_id == pilots.c.pilot_id, jobs.c.status.in_(_ON_PILOT))
    stmt = (
        select(pilots.c.queue, func.count(), func.sum(case((busy, 0), else_=1)))
        .where(connected_clause(now=now, stale_s=stale_s))
        .group_by(pilots.c.queue)
    )
    return {q: (int(n), int(idle or 0)) for q, n, idle in conn.execute(stmt)}


def worker_counts(conn: Connection) -> dict[str, dict[str, int]]:
    """Non-final workers per queue and state."""
    stmt = (
        select(workers.c.queue, workers.c.state, func.count())
        .where(workers.c.state.notin_(FINAL_WORKER_STATES))
        .group_by(workers.c.queue, workers.c.state)
    )
    out: dict[str, dict[str, int]] = defaultdict(dict)
    for q, st, n in conn.execute(stmt):
        out[q][st] = int(n)
    return out


def queue_job_counts(conn: Connection) -> dict[str, dict[str, int]]:
    """Activated / assigned / on-pilot job counts per queue."""
    stmt = (
        select(jobs.c.computing_site, jobs.c.status, func.count())
        .where(jobs.c.status.in_([JobState.ACTIVATED.value, JobState.ASSIGNED.value, *_ON_PILOT]))
        .group_by(jobs.c.computing_site, jobs.c.status)
    )
    out: dict[str, dict[str, int]] = defaultdict(dict)
    for site, st, n in conn.execute(stmt):
        out[site][st] = int(n)
    return out
