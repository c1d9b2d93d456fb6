"""The factory service: queue statistics and worker bookkeeping for pilot factories."""

from __future__ import annotations

from ailuro.v1 import factory_pb2
from dispatcher import validation
from dispatcher.identity import Identity
from dispatcher.services.runtime import Runtime
from dispatcher.states import JobState
from dispatcher.store import workers as wstore

_RUNNING = (JobState.SENT.value, JobState.STARTING.value, JobState.RUNNING.value)


class FactoryService:
    """What pilot factories call (identity recorded for later authorization)."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime

    async def queue_stats(
        self, req: factory_pb2.GetQueueStatsRequest, identity: Identity
    ) -> list[factory_pb2.QueueStats]:
        """Per-queue job, pilot and worker counts, for the named queues (or all)."""
        validation.validate_queue_stats(req, known_queues=self.rt.queue_names)
        # Each name once: 20,000 copies of one name would otherwise build a 20,000-entry answer.
        names = list(dict.fromkeys(req.queues)) or [q.name for q in self.rt.config.queues]
        now = self.rt.now()

        def run() -> list[factory_pb2.QueueStats]:
            with self.rt.db.read() as conn:
                jobs = wstore.queue_job_counts(conn)
                pilots = wstore.connected_pilots(conn, now=now, stale_s=self.rt.config.pilot_stale_s)
                workers = wstore.worker_counts(conn)
            out = []
            for q in names:
                counts = jobs.get(q, {})
                connected, idle = pilots.get(q, (0, 0))
                out.append(
                    factory_pb2.QueueStats(
                        queue=q,
                        activated_jobs=counts.get(JobState.ACTIVATED.value, 0),
                        assigned_jobs=counts.get(JobState.ASSIGNED.value, 0),
                        running_jobs=sum(counts.get(s, 0) for s in _RUNNING),
                        connected_pilots=connected,
                        idle_pilots=idle,
                        workers=workers.get(q, {}),
                    )
                )
            return out

        return await self.rt.db_call(run)

    async def register_workers(self, req: factory_pb2.RegisterWorkersRequest, identity: Identity) -> None:
        """Record new workers (idempotent per worker_id)."""
        validation.validate_register_workers(req, known_queues=self.rt.queue_names)

        def run() -> None:
            with self.rt.db.write() as conn:
                wstore.register_workers(conn, list(req.workers), now=self.rt.now())

        await self.rt.db_call(run)

    async def update_workers(self, req: factory_pb2.UpdateWorkersRequest, identity: Identity) -> None:
        """Record workers' new batch states; unknown worker ids are NOT_FOUND (nothing written)."""
        validation.validate_update_workers(req)

        def run() -> None:
            with self.rt.db.write() as conn:
                wstore.update_workers(conn, list(req.updates), now=self.rt.now())

        await self.rt.db_call(run)

    async def list_workers(self, req: factory_pb2.ListWorkersRequest, identity: Identity) -> list[factory_pb2.Worker]:
        """Workers matching the filters, newest first."""
        limit = validation.validate_list_workers(req)

        def run() -> list[factory_pb2.Worker]:
            with self.rt.db.read() as conn:
                return wstore.list_workers(
                    conn, queue=req.queue, factory_id=req.factory_id, include_final=req.include_final, limit=limit
                )

        return await self.rt.db_call(run)
