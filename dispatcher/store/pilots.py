"""Storage for the pilot side: claims, heartbeats, final reports, commands, the pilots registry.

Every function works on a batch (the hot path groups requests from many streams into one
transaction) and returns per-item outcomes so the caller can answer each pilot.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import Connection, and_, bindparam, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ailuro.errors import PermissionDenied
from ailuro.v1 import job_pb2, pilot_pb2
from dispatcher import decisions as dec
from dispatcher import jobfields
from dispatcher.matching import Offer, format_tags
from dispatcher.shares import Leaf, charge
from dispatcher.states import ON_PILOT_STATES, JobState
from dispatcher.store.claim import ClaimPolicy, needs_of, plan_queue
from dispatcher.store.jobs import chunks, fetch_rows
from dispatcher.store.leases import LEASE_COLUMNS, lease_of, mark_kills_delivered, pilot_claim
from dispatcher.store.pgarrays import pg_array
from dispatcher.store.schema import pilot_commands, pilots
from dispatcher.store.transitions import Change, apply_changes

AckResult = pilot_pb2.AckResult
OK = pilot_pb2.ACK_RESULT_OK
STALE = pilot_pb2.ACK_RESULT_STALE_EPOCH
NOT_FOUND = pilot_pb2.ACK_RESULT_NOT_FOUND
REJECTED = pilot_pb2.ACK_RESULT_REJECTED
ON_PILOT_VALUES = [s.value for s in ON_PILOT_STATES]
ACK_OF: dict[dec.Answer, AckResult] = {
    dec.Answer.OK: OK,
    dec.Answer.STALE: STALE,
    dec.Answer.NOT_FOUND: NOT_FOUND,
    dec.Answer.REJECTED: REJECTED,
}


@dataclass(frozen=True, kw_only=True)
class PilotInfo:
    """What the dispatcher knows about a pilot from its Hello."""

    pilot_id: str
    queue: str
    node: str = ""
    batch_id: str = ""
    version: str = ""
    cores: int = 0
    """Cores it advertised in its Hello (0: unknown)."""
    memory_mb: int = 0
    """Memory it advertised, MiB (0: unknown)."""
    disk_mb: int = 0
    """Scratch disk it advertised, MiB (0: unknown)."""
    tags: frozenset[str] = frozenset()
    """Node features it advertised."""


@dataclass(kw_only=True)
class ClaimRequest:
    """One pilot's request for ``n`` jobs; ``assignments`` is filled by :func:`claim_jobs`."""

    pilot: PilotInfo
    n: int
    walltime_left_s: int = 0
    """The pilot's remaining walltime (0: unknown/unlimited); longer jobs are not handed to it."""
    offer: Offer | None = None
    """What the pilot has free (cores, memory, disk, tags); None: only ``walltime_left_s`` is known."""
    assignments: list[pilot_pb2.JobAssignment] = field(default_factory=list)
    passed_over: int = 0
    """Candidate jobs of its queue that the claim locked and did not hand out: with several claim
    transactions at once, another one skipped them (``SKIP LOCKED``) and may have found nothing,
    so they are worth claiming again once this one commits (the hub wakes parked requests)."""

    def effective_offer(self) -> Offer:
        """The offer matched against jobs, with ``walltime_left_s`` in it."""
        base = self.offer or Offer()
        return replace(base, walltime_s=self.walltime_left_s or base.walltime_s)


def insert_for(conn: Connection) -> Any:
    return pg_insert if conn.dialect.name == "postgresql" else sqlite_insert


def register_pilot(
    conn: Connection,
    pilot: PilotInfo,
    *,
    dispatcher_id: str,
    connected: bool,
    now: float,
    principal: str = "",
    stale_s: float = 0.0,
    error_field: str = "pilot_id",
) -> None:
    """Insert or refresh the pilot's row (connected to ``dispatcher_id`` when it holds a stream).

    The id is bound to ``principal`` (see :func:`dispatcher.decisions.judge_pilot_claim`):
    ``PermissionDenied`` (naming ``error_field``) when another principal owns it and it is live
    (refreshed within ``stale_s``) or holds leases.
    """
    known = pilot_claim(conn, pilot.pilot_id, principal=principal, now=now, stale_s=stale_s, lock=True)
    verdict = dec.judge_pilot_claim(known, principal, pilot.pilot_id)
    if not verdict.allowed:
        raise PermissionDenied(verdict.message, field=error_field)
    values = {
        "queue": pilot.queue,
        "node": pilot.node,
        "batch_id": pilot.batch_id,
        "version": pilot.version,
        "cores": pilot.cores,
        "memory_mb": pilot.memory_mb,
        "disk_mb": pilot.disk_mb,
        "tags": format_tags(pilot.tags),
        "dispatcher_id": dispatcher_id if connected else "",
        "connected": connected,
        "last_seen": now,
        "principal": principal,
    }
    ins = insert_for(conn)(pilots).values(pilot_id=pilot.pilot_id, first_seen=now, **values)
    # A row another principal inserted since the read above (no row to lock then) is not taken over.
    guard = None if known is not None else pilots.c.principal.in_([principal, ""])
    done = conn.execute(ins.on_conflict_do_update(index_elements=[pilots.c.pilot_id], set_=values, where=guard))
    if done.rowcount == 0:
        raise PermissionDenied(f"pilot id {pilot.pilot_id!r} was just claimed by another principal", field=error_field)


