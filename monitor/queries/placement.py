"""Queue status and ``job why`` for the monitor's pages, read from the dispatcher's tables.

The status is one primary-key read of ``queue_status`` (migration 0011) per page. ``job why`` is
:func:`dispatcher.why.job_why`, the very function the BrokerageService's ExplainJob calls, so
the job page says what ``ailuro job why`` says.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Connection, select

from ailuro.queues import QueueConfig
from dispatcher.shares import ShareTree
from dispatcher.store.jobs import fetch_rows
from dispatcher.store.pilots import PILOT_STALE_S
from dispatcher.store.schema import queue_status
from dispatcher.why import WAITING, job_why


def queue_statuses(conn: Connection, names: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Status, reason, who and when of the last change, for each of ``names`` (no row: online)."""
    wanted = sorted(set(names))
    found = (
        {
            r["queue"]: {
                "status": r["status"],
                "reason": r["reason"],
                "changed_by": r["changed_by"],
                "changed_at": r["changed_at"],
            }
            for r in conn.execute(select(queue_status).where(queue_status.c.queue.in_(wanted))).mappings()
        }
        if wanted
        else {}
    )
    default = {"status": "online", "reason": "", "changed_by": "", "changed_at": None}
    return {n: found.get(n, default) for n in wanted}


def why(
    conn: Connection,
    panda_id: int,
    queues: Mapping[str, QueueConfig],
    base: ShareTree,
    *,
    now: float,
    max_ranked: int,
) -> dict[str, Any] | None:
    """The ``job why`` answer for a waiting job as JSON (None if it is not waiting).

    The caller has already checked that the viewer may see the job. The queue is ranked only
    when at most ``max_ranked`` jobs wait there (``MonitorConfig.why_max_ranked``). Without ``--queues`` the
    monitor knows no queue: the verdicts are then empty, the summary and order still hold.
    """
    row = fetch_rows(conn, [panda_id]).get(panda_id)
    if row is None or row["status"] not in WAITING:
        return None
    w = job_why(conn, row, queues, base, now=now, stale_since=now - PILOT_STALE_S, max_ranked=max_ranked)
    f, e = w.facts, w.explanation
    return {
        "summary": e.summary,
        "share_leaf": f.leaf_path,
        "share_priority": f.leaf_priority if f.leaf_priority != float("inf") else None,
        "claim_position": w.position,
        "claim_waiting": w.waiting,
        "claim_deeper_than": w.deeper_than,
        "queues": [{"queue": v.queue, "can_run": v.can_run, "reasons": list(v.reasons)} for v in e.verdicts],
        "advice": list(e.advice),
    }
