"""Brokerage: choose a queue for jobs submitted without ``computing_site``.

Among enabled queues serving the job's VO and label whose status allows brokerage (not
offline or brokeroff; test only for test jobs) and whose pilots are big enough for the job
(``pilot_cores``/``pilot_memory_mb`` when configured), the one with the lowest load wins, where
load = jobs activated/sent/starting/running there divided by ``max_running`` (the raw count for
unlimited queues), counting the jobs of the same batch placed so far; ties go to the first
queue in configuration order. The reason is recorded with the job (``ailuro job why``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ailuro.errors import InvalidArgument
from ailuro.queues import QueueConfig
from ailuro.v1 import job_pb2
from dispatcher.explain import queue_refusal
from dispatcher.matching import Needs, QueueStatus
from dispatcher.states import JobState


def needs_of_spec(job: job_pb2.Job) -> Needs:
    """A submitted job's resources."""
    return Needs(
        cores=job.cores,
        memory_mb=job.memory_mb,
        walltime_s=job.max_walltime_s,
        disk_mb=job.disk_mb,
        tags=frozenset(job.tags),
    )


LOAD_STATES = (JobState.ACTIVATED, JobState.SENT, JobState.STARTING, JobState.RUNNING)


class Broker:
    """Places jobs of one submission, updating loads as it goes."""

    def __init__(
        self,
        queues: Sequence[QueueConfig],
        counts: Mapping[str, Mapping[str, int]],
        statuses: Mapping[str, QueueStatus] | None = None,
    ) -> None:
        self._queues = list(queues)
        self._status = dict(statuses or {})
        self._by_name = {q.name: q for q in queues}
        self._load = {q.name: sum(counts.get(q.name, {}).get(s.value, 0) for s in LOAD_STATES) for q in queues}

    def _ratio(self, q: QueueConfig) -> float:
        load = self._load[q.name]
        return load / q.max_running if q.max_running else float(load)

    def refusal(self, q: QueueConfig, *, vo: str, label: str, needs: Needs) -> str:
        """Why brokerage would not choose ``q`` for such a job ("" if it may); ``job why`` uses the same rule."""
        return queue_refusal(q, self._status.get(q.name, QueueStatus.ONLINE), vo=vo, label=label, needs=needs)

    def place(
        self,
        *,
        site: str,
        vo: str,
        label: str,
        where: str,
        holding: frozenset[str] = frozenset(),
        needs: Needs | None = None,
    ) -> tuple[str, str]:
        """``(computing_site, reason)`` for one job; ``InvalidArgument`` naming ``where`` fields.

        ``holding`` names queues whose storage already holds the job's inputs: when one of them
        serves the job, the least loaded of those wins (no transfer or tape staging needed).
        """
        if site:
            q = self._by_name[site]
            if not q.serves(vo=vo, label=label):
                why = "is disabled" if not q.enabled else f"does not serve vo {vo!r} with label {label!r}"
                raise InvalidArgument(f"queue {site!r} {why}", field=f"{where}.computing_site")
            self._load[site] += 1
            status = self._status.get(site, QueueStatus.ONLINE)
            note = "" if status is QueueStatus.ONLINE else f" (queue is {status.value}: see ailuro job why)"
            return site, "computing_site chosen by the submitter" + note
        needs = needs or Needs()
        why = {q.name: self.refusal(q, vo=vo, label=label, needs=needs) for q in self._queues}
        candidates = [q for q in self._queues if not why[q.name]]
        if not candidates:
            served = [q for q in self._queues if q.serves(vo=vo, label=label)]
            if not served:
                raise InvalidArgument(
                    f"no enabled queue serves vo {vo!r} with prod_source_label {label!r}", field=f"{where}.vo"
                )
            details = "; ".join(f"{q.name}: {why[q.name]}" for q in served)
            raise InvalidArgument(f"no queue can take this job now ({details})", field=f"{where}.computing_site")
        with_data = [q for q in candidates if q.name in holding]
        pool = with_data or candidates
        best = min(pool, key=self._ratio)
        load = self._load[best.name]
        cap = f"/{best.max_running} max_running" if best.max_running else " (no limit)"
        which = f"{len(pool)} queue(s) holding the inputs" if with_data else f"{len(pool)} queue(s)"
        reason = f"lowest load among {which} serving vo={vo} label={label}: {best.name} had {load}{cap} active jobs"
        self._load[best.name] += 1
        return best.name, reason