def disconnect_pilot(conn: Connection, pilot_id: str, *, dispatcher_id: str, now: float) -> None:
    """Mark a pilot's stream closed (only if this dispatcher still owns it)."""
    conn.execute(
        update(pilots)
        .where(pilots.c.pilot_id == pilot_id, pilots.c.dispatcher_id == dispatcher_id)
        .values(connected=False, last_seen=now)
    )


def touch_pilots(conn: Connection, *, dispatcher_id: str, pilot_ids: Sequence[str], now: float) -> None:
    """Refresh ``last_seen`` of the given pilots streaming to this dispatcher (and only those)."""
    stmt = (
        update(pilots)
        .where(
            pilots.c.dispatcher_id == dispatcher_id,
            pilots.c.connected,
            pilots.c.pilot_id.in_(bindparam("ids", expanding=True)),
        )
        .values(last_seen=now)
    )
    for part in chunks(list(pilot_ids)):
        conn.execute(stmt, {"ids": list(part)})


def sweep_pilots(conn: Connection, *, dispatcher_id: str, before: float | None, now: float) -> int:
    """Disconnect this dispatcher's "connected" rows not refreshed since ``before`` (None: all of them)."""
    cond = [pilots.c.dispatcher_id == dispatcher_id, pilots.c.connected]
    if before is not None:
        cond.append(pilots.c.last_seen < before)
    return conn.execute(update(pilots).where(*cond).values(connected=False, last_seen=now)).rowcount


PILOT_STALE_S = 30.0
"""Default of ``DispatcherConfig.pilot_stale_s``: a row not refreshed for this long is not connected."""


def connected_clause(*, now: float, stale_s: float = PILOT_STALE_S) -> Any:
    """The one definition of a connected pilot: flagged connected and refreshed within ``stale_s``.

    GetQueueStats, the monitor's pages and its ``/metrics`` all count with this clause.
    """
    return and_(pilots.c.connected, pilots.c.last_seen >= now - stale_s)


def claim_jobs(
    conn: Connection,
    requests: Sequence[ClaimRequest],
    *,
    lease_s: float,
    now: float,
    policy: ClaimPolicy | None = None,
) -> dict[Leaf, float]:
    """Hand activated jobs to the requesting pilots: one candidate query and one update per queue.

    Which job goes to which pilot is decided by :func:`dispatcher.store.claim.plan_queue` (queue
    status, resources, share order). On PostgreSQL candidates are locked with ``FOR UPDATE SKIP
    LOCKED`` so concurrent dispatchers claim disjoint jobs; on SQLite the single writer gives the
    same guarantee. Returns the core-seconds handed out per share leaf (the caller records them).
    """
    policy = policy or ClaimPolicy()
    charged: dict[Leaf, float] = defaultdict(float)
    by_queue: dict[str, list[ClaimRequest]] = defaultdict(list)
    for req in requests:
        by_queue[req.pilot.queue].append(req)
    for queue, reqs in by_queue.items():
        planned, n_candidates = plan_queue(conn, queue, [(r.n, r.effective_offer()) for r in reqs], policy=policy)
        for r in reqs:
            r.passed_over = n_candidates - len(planned)
        plan = [(reqs[i], row) for i, row, _ in planned]
        changes = [
            Change(
                panda_id=row["panda_id"],
                from_status=JobState.ACTIVATED,
                epoch=row["lease_epoch"],
                to_status=JobState.SENT,
                values=sent_values(row, req.pilot, lease_s=lease_s, now=now),
                reason=f"sent to pilot {req.pilot.pilot_id}",
                actor=f"pilot:{req.pilot.pilot_id}",
                attempt_nr=row["attempt_nr"],
                event_epoch=row["lease_epoch"] + 1,
            )
            for req, row in plan
        ]
        applied = apply_changes(conn, changes, now=now)
        for (req, row), ch in zip(plan, changes, strict=True):
            if row["panda_id"] in applied:
                req.assignments.append(assignment(row, ch.values, lease_s=lease_s))
        for _, row, leaf in planned:
            if row["panda_id"] in applied:
                charged[leaf] += charge(needs_of(row), policy.tree)
    return dict(charged)


