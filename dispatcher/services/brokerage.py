"""Brokerage: choose a queue for jobs submitted without ``computing_site``.

Among enabled queues serving the job's VO and label, the one with the lowest load wins, where
load = jobs activated/sent/starting/running there divided by ``max_running`` (the raw count for
unlimited queues), counting the jobs of the same batch placed so far; ties go to the first
queue in configuration order. The reason is recorded with the job (``ailuro job why``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ailuro.errors import InvalidArgument
from ailuro.queues import QueueConfig
from dispatcher.states import JobState

LOAD_STATES = (JobState.ACTIVATED, JobState.SENT, JobState.STARTING, JobState.RUNNING)


class Broker:
    """Places jobs of one submission, updating loads as it goes."""

    def __init__(self, queues: Sequence[QueueConfig], counts: Mapping[str, Mapping[str, int]]) -> None:
        self._queues = list(queues)
        self._by_name = {q.name: q for q in queues}
        self._load = {q.name: sum(counts.get(q.name, {}).get(s.value, 0) for s in LOAD_STATES) for q in queues}

    def _ratio(self, q: QueueConfig) -> float:
        load = self._load[q.name]
        return load / q.max_running if q.max_running else float(load)

    def place(
        self, *, site: str, vo: str, label: str, where: str, holding: frozenset[str] = frozenset()
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
            return site, "computing_site chosen by the submitter"
        candidates = [q for q in self._queues if q.serves(vo=vo, label=label)]
        if not candidates:
            raise InvalidArgument(
                f"no enabled queue serves vo {vo!r} with prod_source_label {label!r}", field=f"{where}.vo"
            )
        with_data = [q for q in candidates if q.name in holding]
        pool = with_data or candidates
        best = min(pool, key=self._ratio)
        load = self._load[best.name]
        cap = f"/{best.max_running} max_running" if best.max_running else " (no limit)"
        which = f"{len(pool)} queue(s) holding the inputs" if with_data else f"{len(pool)} queue(s)"
        reason = f"lowest load among {which} serving vo={vo} label={label}: {best.name} had {load}{cap} active jobs"
        self._load[best.name] += 1
        return best.name, reason
