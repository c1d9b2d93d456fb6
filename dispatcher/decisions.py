"""The dispatcher's lifecycle decisions as pure functions, beside the state table of :mod:`states`.

What a pilot's final report does to its job, which heartbeats renew a lease, what a kill does in
each state, when an attempt is retried and which jobs a user may retry, what the watchdog does
with a lapsed lease, and who may present a pilot id: each is a function of frozen dataclasses,
returning a frozen dataclass. No protobuf, no SQL, no clock: the store reads rows into these
types, calls the decision and writes what it says (through
:func:`dispatcher.store.transitions.apply_changes`, the one writer of a job's state); the wire
types stay in ``api/`` and the conversions. So every branch has a unit test that needs no
database (``tests/unit/test_decisions.py``).

Share ordering and resource matching are decisions too; they live with brokerage.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from dispatcher.states import FINAL_STATES, ON_PILOT_STATES, QUEUED_STATES, JobState, is_allowed, path

S = JobState


class Answer(Enum):
    """What a pilot is told about one report (the store maps it to the wire's ``AckResult``)."""

    OK = "ok"
    """Applied (or already applied: a replay)."""
    STALE = "stale"
    """The lease it names is over (another epoch, or the job left the pilot): drop the job."""
    NOT_FOUND = "not_found"
    """No such job."""
    REJECTED = "rejected"
    """Refused: the report is not this pilot's to make."""


class ErrorsKept(Enum):
    """Which errors a final outcome records on the job."""

    REPORTED = "reported"
    """The errors the pilot reported (none: the job's errors are cleared)."""
    KILL = "kill"
    """The kill's error: component dispatcher, code 1144 (killed by user), the kill's reason."""


@dataclass(frozen=True, kw_only=True)
class Lease:
    """What the decisions need of a job row: its state, its lease, its attempts and any kill."""

    panda_id: int
    status: JobState
    lease_epoch: int
    pilot_id: str = ""
    """The pilot holding (or last holding) the lease."""
    attempt_nr: int = 1
    max_attempt: int = 1
    started: bool = False
    """Whether the job has a start time (a pilot reported it running)."""
    kill_requested: bool = False
    kill_reason: str = ""
    kill_delivered: bool = False
    """Whether the kill command was handed to the pilot's stream (or its UpdateJob answer)."""
    last_final_epoch: int = 0
    """Lease epoch of the last final report applied (0: none)."""
    last_final_status: str = ""
    """Status of that report (a replay of it is answered OK again, nothing changes)."""


@dataclass(frozen=True, kw_only=True)
class Beat:
    """A heartbeat as the decision sees it: which lease, which status, from which pilot session."""

    panda_id: int
    epoch: int
    status: JobState
    pilot_id: str
    """The pilot of the session it came on (never a field the sender chose on a stream)."""


@dataclass(frozen=True, kw_only=True)
class BeatVerdict:
    """The answer to a heartbeat and, when OK, what to write: the lease is renewed."""

    answer: Answer
    message: str = ""
    to_status: JobState | None = None
    """The job's state after it (unchanged when the report would go backwards); None unless OK."""
    starts_now: bool = False
    """Record the start time now (the job reached ``running`` without one)."""


def _lease_problem(
    lease: Lease | None, panda_id: int, epoch: int, pilot_id: str, *, holders_heir: bool = False
) -> tuple[Answer, str] | None:
    """Why a report about ``(panda_id, epoch)`` from ``pilot_id`` cannot touch the lease (None: it can).

    The epoch and state are looked at before the pilot: a pilot whose lease moved on (the job was
    requeued and claimed again, so its epoch grew) is told STALE and drops the job, as it always
    was; a report naming the live lease from another pilot is REJECTED, without saying who holds
    it — unless ``holders_heir``: the reporter's principal owns the holding pilot id too.
    """
    if lease is None:
        return Answer.NOT_FOUND, f"no job {panda_id}"
    if lease.lease_epoch != epoch or lease.status not in ON_PILOT_STATES:
        return Answer.STALE, f"job is {lease.status.value} with lease epoch {lease.lease_epoch}"
    if lease.pilot_id != pilot_id and not holders_heir:
        return Answer.REJECTED, f"job {panda_id} is not leased to pilot {pilot_id}"
    return None


def judge_heartbeat(lease: Lease | None, beat: Beat) -> BeatVerdict:
    """Renew the lease of a heartbeat from the session holding it, and move the state forward.

    A status the table does not allow from the current one (``running`` after ``holding``) keeps
    the state and says so; the lease is still renewed: the pilot is alive. On PostgreSQL the
    common case (status unchanged) is written by one UPDATE whose WHERE clause is this rule
    (epoch, state on a pilot, same pilot); everything else comes here.
    """
    problem = _lease_problem(lease, beat.panda_id, beat.epoch, beat.pilot_id)
    if problem is not None:
        return BeatVerdict(answer=problem[0], message=problem[1])
    assert lease is not None
    if beat.status == lease.status:
        return BeatVerdict(answer=Answer.OK, to_status=lease.status)
    if not is_allowed(lease.status, beat.status):
        message = f"kept {lease.status.value}: {beat.status.value} would go backwards"
        return BeatVerdict(answer=Answer.OK, message=message, to_status=lease.status)
    starts = beat.status == S.RUNNING and not lease.started
    return BeatVerdict(answer=Answer.OK, to_status=beat.status, starts_now=starts)


# --- retry ------------------------------------------------------------------------------------


def should_retry(*, attempt_nr: int, max_attempt: int, retryable: bool) -> bool:
    """Whether a failed attempt goes back to ``activated`` for attempt ``attempt_nr + 1``."""
    return retryable and attempt_nr < max_attempt


MANUAL_RETRY_STATES: frozenset[JobState] = frozenset({S.FAILED, S.CANCELLED, S.CLOSED})
"""Final states a user may retry (as a new job); a finished job is done, a live one still runs."""


def manual_retry_problem(status: JobState) -> str:
    """Why a job in ``status`` cannot be retried by a user ("" when it can)."""
    if status in MANUAL_RETRY_STATES:
        return ""
    return f"is {status.value}; only failed, cancelled or closed jobs can be retried"


@dataclass(frozen=True, kw_only=True)
class LostOutcome:
    """What becomes of a started attempt whose pilot stopped reporting (lease expired, worker gone)."""

    to_status: JobState
    next_attempt: int | None
    """The attempt number it is retried as; None: it failed for good (record the end time)."""
    reason: str


def lost_attempt(lease: Lease, diag: str, code: int) -> LostOutcome:
    """A lost attempt fails with error ``code`` and follows the retry rules (it is always retryable)."""
    attempt = lease.attempt_nr
    if should_retry(attempt_nr=attempt, max_attempt=lease.max_attempt, retryable=True):
        reason = f"attempt {attempt} failed ({diag}, error {code}); retrying as attempt {attempt + 1}"
        return LostOutcome(to_status=S.ACTIVATED, next_attempt=attempt + 1, reason=reason)
    reason = f"failed: {diag} (error {code}); attempt {attempt} of {lease.max_attempt}"
    return LostOutcome(to_status=S.FAILED, next_attempt=None, reason=reason)


class Lapse(Enum):
    """What becomes of a job whose pilot can no longer renew its lease (expired, not started, gone)."""

    KILLED = "killed"
    """A kill was requested: cancelled with the kill's error (its pilot will not report any more)."""
    REQUEUED = "requeued"
    """It was never started (``sent``): back to ``activated``, no attempt spent (error 101)."""
    LOST = "lost"
    """A started attempt: failed with error 100 (lost heartbeat), then :func:`lost_attempt`."""


def judge_lapse(lease: Lease) -> Lapse:
    """The watchdog's decision for a job whose lease lapsed or whose pilot is known gone."""
    if lease.kill_requested:
        return Lapse.KILLED
    if lease.status == S.SENT:
        return Lapse.REQUEUED
    return Lapse.LOST


# --- final reports ----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class FinalReport:
    """A pilot's final report of one attempt, as the decision sees it."""

    panda_id: int
    epoch: int
    status: JobState
    """finished, failed or cancelled (validated at the edge)."""
    pilot_id: str
    """The pilot of the session it came on (for UpdateJob: the pilot id its caller owns)."""
    retryable: bool = False
    walltime_s: float = 0.0
    error_summary: str = ""
    """The reported errors as one bounded line (for the job's history)."""
    holders_heir: bool = False
    """The pilot id holding the lease belongs to the reporter's principal as well: a pilot handing
    in the spooled final of an earlier pilot of its own (same node, shared spool) is let through."""
    verify_on: str = ""
    """A DDM job's output SE: "finished" then waits in ``transferring`` until the DDM agent has
    verified the outputs there (and finishes the job); empty: the job finishes at once."""


@dataclass(frozen=True, kw_only=True)
class FinalOutcome:
    """What an accepted final report does to the job."""

    to_status: JobState
    steps: tuple[tuple[JobState, JobState, str], ...]
    """The transitions recorded in the job's history, in order."""
    errors: ErrorsKept = ErrorsKept.REPORTED
    next_attempt: int | None = None
    """Retried: the job goes back to ``activated`` as this attempt."""
    ends: bool = True
    """Record the end time now (every outcome but a retry)."""
    start_time: float | None = None
    """Backdated start of a job that ended before its pilot reported it running (None: keep)."""
    outputs: bool = False
    """The reported outputs are to be registered (the job finished; DDM jobs verify them first)."""


@dataclass(frozen=True, kw_only=True)
class FinalVerdict:
    """The answer to a final report and, when it is applied, its outcome."""

    answer: Answer
    message: str = ""
    outcome: FinalOutcome | None = None
    """None: nothing is written (refused, stale, or a replay)."""


KILL_WINS = "the kill delivered to the pilot wins over its later 'finished'"


def judge_final(
    lease: Lease | None, report: FinalReport, *, now: float, earlier: tuple[int, JobState] | None = None
) -> FinalVerdict:
    """Judge a final report: ``earlier`` is the ``(epoch, status)`` of one for the same job earlier in the batch.

    A replay of the last applied report is OK again (the pilot missed the ack) and changes
    nothing, whoever sends it; anything else must name the live lease and come from its pilot
    (or, for a spooled final, from another pilot of the same principal).
    """
    if lease is None:
        return FinalVerdict(answer=Answer.NOT_FOUND, message=f"no job {report.panda_id}")
    if lease.last_final_epoch == report.epoch and lease.last_final_status == report.status.value:
        return FinalVerdict(answer=Answer.OK, message="already recorded")
    if earlier is not None:  # the same job twice in one batch: a replay, or a contradiction
        if earlier == (report.epoch, report.status):
            return FinalVerdict(answer=Answer.OK, message="already recorded")
        return FinalVerdict(answer=Answer.STALE, message="another final report came first")
    problem = _lease_problem(lease, report.panda_id, report.epoch, report.pilot_id, holders_heir=report.holders_heir)
    if problem is not None:
        return FinalVerdict(answer=problem[0], message=problem[1])
    outcome = final_outcome(lease, report, now=now)
    message = KILL_WINS if outcome.errors is ErrorsKept.KILL and report.status == S.FINISHED else ""
    return FinalVerdict(answer=Answer.OK, message=message, outcome=outcome)


def final_outcome(lease: Lease, report: FinalReport, *, now: float) -> FinalOutcome:
    """The outcome of an accepted final report (the lease and pilot are checked already).

    - finished: finished (through ``holding``, the steps taken from the transition table; a DDM
      job with ``verify_on`` stops in ``transferring`` until its outputs are verified) — unless a
      kill was delivered to the pilot first: then the kill wins, the job is cancelled with the
      kill's error;
    - cancelled, or anything after a kill request: cancelled (the pilot's errors if it gave any,
      else the kill's);
    - failed: retried as the next attempt when retryable and attempts remain, else failed.
    """
    state = lease.status
    start = now - report.walltime_s if not lease.started and report.walltime_s > 0 else None
    summary = report.error_summary or "no error given"
    if report.status == S.FINISHED and not (lease.kill_requested and lease.kill_delivered):
        target = S.TRANSFERRING if report.verify_on else S.FINISHED
        step_reason = {
            S.HOLDING: "payload done; registering outputs",
            S.TRANSFERRING: f"final report: outputs stored; verifying them on {report.verify_on}",
            S.FINISHED: "final report: finished",
        }
        steps = tuple((a, b, step_reason[b]) for a, b in path(state, target))
        return FinalOutcome(to_status=target, steps=steps, start_time=start, outputs=True, ends=not report.verify_on)
    if report.status == S.FINISHED:  # finished after a delivered kill
        why = f"final report: finished, after the kill was delivered; cancelled ({lease.kill_reason})"
        return FinalOutcome(
            to_status=S.CANCELLED, steps=((state, S.CANCELLED, why),), errors=ErrorsKept.KILL, start_time=start
        )
    if report.status == S.CANCELLED or lease.kill_requested:
        why = lease.kill_reason or "cancelled by the pilot"
        kept = ErrorsKept.KILL if lease.kill_requested and not report.error_summary else ErrorsKept.REPORTED
        steps = ((state, S.CANCELLED, f"final report: cancelled ({why})"),)
        return FinalOutcome(to_status=S.CANCELLED, steps=steps, errors=kept, start_time=start)
    attempt = lease.attempt_nr
    if should_retry(attempt_nr=attempt, max_attempt=lease.max_attempt, retryable=report.retryable):
        reason = f"attempt {attempt} failed ({summary}); retrying as attempt {attempt + 1}"
        return FinalOutcome(
            to_status=S.ACTIVATED,
            steps=((state, S.ACTIVATED, reason),),
            next_attempt=attempt + 1,
            ends=False,
            start_time=start,
        )
    why = "not retryable" if not report.retryable else f"attempt {attempt} of {lease.max_attempt}"
    reason = f"final report: failed ({summary}; {why})"
    return FinalOutcome(to_status=S.FAILED, steps=((state, S.FAILED, reason),), start_time=start)


# --- kill -------------------------------------------------------------------------------------


class KillAction(Enum):
    """What a kill does to a job."""

    NONE = "none"
    """Already final: nothing."""
    CANCEL = "cancel"
    """Queued (no pilot holds it): cancelled at once with the kill's error."""
    SIGNAL = "signal"
    """On a pilot: flagged, and a kill command goes to that pilot; its final report (or the
    watchdog, if the pilot is gone) ends the job cancelled."""


@dataclass(frozen=True, kw_only=True)
class KillDecision:
    """What a kill request does to one job, and what the caller is told."""

    action: KillAction
    accepted: bool
    status: JobState
    """The job's state once the kill is written (what KillResult reports)."""
    message: str
    pilot_id: str = ""
    """SIGNAL: the pilot the command goes to."""


def kill_diag(who: str, reason: str) -> str:
    """The kill's reason as recorded on the job and sent to the pilot."""
    return f"killed by {who}" + (f": {reason}" if reason else "")


def decide_kill(status: JobState, pilot_id: str) -> KillDecision:
    """A kill of a job in ``status`` held (when on a pilot) by ``pilot_id``."""
    if status in FINAL_STATES:
        return KillDecision(action=KillAction.NONE, accepted=False, status=status, message=f"already {status.value}")
    if status in QUEUED_STATES:
        return KillDecision(action=KillAction.CANCEL, accepted=True, status=S.CANCELLED, message="cancelled")
    return KillDecision(
        action=KillAction.SIGNAL,
        accepted=True,
        status=status,
        message=f"kill command sent to pilot {pilot_id}",
        pilot_id=pilot_id,
    )


# --- pilot ids and their principals --------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class PilotClaim:
    """What is known about a pilot id when a caller presents it (Hello, GetJob)."""

    principal: str
    """The principal it is bound to ("" : bound to none yet, e.g. a row older than the binding)."""
    live: bool
    """A stream of it is open (on any dispatcher) and was refreshed recently."""
    holds_leases: bool
    """Jobs are leased to it now."""


@dataclass(frozen=True, kw_only=True)
class PilotVerdict:
    """Whether a caller may act as a pilot id, and whether that binds the id to it anew."""

    allowed: bool
    rebind: bool = False
    """The id passes to the caller (it was unbound, or abandoned by another principal)."""
    message: str = ""


def judge_pilot_claim(known: PilotClaim | None, principal: str, pilot_id: str) -> PilotVerdict:
    """May ``principal`` act as ``pilot_id``?

    A pilot id belongs to the principal that first presented it. The same principal may come
    back at any time (a reconnect after a drop takes the session over). Another principal is
    refused while the id is live or holds leases — otherwise it could take the live pilot's
    stream, or report on its jobs; an id that is neither (its pilot ended) may pass to it.
    """
    if known is None or not known.principal:
        return PilotVerdict(allowed=True, rebind=True)
    if known.principal == principal:
        return PilotVerdict(allowed=True)
    if known.live or known.holds_leases:
        what = "is connected" if known.live else "holds leased jobs"
        return PilotVerdict(allowed=False, message=f"pilot id {pilot_id!r} belongs to another principal and {what}")
    return PilotVerdict(allowed=True, rebind=True)
