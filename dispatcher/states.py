"""The job state machine: PanDA's states and the one table of allowed transitions.

Pure data and functions, no I/O. The store enforces every transition it writes through
:func:`check_transition`, and makes each one a conditional update on ``(status, lease_epoch)``
so that two writers (two dispatchers, a stale pilot, the watchdog) can never both win.

Automatic retries do not pass through ``failed``: a failed attempt that will be retried moves
straight back to ``activated`` (with ``attempt_nr + 1``) and the failure is kept in the job's
history. That keeps the rule "final states never change" without exceptions.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from ailuro.errors import FailedPrecondition
from ailuro.v1 import job_pb2


class JobState(StrEnum):
    """A job state; the value is the lowercase name stored in the database and shown to users."""

    DEFINED = "defined"
    ASSIGNED = "assigned"
    ACTIVATED = "activated"
    SENT = "sent"
    STARTING = "starting"
    RUNNING = "running"
    HOLDING = "holding"
    TRANSFERRING = "transferring"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"
    CLOSED = "closed"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATES

    def to_proto(self) -> int:
        """The ``JobStatus`` enum value of this state."""
        return _TO_PROTO[self]

    @classmethod
    def from_proto(cls, value: int) -> JobState:
        """The state for a ``JobStatus`` value; ``ValueError`` for UNSPECIFIED or unknown values."""
        try:
            return _FROM_PROTO[value]
        except KeyError:
            raise ValueError(f"not a job state: {value!r}") from None


S = JobState

FINAL_STATES: frozenset[JobState] = frozenset({S.FINISHED, S.FAILED, S.CANCELLED, S.CLOSED})
QUEUED_STATES: frozenset[JobState] = frozenset({S.DEFINED, S.ASSIGNED, S.ACTIVATED})
"""States in which no pilot holds the job: a kill cancels it at once."""
ON_PILOT_STATES: frozenset[JobState] = frozenset({S.SENT, S.STARTING, S.RUNNING, S.HOLDING, S.TRANSFERRING})
"""States in which a pilot holds the job under a lease: a kill is pushed to that pilot."""
PILOT_REPORTABLE: frozenset[JobState] = frozenset({S.STARTING, S.RUNNING, S.HOLDING, S.TRANSFERRING})
"""States a pilot may report in a heartbeat."""
PILOT_FINAL_REPORTABLE: frozenset[JobState] = frozenset({S.FINISHED, S.FAILED, S.CANCELLED})
"""States a pilot may report in a final report."""

_ANY_LIVE_EXIT = {S.CANCELLED, S.CLOSED}

TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    # brokerage: straight to activated, or assigned while inputs are staged; failed if no queue fits
    S.DEFINED: frozenset({S.ASSIGNED, S.ACTIVATED, S.FAILED, *_ANY_LIVE_EXIT}),
    S.ASSIGNED: frozenset({S.ACTIVATED, S.FAILED, *_ANY_LIVE_EXIT}),
    S.ACTIVATED: frozenset({S.SENT, S.ASSIGNED, *_ANY_LIVE_EXIT}),
    # a pilot may skip reporting intermediate states (a fast job reports its final first);
    # back to activated = watchdog requeue (never started) or retry of a failed attempt
    S.SENT: frozenset({S.STARTING, S.RUNNING, S.HOLDING, S.ACTIVATED, S.FAILED, *_ANY_LIVE_EXIT}),
    S.STARTING: frozenset({S.RUNNING, S.HOLDING, S.ACTIVATED, S.FAILED, *_ANY_LIVE_EXIT}),
    S.RUNNING: frozenset({S.HOLDING, S.ACTIVATED, S.FAILED, *_ANY_LIVE_EXIT}),
    S.HOLDING: frozenset({S.TRANSFERRING, S.FINISHED, S.ACTIVATED, S.FAILED, *_ANY_LIVE_EXIT}),
    S.TRANSFERRING: frozenset({S.FINISHED, S.ACTIVATED, S.FAILED, *_ANY_LIVE_EXIT}),
    S.FINISHED: frozenset(),
    S.FAILED: frozenset(),
    S.CANCELLED: frozenset(),
    S.CLOSED: frozenset(),
}


def is_allowed(src: JobState, dst: JobState) -> bool:
    """Whether the table allows ``src -> dst``."""
    return dst in TRANSITIONS[src]


def path(src: JobState, dst: JobState) -> list[tuple[JobState, JobState]]:
    """The shortest chain of allowed transitions from ``src`` to ``dst`` (``[]`` when equal).

    A change that passes through states on its way (a pilot's "finished" for a job still
    ``sent`` goes ``sent -> holding -> finished``) records each step, and takes them from the
    table rather than from a hand-written list. ``ValueError`` if the table has no way.
    """
    if src == dst:
        return []
    came_from: dict[JobState, JobState] = {src: src}
    frontier = [src]
    while frontier and dst not in came_from:
        nxt = []
        for state in frontier:
            for to in sorted(TRANSITIONS[state], key=_ORDER.__getitem__):
                if to not in came_from:
                    came_from[to] = state
                    nxt.append(to)
        frontier = nxt
    if dst not in came_from:
        raise ValueError(f"no transition path {src.value} -> {dst.value}")
    steps = []
    at = dst
    while at != src:
        steps.append((came_from[at], at))
        at = came_from[at]
    return steps[::-1]


def check_transition(panda_id: int, src: JobState, dst: JobState) -> None:
    """Raise ``FailedPrecondition`` (gRPC FAILED_PRECONDITION) unless ``src -> dst`` is allowed."""
    if not is_allowed(src, dst):
        if src.is_final:
            raise FailedPrecondition(f"job {panda_id} is {src.value}, a final state; it cannot become {dst.value}")
        raise FailedPrecondition(f"job {panda_id}: transition {src.value} -> {dst.value} is not allowed")


_ORDER: dict[JobState, int] = {s: i for i, s in enumerate(JobState)}
_TO_PROTO: dict[JobState, int] = {s: job_pb2.JobStatus.Value(f"JOB_STATUS_{s.name}") for s in JobState}
_FROM_PROTO: dict[int, JobState] = {v: k for k, v in _TO_PROTO.items()}


def status_count_list(counts: Mapping[str, int]) -> list[job_pb2.JobStatusCount]:
    """Counts by state name (``{"running": 3}``) as ``JobStatusCount`` entries in ``JobStatus``
    order, zero counts left out: counts on the wire use the enum, as the filters do."""
    order = sorted(((JobState(name), n) for name, n in counts.items() if n), key=lambda item: item[0].to_proto())
    return [job_pb2.JobStatusCount(status=state.to_proto(), count=n) for state, n in order]  # type: ignore[arg-type]
