"""The factory service: queue statistics and worker bookkeeping for pilot factories.

A factory can only register, change and list its own workers. With a token the factory is the
token's ``sub`` (role ``factory``; an admin may act for any factory) and its ``ailuro.queues``, when
it names any, bound the queues whose statistics it reads. In trusted-metadata development mode,
calls that change workers (``RegisterWorkers``, ``UpdateWorkers``, ``ReportQueueHealth``) carry the
factory's id and secret instead (:class:`FactoryCaller`). A worker reported ended or held releases
its pilot's jobs at once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from ailuro.errors import PermissionDenied
from ailuro.v1 import factory_pb2
from dispatcher import validation
from dispatcher.auth.policy import ADMIN, Action, Resource, may
from dispatcher.convert import FINAL_WORKER_STATES, WORKER_STATE_NAMES
from dispatcher.identity import ANONYMOUS, Identity
from dispatcher.services.pilot_tokens import PilotTokenService
from dispatcher.services.runtime import Runtime
from dispatcher.states import JobState
from dispatcher.store import audit
from dispatcher.store import factories as fstore
from dispatcher.store import watchdog as jstore
from dispatcher.store import workers as wstore

log = logging.getLogger(__name__)

_RUNNING = (JobState.SENT.value, JobState.STARTING.value, JobState.RUNNING.value)
_PILOT_GONE_STATES = frozenset(FINAL_WORKER_STATES) | {"held"}
"""Worker states in which no pilot of the worker runs any more: its jobs are released at once."""
_GONE_WHY = "is gone (its factory saw the worker end or be held)"


@dataclass(frozen=True, kw_only=True)
class FactoryCaller:
    """The factory a call comes from: its token's ``sub``, or (development) its metadata and secret."""

    factory_id: str = ""
    """The factory's id: a token's ``sub``, else the ``ailuro-factory-id`` metadata."""
    secret: str = ""
    """The ``ailuro-factory-secret`` metadata (trusted-metadata mode only)."""
    identity: Identity = ANONYMOUS
    """The authenticated caller."""

    @property
    def token(self) -> bool:
        """Whether a token proved who this is (then no secret is asked for)."""
        return self.identity.principal is not None

    @property
    def any_factory(self) -> bool:
        """An admin acts for every factory; a factory only for itself. A development caller that
        names a factory id (metadata) is held to that factory and its secret."""
        everyone = ADMIN in self.identity.roles or self.identity.all_vos
        return everyone and (self.token or not self.factory_id)

    def own_workers_only(self, factory_id: str, field: str) -> None:
        """PERMISSION_DENIED unless ``factory_id`` is the caller's (or the caller is an admin)."""
        if self.any_factory:
            return
        if factory_id != self.factory_id:
            raise PermissionDenied(
                f"a factory registers and lists only its own workers (it is {self.factory_id!r})", field=field
            )

    def stats_queues(self, names: list[str]) -> None:
        """PERMISSION_DENIED for a queue outside a factory token's ``ailuro.queues`` (when it names any)."""
        principal = self.identity.principal
        if self.any_factory or principal is None or not principal.queues:
            return
        for i, name in enumerate(names):
            if not may(self.identity, Action.QUEUE_STATS, Resource(queue=name)):
                raise PermissionDenied(f"this factory token serves {list(principal.queues)}", field=f"queues[{i}]")


def _audit_updates(
    conn: Connection, caller: FactoryCaller, req: factory_pb2.UpdateWorkersRequest, *, now: float
) -> None:
    """One audit row per UpdateWorkers call: how many workers reached which state."""
    states: dict[str, int] = {}
    for u in req.updates:
        name = WORKER_STATE_NAMES[u.state]
        states[name] = states.get(name, 0) + 1
    audit.record(
        conn,
        actor=caller.factory_id,
        vo="",
        action=audit.WORKERS_UPDATE,
        target=f"factory {caller.factory_id}",
        detail={"workers": len(req.updates), "states": states},
        now=now,
    )


