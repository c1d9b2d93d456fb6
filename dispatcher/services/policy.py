"""The claim's view of queue status, share weights, decayed usage and demand, refreshed periodically.

Reading all of it on every claim batch would add several queries to the hot path, so one
process keeps it and refreshes it every ``share_refresh_s`` in a short transaction of its own,
from a background task on the bulk database lane; a claim refreshes it itself only when that
task fell behind by another ``share_refresh_s`` (or never ran). Between refreshes its own
claims are charged to the local copy at once. Charges are written to
``share_usage`` at the next refresh (a crash loses at most that long of charges, which only
shifts fair share slightly). A status set through this process applies here at once and in
other dispatcher processes at their next refresh.

Thread-safe: on PostgreSQL up to ``claim_batches_in_flight`` claim batches run at once on
database threads, each asking for :meth:`ClaimPolicyCache.policy`, charging after its commit and
possibly refreshing, while the event loop applies admins' statuses and weights. The state is
copied on write under a lock, so a claim reads one consistent snapshot without holding the lock,
and only one thread refreshes at a time (a claim that finds another one refreshing claims with
the snapshot it has rather than wait for that transaction).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from dispatcher.matching import QueueStatus
from dispatcher.services.runtime import Runtime
from dispatcher.shares import Leaf, ShareTree, subtree_usage, tree_from_config
from dispatcher.store import brokerage as bstore
from dispatcher.store.brokerage import DemandKey
from dispatcher.store.claim import ClaimPolicy
from dispatcher.store.engine import Database


def base_tree(rt: Runtime) -> ShareTree:
    """The share tree of the configuration (before admins' live weights)."""
    return tree_from_config(rt.config.shares, rt.config.vo_shares)


@dataclass(kw_only=True)
class _Snapshot:
    statuses: dict[str, QueueStatus] = field(default_factory=dict)
    weights: dict[str, float] = field(default_factory=dict)
    usage: dict[Leaf, float] = field(default_factory=dict)
    demand: dict[str, dict[DemandKey, int]] = field(default_factory=dict)


class ClaimPolicyCache:
    """One process's claim policy: see the module docstring."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.base = base_tree(rt)
        self._state = _Snapshot()
        self._pending: dict[Leaf, float] = {}
        self._refreshed_at = float("-inf")
        self._tree = self.base
        # usage per tree node, kept with ``usage`` (summed at refresh, charged in place) so a
        # claim does not sum every leaf ever charged (~0.9 ms per 1,000 leaves, getrusage)
        self._sums: dict[tuple[str, ...], float] = {}
        # ``_lock`` guards the fields above (held for dict copies only, never across the database);
        # ``_refreshing`` lets one thread at a time run the refresh transaction
        self._lock = threading.Lock()
        self._refreshing = threading.Lock()

    def offline(self, queue: str) -> bool:
        """Whether ``queue`` is offline as far as this process knows (no claim needed to say no)."""
        return self._state.statuses.get(queue) is QueueStatus.OFFLINE

    def set_status(self, queue: str, status: QueueStatus) -> None:
        """Apply a status this process just recorded, without waiting for the next refresh."""
        with self._lock:
            self._state = replace(self._state, statuses={**self._state.statuses, queue: status})

    def set_weight(self, path: str, weight: float) -> None:
        """Apply a weight this process just recorded."""
        with self._lock:
            weights = {**self._state.weights, path: weight}
            self._state = replace(self._state, weights=weights)
            self._tree = self.base.with_weights(weights)

    def due(self, now: float) -> bool:
        """Whether the policy should be refreshed from the database before a claim at ``now``."""
        return now - self._refreshed_at >= self.rt.config.share_refresh_s

    def policy(self) -> ClaimPolicy:
        """The policy for the next claim (a snapshot: later charges and refreshes replace the
        dicts it holds rather than change them)."""
        with self._lock:
            state, tree, sums = self._state, self._tree, self._sums
        return ClaimPolicy(tree=tree, usage=state.usage, statuses=state.statuses, demand=state.demand, sums=sums)

    def stale(self, now: float) -> bool:
        """Whether the last refresh is older than twice ``share_refresh_s`` (the background
        refresh normally keeps it younger)."""
        return now - self._refreshed_at >= 2 * self.rt.config.share_refresh_s

    def refresh_if_stale(self, db: Database, now: float) -> None:
        """:meth:`refresh_if_due` when :meth:`stale` (the claim path's fallback)."""
        if self.stale(now):
            self.refresh_if_due(db, now)

    def refresh_if_due(self, db: Database, now: float) -> None:
        """:meth:`refresh` when :meth:`due`, unless another thread is refreshing right now."""
        if not self.due(now) or not self._refreshing.acquire(blocking=False):
            return
        try:
            if self.due(now):  # not refreshed meanwhile by the thread that held the lock
                self.refresh(db, now)
        finally:
            self._refreshing.release()

    def refresh(self, db: Database, now: float) -> None:
        """Write this process's charges and read everything back, in a transaction of its own
        (not the claim's: the demand count reads every waiting job and must not hold claimed rows)."""
        half = self.base.half_life_s
        with self._lock:
            flushing = dict(self._pending)
        with db.write() as conn:
            bstore.add_usage(conn, flushing, now=now, half_life_s=half)
            state = _Snapshot(
                statuses={q: c.status for q, c in bstore.queue_statuses(conn).items()},
                weights=bstore.share_weight_overrides(conn),
                usage=bstore.read_usage(conn, now=now, half_life_s=half),
                demand=bstore.demand(conn),
            )
        tree = self.base.with_weights(state.weights)
        with self._lock:
            # committed: what was flushed is in the database (and in ``state``); keep the rest
            # pending, including what claims on other threads charged during the transaction
            pending = dict(self._pending)
            for leaf, amount in flushing.items():
                left = pending.get(leaf, 0.0) - amount
                if left <= 1e-9:
                    pending.pop(leaf, None)
                else:
                    pending[leaf] = left
            for leaf, amount in pending.items():
                state.usage[leaf] = state.usage.get(leaf, 0.0) + amount
            self._pending = pending
            self._state = state
            self._sums = subtree_usage(state.usage)
            self._tree = tree
            self._refreshed_at = now

    def charge(self, charged: Mapping[Leaf, float]) -> None:
        """After a claim committed: count what it handed out (written at the next refresh)."""
        if not charged:
            return
        with self._lock:
            pending, usage, sums = dict(self._pending), dict(self._state.usage), dict(self._sums)
            for leaf, amount in charged.items():
                pending[leaf] = pending.get(leaf, 0.0) + amount
                usage[leaf] = usage.get(leaf, 0.0) + amount
                for node in (leaf[:1], leaf[:2], leaf):
                    sums[node] = sums.get(node, 0.0) + amount
            self._pending, self._sums = pending, sums
            self._state = replace(self._state, usage=usage)
