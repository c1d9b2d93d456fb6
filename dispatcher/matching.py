"""Which jobs a queue and a pilot may take: queue status and resource matching, as pure functions.

The claim (``store/pilots.py``), brokerage at submit (``services/brokerage.py``) and
``ailuro job why`` (``services/explain.py``) all decide with these functions, so the explanation
of a waiting job can never disagree with the scheduler. Nothing here touches the database or
protobuf.

A pilot advertises what it has (``Hello.cores``/``memory_mb``/``disk_mb``/``tags``) and, with each
``JobRequest``, what is left; a multi-core pilot is *partitionable* like an HTCondor
partitionable slot: every job it is handed consumes its cores, memory and disk from the offer,
so one request may come back with several narrow jobs or one wide one.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, replace


class QueueStatus(enum.StrEnum):
    """A queue's operational status (PanDA's site status)."""

    ONLINE = "online"
    """Brokerage places jobs here and pilots get work."""
    OFFLINE = "offline"
    """Drained: no new jobs to pilots, brokerage skips it; jobs already running finish."""
    TEST = "test"
    """Only ``prod_source_label=test`` jobs are brokered here and handed to pilots."""
    BROKEROFF = "brokeroff"
    """Brokerage at submit skips it; pilots are still served the jobs already placed here."""


TEST_LABEL = "test"


def claim_refusal(status: QueueStatus, label: str) -> str:
    """Why a pilot of a queue in ``status`` may not be handed a job labelled ``label`` ("" if it may)."""
    if status is QueueStatus.OFFLINE:
        return "queue is offline: no new jobs are handed out"
    if status is QueueStatus.TEST and label != TEST_LABEL:
        return f"queue is in test status: only prod_source_label={TEST_LABEL} jobs, not {label!r}"
    return ""


def broker_refusal(status: QueueStatus, label: str) -> str:
    """Why brokerage at submit may not choose a queue in ``status`` for a ``label`` job ("" if it may)."""
    if status is QueueStatus.BROKEROFF:
        return "queue is brokeroff: brokerage does not place new jobs there"
    return claim_refusal(status, label)


@dataclass(frozen=True, kw_only=True)
class Needs:
    """What one job asks for (0 means "no requirement")."""

    cores: int = 1
    """Cores the payload uses (at least 1 is counted)."""
    memory_mb: int = 0
    """Memory the payload may use, MiB."""
    walltime_s: int = 0
    """Wall-clock limit, seconds."""
    disk_mb: int = 0
    """Scratch disk the payload needs, MiB."""
    tags: frozenset[str] = frozenset()
    """Features the worker must have, e.g. ``gpu`` or a CVMFS release."""


@dataclass(frozen=True, kw_only=True)
class Offer:
    """What a pilot can still give (0 means "unknown": not limited by this resource)."""

    cores: int = 0
    """Free cores."""
    memory_mb: int = 0
    """Free memory, MiB."""
    walltime_s: int = 0
    """Seconds the pilot may still run."""
    disk_mb: int = 0
    """Free scratch disk, MiB."""
    tags: frozenset[str] = frozenset()
    """Features the worker node has."""


def misfit(needs: Needs, offer: Offer) -> str:
    """Why a job with ``needs`` does not fit ``offer``, in words ("" when it fits)."""
    cores = max(1, needs.cores)
    if offer.cores and cores > offer.cores:
        return f"needs {cores} cores, the pilot has {offer.cores} free"
    if offer.memory_mb and needs.memory_mb > offer.memory_mb:
        return f"needs {needs.memory_mb} MiB memory, the pilot has {offer.memory_mb} MiB free"
    if offer.walltime_s and needs.walltime_s > offer.walltime_s:
        return f"needs {needs.walltime_s} s walltime, the pilot has {offer.walltime_s} s left"
    if offer.disk_mb and needs.disk_mb > offer.disk_mb:
        return f"needs {needs.disk_mb} MiB disk, the pilot has {offer.disk_mb} MiB free"
    missing = needs.tags - offer.tags
    if missing:
        return f"needs tag(s) {', '.join(sorted(missing))} the pilot does not have"
    return ""


def consume(offer: Offer, needs: Needs) -> Offer:
    """What is left of ``offer`` after it took a job with ``needs`` (unknown resources stay unknown).

    A known resource that runs out becomes -1, never 0, so that "nothing left" is not read as
    "unknown"; every later job then misfits on it.
    """

    if not (offer.cores or offer.memory_mb or offer.disk_mb):
        return offer  # nothing known to count down (a pilot that did not say)

    def left(have: int, used: int) -> int:
        return have if not have else (have - used if have > used else -1)

    return replace(
        offer,
        cores=left(offer.cores, max(1, needs.cores)),
        memory_mb=left(offer.memory_mb, needs.memory_mb),
        disk_mb=left(offer.disk_mb, needs.disk_mb),
    )


def exhausted(offer: Offer) -> bool:
    """Whether a known resource of ``offer`` ran out (no further job can fit)."""
    return offer.cores < 0 or offer.memory_mb < 0 or offer.disk_mb < 0


def partition(offer: Offer, jobs: Sequence[Needs], n: int) -> list[int]:
    """Indices of ``jobs`` (in the given order) one partitionable pilot takes: at most ``n``.

    First fit in order: a job that does not fit what is left is skipped (a narrower later one
    may still fit), as an HTCondor partitionable slot carves dynamic slots.
    """
    taken: list[int] = []
    for i, needs in enumerate(jobs):
        if len(taken) >= n or exhausted(offer):
            break
        if not misfit(needs, offer):
            taken.append(i)
            offer = consume(offer, needs)
    return taken


def parse_tags(text: str) -> frozenset[str]:
    """Tags from their stored form (comma-separated)."""
    return frozenset(t for t in text.split(",") if t)


def format_tags(tags: frozenset[str] | Sequence[str]) -> str:
    """The stored form of tags: sorted, comma-separated."""
    return ",".join(sorted(set(tags)))