class FactoryService:
    """What pilot factories call."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self.pilot_tokens = PilotTokenService(runtime)

    async def queue_stats(
        self, req: factory_pb2.GetQueueStatsRequest, caller: FactoryCaller
    ) -> list[factory_pb2.QueueStats]:
        """Per-queue job, pilot and worker counts, and start-failure flags, for the named queues (or all
        the caller may see)."""
        validation.validate_queue_stats(req, known_queues=self.rt.queue_names)
        caller.stats_queues(list(req.queues))
        # Each name once: 20,000 copies of one name would otherwise build a 20,000-entry answer.
        names = list(dict.fromkeys(req.queues)) or [
            q.name for q in self.rt.config.queues if may(caller.identity, Action.QUEUE_STATS, Resource(queue=q.name))
        ]
        now = self.rt.now()

        def run() -> list[factory_pb2.QueueStats]:
            with self.rt.db.read() as conn:
                jobs = wstore.queue_job_counts(conn)
                pilots = wstore.connected_pilots(conn, now=now, stale_s=self.rt.config.pilot_stale_s)
                workers = wstore.worker_counts(conn)
                health = fstore.queue_health(conn)
            out = []
            for q in names:
                counts = jobs.get(q, {})
                connected, idle = pilots.get(q, (0, 0))
                failures, flagged, reason = health.get(q, (0, False, ""))
                out.append(
                    factory_pb2.QueueStats(
                        queue=q,
                        activated_jobs=counts.get(JobState.ACTIVATED.value, 0),
                        assigned_jobs=counts.get(JobState.ASSIGNED.value, 0),
                        running_jobs=sum(counts.get(s, 0) for s in _RUNNING),
                        connected_pilots=connected,
                        idle_pilots=idle,
                        workers=workers.get(q, {}),
                        start_failures=failures,
                        flagged=flagged,
                        flag_reason=reason,
                    )
                )
            return out

        return await self.rt.db_call(run)

    async def register_workers(self, req: factory_pb2.RegisterWorkersRequest, caller: FactoryCaller) -> None:
        """Record new workers of the calling factory (idempotent per worker_id)."""
        validation.validate_register_workers(req, known_queues=self.rt.queue_names)
        for i, w in enumerate(req.workers):
            caller.own_workers_only(w.factory_id, f"workers[{i}].factory_id")

        def run() -> None:
            with self.rt.db.write() as conn:
                now = self.rt.now()
                self._authenticate(conn, caller, now=now)
                if caller.any_factory:
                    for fid in dict.fromkeys(w.factory_id for w in req.workers):
                        mine = [w.worker_id for w in req.workers if w.factory_id == fid]
                        fstore.check_owned(conn, fid, mine, field="workers")
                else:
                    fstore.check_owned(conn, caller.factory_id, [w.worker_id for w in req.workers], field="workers")
                wstore.register_workers(conn, list(req.workers), now=now)
                audit.record(
                    conn,
                    actor=caller.factory_id,
                    vo="",
                    action=audit.WORKERS_REGISTER,
                    target=f"factory {caller.factory_id}",
                    detail={"workers": len(req.workers), "queues": sorted({w.queue for w in req.workers})[:20]},
                    now=now,
                )

        await self.rt.db_call(run)

    async def update_workers(self, req: factory_pb2.UpdateWorkersRequest, caller: FactoryCaller) -> int:
        """Record the calling factory's workers' new batch states; returns the jobs released.

        Unknown worker ids are NOT_FOUND and another factory's workers PERMISSION_DENIED (nothing
        written). Workers that ended or are held have no running pilot: the jobs their pilots
        held are requeued or failed over now, in the same transaction, by the lease rules.
        """
        validation.validate_update_workers(req)
        gone = [u.worker_id for u in req.updates if WORKER_STATE_NAMES[u.state] in _PILOT_GONE_STATES]

        def run() -> int:
            with self.rt.db.write() as conn:
                now = self.rt.now()
                self._authenticate(conn, caller, now=now)
                ids = [u.worker_id for u in req.updates]
                if not caller.any_factory:
                    fstore.check_owned(conn, caller.factory_id, ids, field="updates")
                wstore.update_workers(conn, list(req.updates), now=now)
                _audit_updates(conn, caller, req, now=now)
                wstore.disconnect_pilots(conn, gone)
                released = 0
                while True:
                    n = jstore.release_pilot_jobs(conn, gone, now=now, why=_GONE_WHY, limit=self.rt.config.max_batch)
                    released += n
                    if n < self.rt.config.max_batch:
                        return released

        released = await self.rt.db_call(run)
        if released:
            log.info("released %d job(s) of %d ended or held worker(s)", released, len(gone))
        return released

    async def report_queue_health(self, req: factory_pb2.ReportQueueHealthRequest, caller: FactoryCaller) -> None:
        """Store the calling factory's start-failure streak and backoff per queue."""
        validation.validate_queue_health(req, known_queues=self.rt.queue_names)

        def run() -> None:
            with self.rt.db.write() as conn:
                now = self.rt.now()
                self._authenticate(conn, caller, now=now)
                fstore.report_health(conn, caller.factory_id, list(req.queues), now=now)

        await self.rt.db_call(run)

    async def issue_pilot_tokens(
        self, req: factory_pb2.IssuePilotTokensRequest, identity: Identity
    ) -> factory_pb2.IssuePilotTokensResponse:
        """One pilot token per worker for a queue of the calling factory (see :mod:`.pilot_tokens`)."""
        return await self.pilot_tokens.issue(req, identity)

    @staticmethod
    def _authenticate(conn: Any, caller: FactoryCaller, *, now: float) -> None:
        """A token proved who the factory is; in trusted-metadata mode its secret must."""
        if caller.token:
            return
        fstore.authenticate(conn, caller.factory_id, caller.secret, now=now)

    async def list_workers(
        self, req: factory_pb2.ListWorkersRequest, caller: FactoryCaller
    ) -> list[factory_pb2.Worker]:
        """Workers matching the filters, newest first (a factory's own only)."""
        limit = validation.validate_list_workers(req)
        factory_id = req.factory_id
        if not caller.any_factory:
            factory_id = factory_id or caller.factory_id
            caller.own_workers_only(factory_id, "factory_id")

        def run() -> list[factory_pb2.Worker]:
            with self.rt.db.read() as conn:
                return wstore.list_workers(
                    conn, queue=req.queue, factory_id=factory_id, include_final=req.include_final, limit=limit
                )

        return await self.rt.db_call(run)
