"""What the pilot factory decides, as pure functions: how many pilots a queue gets this cycle
(from the dispatcher's counts and the queue's limits) and the size options of its pilots.

No I/O and no batch system here, so the arithmetic is tested on its own
(``tests/unit/test_factory_arithmetic.py``); :mod:`backends.factory` does the calls.
"""

from __future__ import annotations

from dataclasses import dataclass

from ailuro.queues import FactoryLimits, QueueConfig
from ailuro.v1 import factory_pb2
from backends.base import QUEUED_WORKER_STATES, WorkerState


def compute_new_pilots(*, activated: int, idle_pilots: int, queued: int, running: int, limits: FactoryLimits) -> int:
    """How many pilots to submit for one queue in this cycle (never negative).

    ``min(activated - idle_pilots, max_queued - queued, max_total - (queued + running),
    max_per_cycle)``, and zero whenever there is no activated job: a pilot for an empty queue
    would only wait and exit. ``idle_pilots`` counts pilots that will take a job without a new
    submission (connected with no job, or still waiting in the batch system).
    """
    if activated <= 0:
        return 0
    n = min(
        activated - idle_pilots,
        int(limits.max_queued) - queued,
        int(limits.max_total) - (queued + running),
        int(limits.max_per_cycle),
    )
    return max(0, n)


@dataclass(frozen=True, kw_only=True)
class QueueCounts:
    """The inputs of :func:`compute_new_pilots` for one queue, as read from the dispatcher."""

    activated: int
    idle_pilots: int
    queued: int
    running: int

    @classmethod
    def from_stats(cls, stats: factory_pb2.QueueStats) -> QueueCounts:
        """Derive the counts from ``GetQueueStats``.

        Workers waiting in the batch system (submitted, idle, or in a state the backend does
        not know) are queued, and each is a pilot that will take a job (held ones are not: they
        run nothing, and the factory removes them); workers the batch system runs but whose pilot
        has not connected yet are on their way too. Both count as idle, so a
        slow-starting pilot does not make the factory submit another one for the same job.
        """
        workers = dict(stats.workers)
        queued_names = {s.value for s in QUEUED_WORKER_STATES} | {WorkerState.UNKNOWN.value}
        queued = sum(v for k, v in workers.items() if k in queued_names)
        running = workers.get(WorkerState.RUNNING.value, 0)
        starting = max(0, running - stats.connected_pilots)
        return cls(
            activated=int(stats.activated_jobs),
            idle_pilots=int(stats.idle_pilots) + queued + starting,
            queued=queued,
            running=running,
        )


def pilot_size_args(queue: QueueConfig) -> tuple[str, ...]:
    """Pilot options for a queue configured with multi-core pilots: the pilot offers exactly what
    the batch system was asked for (on a shared node it would otherwise see the whole host)."""
    args: tuple[str, ...] = ()
    if queue.pilot_cores:
        args += (f"--cores={queue.pilot_cores}",)
    if queue.pilot_memory_mb:
        args += (f"--memory-mb={queue.pilot_memory_mb}",)
    return args
