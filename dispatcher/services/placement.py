"""Operators' placement calls: queue status, share weights and report, and why a job waits.

Changing a queue's status or a share weight needs the ``admin`` role (checked here, before any
write). Reads need only an identity. The decisions are in the pure modules
(:mod:`dispatcher.matching`, :mod:`dispatcher.shares`, :mod:`dispatcher.explain`); this module
reads the facts and writes the changes.
"""

from __future__ import annotations

from ailuro.errors import InvalidArgument, NotFound, PermissionDenied
from ailuro.queues import check_share_path, check_share_weight
from dispatcher.auth.policy import Action
from dispatcher.identity import Identity
from dispatcher.matching import QueueStatus
from dispatcher.services import authz
from dispatcher.services.policy import ClaimPolicyCache
from dispatcher.services.runtime import Runtime
from dispatcher.shares import ShareLine, report
from dispatcher.store import audit
from dispatcher.store import brokerage as bstore
from dispatcher.store.jobs import fetch_rows
from dispatcher.why import JobWhy, job_why

MAX_REASON = 1000


def require_admin(identity: Identity, action: str) -> None:
    """``PermissionDenied`` unless the caller has the admin role of every VO (queues and the share
    tree are shared by all VOs; see :mod:`dispatcher.auth.policy`)."""
    if "admin" not in identity.roles or not identity.all_vos:
        raise PermissionDenied(f"{action} needs the admin role; {identity.name!r} does not have it")


class PlacementService:
    """Queue status, shares and ``job why``."""

    def __init__(self, runtime: Runtime, policy: ClaimPolicyCache) -> None:
        self.rt = runtime
        self.policy = policy
        self._queues = {q.name: q for q in runtime.config.queues}

    # --- queue status -------------------------------------------------------------------------

    async def set_queue_status(self, queue: str, status: str, reason: str, identity: Identity) -> bstore.StatusChange:
        """Record a queue's new status (admin) and apply it in this process at once."""
        require_admin(identity, "setting a queue's status")
        if queue not in self._queues:
            raise InvalidArgument(f"unknown queue {queue[:255]!r}", field="queue")
        try:
            value = QueueStatus(status)
        except ValueError:
            choices = ", ".join(s.value for s in QueueStatus)
            raise InvalidArgument(f"must be one of {choices}, not {status[:40]!r}", field="status") from None
        if not reason.strip() or len(reason) > MAX_REASON or "\x00" in reason:
            raise InvalidArgument(f"must be 1 to {MAX_REASON} characters (why the status changes)", field="reason")
        change = bstore.StatusChange(
            queue=queue, status=value, reason=reason, changed_by=identity.name, changed_at=self.rt.now()
        )

        def run() -> None:
            with self.rt.db.write() as conn:
                bstore.set_queue_status(conn, change)
                audit.record(
                    conn,
                    actor=identity.name,
                    vo=identity.vo,
                    action=audit.QUEUE_STATUS,
                    target=queue,
                    detail={"status": value.value, "reason": reason[:200]},
                    now=change.changed_at,
                )

        await self.rt.db_call(run)
        self.policy.set_status(queue, value)
        return change

    async def queue_history(self, queue: str, limit: int) -> list[bstore.StatusChange]:
        """A queue's status changes, newest first."""
        if queue not in self._queues:
            raise InvalidArgument(f"unknown queue {queue[:255]!r}", field="queue")
        if not 0 <= limit <= 1000:
            raise InvalidArgument("must be 0 to 1000", field="limit")

        def run() -> list[bstore.StatusChange]:
            with self.rt.db.read() as conn:
                return bstore.queue_history(conn, queue, limit=limit or 100)

        return await self.rt.db_call(run)

    # --- shares -------------------------------------------------------------------------------

    async def shares(self) -> list[ShareLine]:
        """Target, decayed usage and effective priority per node of the share tree."""
        now = self.rt.now()
        base = self.policy.base

        def run() -> list[ShareLine]:
            with self.rt.db.read() as conn:
                tree = base.with_weights(bstore.share_weight_overrides(conn))
                usage = bstore.read_usage(conn, now=now, half_life_s=tree.half_life_s)
                known = {
                    tree.leaf(vo=vo, label=label, user=owner)
                    for per_queue in bstore.demand(conn).values()
                    for vo, label, owner in per_queue
                }
            return report(tree, usage, sorted(known))

        return await self.rt.db_call(run)

    async def set_share_weight(self, path: str, weight: float, identity: Identity) -> None:
        """Set one share weight (admin); it applies in this process at once."""
        require_admin(identity, "changing a share weight")
        canonical = "/".join(check_share_path(path, "path"))
        value = check_share_weight(weight, "weight")

        def run() -> None:
            now = self.rt.now()
            with self.rt.db.write() as conn:
                bstore.set_share_weight(conn, path=canonical, weight=value, changed_by=identity.name, now=now)
                audit.record(
                    conn,
                    actor=identity.name,
                    vo=identity.vo,
                    action=audit.SHARE_WEIGHT,
                    target=canonical,
                    detail={"weight": value},
                    now=now,
                )

        await self.rt.db_call(run)
        self.policy.set_weight(canonical, value)

    # --- job why ------------------------------------------------------------------------------

    async def why(self, panda_id: int, identity: Identity) -> JobWhy:
        """Why job ``panda_id`` waits (or what it does); NOT_FOUND for another VO's job."""
        if panda_id <= 0:
            raise InvalidArgument("must be a positive job id", field="panda_id")
        now = self.rt.now()
        stale = now - self.rt.config.pilot_stale_s
        base = self.policy.base

        def run() -> JobWhy:
            with self.rt.db.read() as conn:
                authz.require_jobs(conn, [panda_id], identity, Action.READ, field="panda_id")
                row = fetch_rows(conn, [panda_id]).get(panda_id)
                if row is None:
                    raise NotFound(f"no job {panda_id}")
                return job_why(conn, row, self._queues, base, now=now, stale_since=stale)

        return await self.rt.db_call(run)