def sent_values(row: Any, pilot: PilotInfo, *, lease_s: float, now: float) -> dict[str, Any]:
    """The columns a claim writes besides the state when it sends job ``row`` to ``pilot``."""
    return {
        "lease_epoch": row["lease_epoch"] + 1,
        "pilot_id": pilot.pilot_id,
        "batch_id": pilot.batch_id,
        "node": pilot.node,
        "sent_time": now,
        "lease_expires": now + lease_s,
    }


def assignment(row: Any, values: dict[str, Any], *, lease_s: float) -> pilot_pb2.JobAssignment:
    """What the pilot is sent for job ``row`` once ``values`` (:func:`sent_values`) are written."""
    job = jobfields.pilot_job({**row, **values, "status": JobState.SENT})  # the row as written
    return pilot_pb2.JobAssignment(job=job, lease_epoch=values["lease_epoch"], lease_s=int(lease_s))


@dataclass(frozen=True, kw_only=True)
class HeartbeatIn:
    """A heartbeat to apply (the latest one per job after coalescing)."""

    panda_id: int
    epoch: int
    status: JobState
    metrics: job_pb2.JobMetrics
    pilot_id: str


def apply_heartbeats(
    conn: Connection, beats: Sequence[HeartbeatIn], *, lease_s: float, now: float
) -> list[tuple[AckResult, str]]:
    """Renew leases, record reported progress; ``(AckResult, message)`` per heartbeat, in order.

    Several heartbeats of one job in a batch are judged alike; the last valid one is written.
    """
    renewed = _renew_pg(conn, beats, lease_s=lease_s, now=now) if conn.dialect.name == "postgresql" else set()
    rest = [b for b in beats if b.panda_id not in renewed]
    # the lease's columns, not all 44: these rows are read under lock in every heartbeat flush
    rows = fetch_rows(conn, [b.panda_id for b in rest], lock=True, columns=LEASE_COLUMNS)
    out: list[tuple[AckResult, str]] = []
    changes: dict[int, Change] = {}
    for b in beats:
        if b.panda_id in renewed:
            out.append((OK, ""))
            continue
        row = rows.get(b.panda_id)
        beat = dec.Beat(panda_id=b.panda_id, epoch=b.epoch, status=b.status, pilot_id=b.pilot_id)
        verdict = dec.judge_heartbeat(lease_of(row) if row is not None else None, beat)
        out.append((ACK_OF[verdict.answer], verdict.message))
        if verdict.to_status is None:
            continue
        values: dict[str, Any] = {
            "lease_expires": now + lease_s,
            "cpu_time_s": b.metrics.cpu_time_s,
            "max_rss_kb": b.metrics.max_rss_kb,
            "walltime_s": b.metrics.walltime_s,
        }
        if verdict.starts_now:
            values["start_time"] = now
        changes[b.panda_id] = Change(
            panda_id=b.panda_id,
            from_status=JobState(row["status"]),
            epoch=b.epoch,
            to_status=verdict.to_status,
            values=values,
            reason=f"reported by pilot {b.pilot_id}",
            actor=f"pilot:{b.pilot_id}",
            attempt_nr=row["attempt_nr"],
        )
    applied = apply_changes(conn, list(changes.values()), now=now)
    for i, b in enumerate(beats):
        if b.panda_id in changes and b.panda_id not in applied and out[i][0] == OK:
            out[i] = (STALE, "the job changed concurrently")
    return out


# PostgreSQL: most heartbeats only renew a lease (the reported status is the job's status). They
# are written by one UPDATE with no read before it and no event or counter to record; only the
# rest (status changes, stale, unknown or foreign jobs) take the read-judge-write path. The WHERE
# clause is ``decisions.judge_heartbeat`` for an unchanged status (same epoch, a state on a pilot,
# the same pilot), checked under the row lock, so a renewal never overwrites a concurrent change.
_ON_PILOT_ARRAY = pg_array(ON_PILOT_VALUES, "text")
_RENEW_SQL = (
    "UPDATE jobs SET lease_expires = %s, modification_time = %s, "
    "cpu_time_s = v.cpu, max_rss_kb = v.rss, walltime_s = v.wall "
    "FROM unnest(%s::BIGINT[], %s::BIGINT[], %s::VARCHAR(16)[], %s::FLOAT8[], %s::BIGINT[], %s::FLOAT8[], "
    "%s::VARCHAR(255)[]) AS v(id, epoch, status, cpu, rss, wall, pilot) "
    "WHERE jobs.panda_id = v.id AND jobs.lease_epoch = v.epoch AND jobs.status = v.status "
    "AND jobs.pilot_id = v.pilot "
    "AND jobs.status = ANY(%s::VARCHAR(16)[]) RETURNING jobs.panda_id"
)


