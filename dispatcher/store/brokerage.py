"""Storage for brokerage and fair share: queue status and its history, share weights and usage.

Only reads and writes; what the rows mean is decided in :mod:`dispatcher.matching` and
:mod:`dispatcher.shares`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from dispatcher.matching import QueueStatus
from dispatcher.shares import Leaf, decayed
from dispatcher.states import JobState
from dispatcher.store.schema import jobs, pilots, queue_status, queue_status_history, share_usage, share_weights


@dataclass(frozen=True, kw_only=True)
class StatusChange:
    """A queue status as set by an admin."""

    queue: str
    status: QueueStatus
    reason: str
    changed_by: str
    changed_at: float


def _insert_for(conn: Connection) -> Any:
    return pg_insert if conn.dialect.name == "postgresql" else sqlite_insert


def _upsert(conn: Connection, table: Any, keys: list[str], values: dict[str, Any]) -> None:
    ins = _insert_for(conn)(table).values(**values)
    conn.execute(
        ins.on_conflict_do_update(index_elements=keys, set_={k: v for k, v in values.items() if k not in keys})
    )


def _change(row: Any) -> StatusChange:
    return StatusChange(
        queue=row["queue"],
        status=QueueStatus(row["status"]),
        reason=row["reason"],
        changed_by=row["changed_by"],
        changed_at=row["changed_at"],
    )


def queue_statuses(conn: Connection) -> dict[str, StatusChange]:
    """The current status of every queue that has one (a queue without a row is online)."""
    return {r["queue"]: _change(r) for r in conn.execute(select(queue_status)).mappings()}


def set_queue_status(conn: Connection, change: StatusChange) -> None:
    """Record a status change: the current status and a history row."""
    values = {
        "queue": change.queue,
        "status": change.status.value,
        "reason": change.reason,
        "changed_by": change.changed_by,
        "changed_at": change.changed_at,
    }
    _upsert(conn, queue_status, ["queue"], values)
    conn.execute(queue_status_history.insert().values(**values))


def queue_history(conn: Connection, queue: str, *, limit: int) -> list[StatusChange]:
    """A queue's status changes, newest first."""
    h = queue_status_history
    stmt = select(h).where(h.c.queue == queue).order_by(h.c.id.desc()).limit(limit)
    return [_change(r) for r in conn.execute(stmt).mappings()]


def share_weight_overrides(conn: Connection) -> dict[str, float]:
    """Weights admins set at run time, by path."""
    return {p: float(w) for p, w in conn.execute(select(share_weights.c.path, share_weights.c.weight))}


def set_share_weight(conn: Connection, *, path: str, weight: float, changed_by: str, now: float) -> None:
    """Set one weight (it overrides the queue file's)."""
    values = {"path": path, "weight": weight, "changed_by": changed_by, "changed_at": now}
    _upsert(conn, share_weights, ["path"], values)


def read_usage(conn: Connection, *, now: float, half_life_s: float) -> dict[Leaf, float]:
    """Decayed usage per leaf as of ``now``."""
    u = share_usage
    return {
        (r.vo, r.grp, r.owner): decayed(r.usage, since=r.updated, now=now, half_life_s=half_life_s)
        for r in conn.execute(select(u.c.vo, u.c.grp, u.c.owner, u.c.usage, u.c.updated))
    }


def add_usage(conn: Connection, charges: Mapping[Leaf, float], *, now: float, half_life_s: float) -> None:
    """Add core-seconds to leaves: the stored value is decayed to ``now`` first, then written with ``now``."""
    if not charges:
        return
    u = share_usage
    stored = {
        (r.vo, r.grp, r.owner): decayed(r.usage, since=r.updated, now=now, half_life_s=half_life_s)
        for r in conn.execute(select(u.c.vo, u.c.grp, u.c.owner, u.c.usage, u.c.updated))
    }
    for leaf, amount in sorted(charges.items()):  # sorted: concurrent writers lock rows in one order
        values = {"vo": leaf[0], "grp": leaf[1], "owner": leaf[2], "usage": stored.get(leaf, 0.0) + amount}
        _upsert(conn, u, ["vo", "grp", "owner"], {**values, "updated": now})


DemandKey = tuple[str, str, str]
"""``(vo, prod_source_label, owner)`` of activated jobs."""


def demand(conn: Connection) -> dict[str, dict[DemandKey, int]]:
    """Activated jobs per queue and ``(vo, label, owner)``: which share leaves have waiting work where."""
    j = jobs
    stmt = (
        select(j.c.computing_site, j.c.vo, j.c.prod_source_label, j.c.owner, func.count())
        .where(j.c.status == JobState.ACTIVATED.value)
        .group_by(j.c.computing_site, j.c.vo, j.c.prod_source_label, j.c.owner)
    )
    out: dict[str, dict[DemandKey, int]] = {}
    for site, vo, label, owner, n in conn.execute(stmt):
        out.setdefault(site, {})[(vo, label, owner)] = int(n)
    return out


def connected_offers(conn: Connection, *, queue: str, since: float) -> list[Any]:
    """Resources advertised by a queue's connected pilots (rows with cores, memory_mb, disk_mb, tags)."""
    p = pilots
    stmt = select(p.c.pilot_id, p.c.cores, p.c.memory_mb, p.c.disk_mb, p.c.tags).where(
        p.c.queue == queue, p.c.connected, p.c.last_seen >= since
    )
    return list(conn.execute(stmt.limit(1000)).mappings())
