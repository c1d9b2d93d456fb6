"""The claim's reads: which activated jobs of a queue to consider, and the plan from the pure functions.

:func:`plan_queue` reads candidates and asks :func:`dispatcher.shares.assign` which request gets
which job; ``store/pilots.py`` then writes the transitions. Candidates are the queue's best jobs
by priority (as before shares existed) plus, when several share leaves wait on the queue, the
best jobs of the leaves furthest below target, so that a leaf whose jobs all have low priority
still reaches the front when its share says so. With one leaf waiting the read is the single
index range scan of ``ix_jobs_claim``; each further leaf adds one of ``ix_jobs_claim_leaf``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, select, union

from dispatcher.matching import TEST_LABEL, Needs, Offer, QueueStatus, claim_refusal, parse_tags
from dispatcher.shares import Candidate, Leaf, ShareOrder, ShareTree, assign
from dispatcher.states import JobState
from dispatcher.store.brokerage import DemandKey
from dispatcher.store.schema import jobs

COLUMNS = (
    jobs.c.panda_id,
    jobs.c.vo,
    jobs.c.prod_source_label,
    jobs.c.current_priority,
    jobs.c.lease_epoch,
    jobs.c.modification_time,  # the one-statement claim writes a row only while this is unchanged
    jobs.c.attempt_nr,
    jobs.c.owner,
    jobs.c.creation_time,
    jobs.c.brokerage_reason,
    jobs.c.cores,
    jobs.c.memory_mb,
    jobs.c.max_walltime_s,
    jobs.c.disk_mb,
    jobs.c.tags,
    jobs.c.spec,
)


@dataclass(frozen=True, kw_only=True)
class ClaimPolicy:
    """What the claim decides with besides the jobs: refreshed by the hub every ``share_refresh_s``."""

    tree: ShareTree = field(default_factory=ShareTree)
    """The share tree (configuration plus admins' live weights)."""
    usage: Mapping[Leaf, float] = field(default_factory=dict)
    """Decayed usage per leaf (including this process's charges since the last refresh)."""
    statuses: Mapping[str, QueueStatus] = field(default_factory=dict)
    """Queue status by name; absent: online."""
    demand: Mapping[str, Mapping[DemandKey, int]] = field(default_factory=dict)
    """Activated jobs per queue and (vo, label, owner), as of the last refresh."""
    leaf_windows: int = 4
    """At most this many share leaves are read beyond the priority window per queue and batch."""
    sums: Mapping[tuple[str, ...], float] | None = None
    """Usage of every tree node (:func:`dispatcher.shares.subtree_usage` of ``usage``) when the
    caller keeps it up to date; None: summed per claim."""

    def status(self, queue: str) -> QueueStatus:
        """A queue's status (online when none was set)."""
        return self.statuses.get(queue, QueueStatus.ONLINE)


def needs_of(row: Any) -> Needs:
    """A job row's resources."""
    return Needs(
        cores=row["cores"],
        memory_mb=row["memory_mb"],
        walltime_s=row["max_walltime_s"],
        disk_mb=row["disk_mb"],
        tags=parse_tags(row["tags"]),
    )


def _base(queue: str, status: QueueStatus) -> Any:
    cond = [jobs.c.computing_site == queue, jobs.c.status == JobState.ACTIVATED.value]
    if status is QueueStatus.TEST:
        cond.append(jobs.c.prod_source_label == TEST_LABEL)
    return cond


def _leaves_below_target(policy: ClaimPolicy, queue: str) -> list[DemandKey]:
    """The waiting (vo, label, owner) keys of ``queue``, the furthest below target first."""
    keys = list(policy.demand.get(queue, {}))
    if len(keys) < 2:
        return []
    so = ShareOrder(policy.tree, policy.usage, (), sums=policy.sums)
    tree = policy.tree

    def rank(k: DemandKey) -> tuple[float, ...]:
        leaf = tree.leaf(vo=k[0], label=k[1], user=k[2])
        return (so.ratio(leaf[:1]), so.ratio(leaf[:2]), so.ratio(leaf))

    return sorted(keys, key=rank)[: policy.leaf_windows]


def candidates(conn: Connection, queue: str, *, wanted: int, policy: ClaimPolicy, lock: bool = True) -> list[Any]:
    """Activated jobs of ``queue`` worth considering for ``wanted`` jobs.

    ``lock``: on PostgreSQL with ``FOR UPDATE SKIP LOCKED`` (the claim transaction's read); the
    one-statement claim reads without locking (``store/claim_pg.py`` checks each row as it writes).
    """
    status = policy.status(queue)
    cond = _base(queue, status)
    window = max(4 * wanted, 50)
    order = (jobs.c.current_priority.desc(), jobs.c.panda_id)
    leaves = _leaves_below_target(policy, queue)
    if not leaves:
        stmt = select(*COLUMNS).where(*cond).order_by(*order).limit(window)
    else:
        per_leaf = max(2 * wanted // len(leaves), 8)  # the priority window still covers the rest
        parts = [select(jobs.c.panda_id).where(*cond).order_by(*order).limit(window).subquery()]
        for vo, label, owner in leaves:
            leaf_cond = [*cond, jobs.c.vo == vo, jobs.c.prod_source_label == label, jobs.c.owner == owner]
            parts.append(select(jobs.c.panda_id).where(*leaf_cond).order_by(*order).limit(per_leaf).subquery())
        ids = union(*(select(p.c.panda_id) for p in parts))
        stmt = select(*COLUMNS).where(*cond, jobs.c.panda_id.in_(ids)).order_by(*order)
    if lock and conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    return list(conn.execute(stmt).mappings())


def plan_queue(
    conn: Connection, queue: str, requests: Sequence[tuple[int, Offer]], *, policy: ClaimPolicy
) -> tuple[list[tuple[int, Any, Leaf]], int]:
    """``(request index, job row, leaf)`` for the requests of one queue (nothing when its status
    forbids), and how many candidate rows were read (locked on PostgreSQL) to plan them."""
    if claim_refusal(policy.status(queue), TEST_LABEL):  # offline: nothing at all
        return [], 0
    rows = candidates(conn, queue, wanted=sum(n for n, _ in requests), policy=policy)
    return plan_rows(queue, rows, requests, policy=policy), len(rows)


def plan_rows(
    queue: str, rows: Sequence[Any], requests: Sequence[tuple[int, Offer]], *, policy: ClaimPolicy
) -> list[tuple[int, Any, Leaf]]:
    """``(request index, job row, leaf)``: which of the candidate ``rows`` of ``queue`` go to which
    request (queue status, resources, share order). Pure: no database."""
    status = policy.status(queue)
    if claim_refusal(status, TEST_LABEL):  # offline: nothing at all
        return []
    tree = policy.tree
    cands = []
    by_id: dict[int, Any] = {}
    leaves: dict[tuple[str, str, str], Leaf] = {}  # rows share a few leaves and shapes: build each once
    shapes: dict[tuple[int, int, int, int, str], Needs] = {}
    for row in rows:
        label = row["prod_source_label"]
        if claim_refusal(status, label):
            continue  # the query already filtered; this keeps the rule in one place
        by_id[row["panda_id"]] = row
        who = (row["vo"], label, row["owner"])
        leaf = leaves.get(who)
        if leaf is None:
            leaf = leaves[who] = tree.leaf(vo=who[0], label=label, user=who[2])
        shape = (row["cores"], row["memory_mb"], row["max_walltime_s"], row["disk_mb"], row["tags"])
        needs = shapes.get(shape)
        if needs is None:
            needs = shapes[shape] = needs_of(row)
        cands.append(Candidate(row["panda_id"], leaf, row["current_priority"], needs))
    plan = assign(ShareOrder(tree, policy.usage, cands, sums=policy.sums), requests)
    return [(i, by_id[c.key], c.leaf) for i, c in plan]