def _renew_pg(conn: Connection, beats: Sequence[HeartbeatIn], *, lease_s: float, now: float) -> set[int]:
    """Apply the pure lease renewals among ``beats``; the panda_ids renewed."""
    seen: dict[int, int] = defaultdict(int)
    for b in beats:
        seen[b.panda_id] += 1
    single = [b for b in beats if seen[b.panda_id] == 1 and b.status in ON_PILOT_STATES]  # repeats: full path
    if not single:
        return set()
    params = (
        now + lease_s,
        now,
        pg_array([b.panda_id for b in single], "int"),
        pg_array([b.epoch for b in single], "int"),
        pg_array([b.status.value for b in single], "text"),
        pg_array([b.metrics.cpu_time_s for b in single], "float"),
        pg_array([b.metrics.max_rss_kb for b in single], "int"),
        pg_array([b.metrics.walltime_s for b in single], "float"),
        pg_array([b.pilot_id for b in single], "text"),
        _ON_PILOT_ARRAY,
    )
    return {r[0] for r in conn.exec_driver_sql(_RENEW_SQL, params)}


def resume_held(
    conn: Connection, pilot: PilotInfo, held: Sequence[pilot_pb2.HeldJob], *, lease_s: float, now: float
) -> dict[int, tuple[AckResult, str, bool]]:
    """Renew the leases of jobs a reconnecting pilot still runs: ``{panda_id: (AckResult, message, kill)}``."""
    rows = fetch_rows(conn, [h.panda_id for h in held], lock=True, columns=LEASE_COLUMNS)
    out: dict[int, tuple[AckResult, str, bool]] = {}
    changes = []
    for h in held:
        row = rows.get(h.panda_id)
        if row is None:
            out[h.panda_id] = (NOT_FOUND, f"no job {h.panda_id}", False)
            continue
        state = JobState(row["status"])
        if row["lease_epoch"] != h.lease_epoch or state not in ON_PILOT_STATES or row["pilot_id"] != pilot.pilot_id:
            out[h.panda_id] = (STALE, f"job is {state.value} with lease epoch {row['lease_epoch']}", False)
            continue
        changes.append(
            Change(
                panda_id=h.panda_id,
                from_status=state,
                epoch=h.lease_epoch,
                to_status=state,
                # a pending kill goes down the new stream at once (open_stream): it counts as delivered
                values={"lease_expires": now + lease_s, "kill_delivered": bool(row["kill_requested"])},
                attempt_nr=row["attempt_nr"],
            )
        )
        out[h.panda_id] = (OK, "lease resumed", bool(row["kill_requested"]))
    applied = apply_changes(conn, changes, now=now)
    for ch in changes:
        if ch.panda_id not in applied:
            out[ch.panda_id] = (STALE, "the job changed concurrently", False)
    return out


def has_pending_commands(conn: Connection, *, dispatcher_id: str) -> bool:
    """Whether any undelivered command targets a pilot streaming to ``dispatcher_id`` (a cheap read)."""
    c = pilot_commands
    local = select(pilots.c.pilot_id).where(pilots.c.dispatcher_id == dispatcher_id, pilots.c.connected)
    stmt = select(c.c.command_id).where(c.c.delivered.is_(False), c.c.pilot_id.in_(local)).limit(1)
    return conn.execute(stmt).first() is not None


def take_commands(
    conn: Connection, *, dispatcher_id: str | None = None, pilot_id: str | None = None, command_ids: Sequence[int] = ()
) -> list[Any]:
    """Mark pending commands delivered and return them (each is returned to exactly one caller).

    Selects by explicit ids, by one pilot, or every pilot streaming to ``dispatcher_id``.
    """
    c = pilot_commands
    cond: list[Any] = [c.c.delivered.is_(False)]
    if command_ids:
        cond.append(c.c.command_id.in_(list(command_ids)))
    elif pilot_id is not None:
        cond.append(c.c.pilot_id == pilot_id)
    else:
        local = select(pilots.c.pilot_id).where(pilots.c.dispatcher_id == dispatcher_id, pilots.c.connected)
        cond.append(c.c.pilot_id.in_(local))
    stmt = (
        update(c)
        .where(and_(*cond))
        .values(delivered=True)
        .returning(c.c.command_id, c.c.pilot_id, c.c.panda_id, c.c.type, c.c.reason)
    )
    rows = list(conn.execute(stmt).mappings())
    mark_kills_delivered(conn, [r["panda_id"] for r in rows if r["type"] == "kill"])
    return rows
