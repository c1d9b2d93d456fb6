"""The claim's view of queue status, share weights, decayed usage and demand, refreshed periodically.

Reading all of it on every claim batch would add several queries to the hot path, so one
process keeps it and refreshes it every ``share_refresh_s`` in a short transaction before a
claim; between
refreshes its own claims are charged to the local copy at once. Charges are written to
``share_usage`` at the next refresh (a crash loses at most that long of charges, which only
shifts fair share slightly). A status set through this process applies here at once and in
other dispatcher processes at their next refresh.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field

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
        self._pending: dict[Leaf, float] = defaultdict(float)
        self._refreshed_at = float("-inf")
        self._tree = self.base
        # usage per tree node, kept with ``usage`` (summed at refresh, charged in place) so a
        # claim does not sum every leaf ever charged (~0.9 ms per 1,000 leaves, getrusage)
        self._sums: dict[tuple[str, ...], float] = {}

    def offline(self, queue: str) -> bool:
        """Whether ``queue`` is offline as far as this process knows (no claim needed to say no)."""
        return self._state.statuses.get(queue) is QueueStatus.OFFLINE

    def set_status(self, queue: str, status: QueueStatus) -> None:
        """Apply a status this process just recorded, without waiting for the next refresh."""
        self._state.statuses[queue] = status

    def set_weight(self, path: str, weight: float) -> None:
        """Apply a weight this process just recorded."""
        self._state.weights[path] = weight
        self._tree = self.base.with_weights(self._state.weights)

    def due(self, now: float) -> bool:
        """Whether the policy should be refreshed from the database before a claim at ``now``."""
        return now - self._refreshed_at >= self.rt.config.share_refresh_s

    def policy(self) -> ClaimPolicy:
        """The policy for the next claim."""
        state = self._state
        return ClaimPolicy(
            tree=self._tree,
            usage=state.usage,
            statuses=state.statuses,
            demand=state.demand,
            sums=self._sums,
        )

    def refresh(self, db: Database, now: float) -> None:
        """Write this process's charges and read everything back, in a transaction of its own
        (not the claim's: the demand count reads every waiting job and must not hold claimed rows)."""
        half = self.base.half_life_s
        flushing = dict(self._pending)
        with db.write() as conn:
            bstore.add_usage(conn, flushing, now=now, half_life_s=half)
            state = _Snapshot(
                statuses={q: c.status for q, c in bstore.queue_statuses(conn).items()},
                weights=bstore.share_weight_overrides(conn),
                usage=bstore.read_usage(conn, now=now, half_life_s=half),
                demand=bstore.demand(conn),
            )
        # committed: what was flushed is in the database (and in ``state``); keep the rest pending
        for leaf, amount in flushing.items():
            self._pending[leaf] -= amount
            if self._pending[leaf] <= 1e-9:
                del self._pending[leaf]
        for leaf, amount in self._pending.items():
            state.usage[leaf] = state.usage.get(leaf, 0.0) + amount
        self._state = state
        self._sums = subtree_usage(state.usage)
        self._tree = self.base.with_weights(state.weights)
        self._refreshed_at = now

    def charge(self, charged: Mapping[Leaf, float]) -> None:
        """After a claim committed: count what it handed out (written at the next refresh)."""
        for leaf, amount in charged.items():
            self._pending[leaf] += amount
            self._state.usage[leaf] = self._state.usage.get(leaf, 0.0) + amount
            for node in (leaf[:1], leaf[:2], leaf):
                self._sums[node] = self._sums.get(node, 0.0) + amount
