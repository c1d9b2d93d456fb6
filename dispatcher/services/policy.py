"""The claim's view of queue status, share weights, decayed usage and demand, refreshed periodically.

Reading all of it on every claim batch would add several queries to the hot path, so one
process keeps it and refreshes it every ``share_refresh_s`` inside a claim transaction; between
refreshes its own claims are charged to the local copy at once. Charges are written to
``share_usage`` at the next refresh (a crash loses at most that long of charges, which only
shifts fair share slightly). A status set through this process applies here at once and in
other dispatcher processes at their next refresh.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy import Connection

from dispatcher.matching import QueueStatus
from dispatcher.services.runtime import Runtime
from dispatcher.shares import Leaf, ShareTree, tree_from_config
from dispatcher.store import brokerage as bstore
from dispatcher.store.brokerage import DemandKey
from dispatcher.store.claim import ClaimPolicy


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
        self._attempt: tuple[float, dict[Leaf, float], _Snapshot] | None = None

    def offline(self, queue: str) -> bool:
        """Whether ``queue`` is offline as far as this process knows (no claim needed to say no)."""
        return self._state.statuses.get(queue) is QueueStatus.OFFLINE

    def set_status(self, queue: str, status: QueueStatus) -> None:
        """Apply a status this process just recorded, without waiting for the next refresh."""
        self._state.statuses[queue] = status

    def set_weight(self, path: str, weight: float) -> None:
        """Apply a weight this process just recorded."""
        self._state.weights[path] = weight

    def due(self, now: float) -> bool:
        """Whether the next claim at ``now`` refreshes the policy from the database."""
        return now - self._refreshed_at >= self.rt.config.share_refresh_s

    def _policy(self, state: _Snapshot) -> ClaimPolicy:
        return ClaimPolicy(
            tree=self.base.with_weights(state.weights),
            usage=state.usage,
            statuses=state.statuses,
            demand=state.demand,
        )

    def current(self, conn: Connection, now: float) -> ClaimPolicy:
        """The policy for a claim in the open transaction ``conn``; refreshes when it is due."""
        self._attempt = None
        if not self.due(now):
            return self._policy(self._state)
        half = self.base.half_life_s
        flushing = dict(self._pending)
        bstore.add_usage(conn, flushing, now=now, half_life_s=half)
        state = _Snapshot(
            statuses={q: c.status for q, c in bstore.queue_statuses(conn).items()},
            weights=bstore.share_weight_overrides(conn),
            usage=bstore.read_usage(conn, now=now, half_life_s=half),
            demand=bstore.demand(conn),
        )
        self._attempt = (now, flushing, state)
        return self._policy(state)

    def charge(self, charged: Mapping[Leaf, float]) -> None:
        """After a claim committed: adopt a refresh it made, and count what it handed out."""
        if self._attempt is not None:
            now, flushed, state = self._attempt
            self._attempt = None
            for leaf, amount in flushed.items():
                self._pending[leaf] -= amount
                if self._pending[leaf] <= 1e-9:
                    del self._pending[leaf]
            self._state = state
            self._refreshed_at = now
        for leaf, amount in charged.items():
            self._pending[leaf] += amount
            self._state.usage[leaf] = self._state.usage.get(leaf, 0.0) + amount
