"""Why a job waits (``ailuro job why``), as a pure function of facts the service reads.

Every verdict comes from the rules the scheduler itself applies: :func:`queue_refusal` is what
brokerage at submit uses, :func:`dispatcher.matching.claim_refusal` and
:func:`dispatcher.matching.misfit` what the claim uses, and the place in the claim order is
computed with :func:`dispatcher.shares.order` over the queue's waiting jobs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ailuro.queues import QueueConfig
from dispatcher.matching import Needs, Offer, QueueStatus, broker_refusal, claim_refusal, misfit
from dispatcher.states import JobState


def queue_refusal(q: QueueConfig, status: QueueStatus, *, vo: str, label: str, needs: Needs) -> str:
    """Why brokerage would not choose ``q`` for a job ("" if it may)."""
    if not q.enabled:
        return "queue is disabled in the configuration"
    if not q.serves(vo=vo, label=label):
        return f"does not serve vo {vo!r} with label {label!r}"
    why = broker_refusal(status, label)
    if why:
        return why
    if q.pilot_cores:
        return misfit(needs, Offer(cores=q.pilot_cores, memory_mb=q.pilot_memory_mb))
    return ""


@dataclass(frozen=True, kw_only=True)
class JobFacts:
    """The job being explained."""

    panda_id: int
    state: JobState
    vo: str
    label: str
    site: str
    needs: Needs
    leaf_path: str
    """The share leaf it is charged to (``vo/group/user``)."""
    leaf_priority: float
    """That leaf's effective priority (usage fraction / target)."""


@dataclass(frozen=True, kw_only=True)
class QueueFacts:
    """One queue as the job would meet it."""

    config: QueueConfig
    status: QueueStatus
    offers: tuple[Offer, ...]
    """What its connected pilots advertised (empty: no pilot connected)."""


@dataclass(frozen=True, kw_only=True)
class Verdict:
    """Whether the job could run on one queue now, and why not."""

    queue: str
    can_run: bool
    reasons: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class Explanation:
    """The answer of ``job why``."""

    verdicts: tuple[Verdict, ...]
    advice: tuple[str, ...]
    summary: str


def _pilot_reason(needs: Needs, offers: Sequence[Offer]) -> str:
    if not offers:
        return "no pilot is connected"
    misfits = [misfit(needs, o) for o in offers]
    if all(misfits):
        return f"no connected pilot fits ({len(offers)} connected; e.g. {misfits[0]})"
    return ""


def verdict(job: JobFacts, q: QueueFacts) -> Verdict:
    """The job against one queue: on its own queue the claim's rules, elsewhere brokerage's."""
    reasons: list[str] = []
    if q.config.name == job.site:
        why = claim_refusal(q.status, job.label)
        if why:
            reasons.append(why)
        if job.state in (JobState.DEFINED, JobState.ASSIGNED):
            reasons.append(f"inputs are not staged yet (job is {job.state.value})")
    else:
        why = queue_refusal(q.config, q.status, vo=job.vo, label=job.label, needs=job.needs)
        if why:
            reasons.append(why)
    pilots = _pilot_reason(job.needs, q.offers)
    if pilots:
        reasons.append(pilots)
    return Verdict(queue=q.config.name, can_run=not reasons, reasons=tuple(reasons))


def explain(
    job: JobFacts, queues: Sequence[QueueFacts], *, position: int, waiting: int, deeper_than: int = 0
) -> Explanation:
    """Verdicts per queue, what would change them, and one summary line.

    ``position`` is the job's place in its queue's claim order (1: next; 0: not waiting there, or
    not ranked) among ``waiting`` activated jobs; ``deeper_than`` nonzero: more than that many
    wait in its queue and they were not ranked.
    """
    verdicts = tuple(verdict(job, q) for q in queues)
    own = next((v for v in verdicts if v.queue == job.site), None)
    advice: list[str] = []
    if job.state not in (JobState.DEFINED, JobState.ASSIGNED, JobState.ACTIVATED):
        summary = f"the job is {job.state.value}: it is not waiting"
        return Explanation(verdicts=verdicts, advice=(), summary=summary)
    for reason in own.reasons if own else ():
        if "offline" in reason or "test status" in reason:
            advice.append(f"an admin sets {job.site} online: ailuro queue set-status {job.site} online --reason ...")
        elif reason == "no pilot is connected":
            advice.append(f"pilots start for {job.site} (ailuro factory, or ailuro pilot --queue {job.site})")
        elif reason.startswith("no connected pilot fits"):
            advice.append(
                f"pilots with more resources for {job.site} (queue pilot_cores/pilot_memory_mb), or a smaller job"
            )
        elif reason.startswith("inputs are not staged"):
            advice.append("the DDM agent finishes the transfers/staging of its inputs (ailuro ddm requests)")
    elsewhere = [v.queue for v in verdicts if v.can_run and v.queue != job.site]
    if own is not None and not own.can_run and elsewhere:
        advice.append(f"resubmitting it to {', '.join(elsewhere)} (it could run there now)")
    if job.leaf_priority > 1:
        advice.append(
            f"its share {job.leaf_path} is above target (priority {job.leaf_priority:.2f}): its usage decays, "
            "or an admin raises the weight (ailuro shares set PATH WEIGHT)"
        )
    if position > 1:
        advice.append(f"{position - 1} job(s) come before it in the claim order; a higher priority moves it up")
    if own is not None and not own.can_run:
        summary = f"waits on {job.site}: {'; '.join(own.reasons)}"
    elif position:
        summary = f"waits on {job.site} for a free pilot: number {position} of {waiting} in the claim order"
    elif deeper_than and job.state is JobState.ACTIVATED:
        summary = f"waits on {job.site} for a free pilot among more than {deeper_than:,} waiting jobs (not ranked)"
    else:
        summary = f"waits on {job.site}"
    return Explanation(verdicts=verdicts, advice=tuple(advice), summary=summary)
