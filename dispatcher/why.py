"""Read the facts of ``job why`` from the database and explain them (no runtime needed).

The BrokerageService's ExplainJob and the monitor's job page both call :func:`job_why`, so the
page can never disagree with ``ailuro job why`` (nor with the scheduler: the verdicts are the
pure functions of :mod:`dispatcher.explain`); the page only ranks shallower queues (it refreshes,
so it reads at most ``max_ranked + 1`` rows). The caller checks who may see the job first.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select

from ailuro.queues import QueueConfig
from dispatcher import explain as ex
from dispatcher.matching import Offer, QueueStatus, claim_refusal, parse_tags
from dispatcher.shares import Candidate, ShareTree, node_path, order, report
from dispatcher.states import JobState
from dispatcher.store import brokerage as bstore
from dispatcher.store.claim import COLUMNS, needs_of
from dispatcher.store.schema import jobs

MAX_RANKED = 200_000
"""``job why`` ranks the waiting jobs of a queue only when there are at most this many (beyond:
"more than N waiting", no position): a rank among the first N alone would not be the claim order."""

WAITING = frozenset({JobState.DEFINED.value, JobState.ASSIGNED.value, JobState.ACTIVATED.value})
"""The states :func:`dispatcher.explain.explain` explains as waiting."""


@dataclass(frozen=True, kw_only=True)
class JobWhy:
    """The facts and the explanation of one job."""

    row: Any
    facts: ex.JobFacts
    explanation: ex.Explanation
    position: int
    """The job's place in its queue's claim order (1: next); 0: not ranked."""
    waiting: int
    """Activated jobs of its queue a pilot could be handed (when ``deeper_than`` is 0)."""
    deeper_than: int = 0
    """Nonzero: more than this many jobs wait in its queue, so they were not ranked (``position`` 0)."""


def _offers(conn: Connection, queues: Mapping[str, QueueConfig], since: float) -> dict[str, tuple[Offer, ...]]:
    return {
        name: tuple(
            Offer(cores=p["cores"], memory_mb=p["memory_mb"], disk_mb=p["disk_mb"], tags=parse_tags(p["tags"]))
            for p in bstore.connected_offers(conn, queue=name, since=since)
        )
        for name in queues
    }


def _waiting(conn: Connection, queue: str, status: QueueStatus, limit: int) -> list[Any] | None:
    """The activated jobs of ``queue`` a pilot could be handed (the claim's own status rule), or
    ``None`` when more than ``limit`` are activated there (at most ``limit + 1`` rows are read,
    along the claim index)."""
    cols = [c for c in COLUMNS if c.name != "spec"]
    stmt = (
        select(*cols)
        .where(jobs.c.computing_site == queue, jobs.c.status == JobState.ACTIVATED.value)
        .order_by(jobs.c.current_priority.desc(), jobs.c.panda_id)
        .limit(limit + 1)
    )
    rows = list(conn.execute(stmt).mappings())
    if len(rows) > limit:
        return None
    return [r for r in rows if not claim_refusal(status, r["prod_source_label"])]


def job_why(
    conn: Connection,
    row: Any,
    queues: Mapping[str, QueueConfig],
    base: ShareTree,
    *,
    now: float,
    stale_since: float,
    max_ranked: int = MAX_RANKED,
) -> JobWhy:
    """Explain job ``row`` (a :func:`dispatcher.store.jobs.fetch_rows` row) against ``queues``.

    ``base`` is the configured share tree (admins' live weights are read here); pilots that
    reported after ``stale_since`` count as connected. Its queue's waiting jobs are ranked only
    when at most ``max_ranked`` wait (the monitor's job page asks for fewer than the CLI).
    """
    panda_id = row["panda_id"]
    statuses = {q: c.status for q, c in bstore.queue_statuses(conn).items()}
    tree = base.with_weights(bstore.share_weight_overrides(conn))
    usage = bstore.read_usage(conn, now=now, half_life_s=tree.half_life_s)
    offers = _offers(conn, queues, stale_since)
    status = statuses.get(row["computing_site"], QueueStatus.ONLINE)
    found = _waiting(conn, row["computing_site"], status, max_ranked) if row["status"] == "activated" else []
    waiting = found if found is not None else []
    leaf = tree.leaf(vo=row["vo"], label=row["prod_source_label"], user=row["owner"])
    lines = {x.path: x for x in report(tree, usage, [leaf])}
    cands = [
        Candidate(
            key=r["panda_id"],
            leaf=tree.leaf(vo=r["vo"], label=r["prod_source_label"], user=r["owner"]),
            priority=r["current_priority"],
            needs=needs_of(r),
        )
        for r in waiting
    ]
    ranked = [c.key for c in order(tree, usage, cands)]
    position = ranked.index(panda_id) + 1 if panda_id in ranked else 0
    facts = ex.JobFacts(
        panda_id=panda_id,
        state=JobState(row["status"]),
        vo=row["vo"],
        label=row["prod_source_label"],
        site=row["computing_site"],
        needs=needs_of(row),
        leaf_path=node_path(leaf),
        leaf_priority=lines[node_path(leaf)].priority,
    )
    qfacts = [
        ex.QueueFacts(config=q, status=statuses.get(name, QueueStatus.ONLINE), offers=offers[name])
        for name, q in queues.items()
    ]
    deeper = max_ranked if found is None else 0
    explanation = ex.explain(facts, qfacts, position=position, waiting=len(waiting), deeper_than=deeper)
    return JobWhy(
        row=row, facts=facts, explanation=explanation, position=position, waiting=len(waiting), deeper_than=deeper
    )
