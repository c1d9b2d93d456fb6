"""Every branch of dispatcher/decisions.py, with expectations worked out by hand (no database)."""

from __future__ import annotations

import dataclasses

import pytest

from dispatcher import decisions as d
from dispatcher.states import JobState

S = JobState
A = d.Answer

RUNNING = d.Lease(
    panda_id=7,
    status=S.RUNNING,
    lease_epoch=3,
    pilot_id="p1",
    attempt_nr=1,
    max_attempt=3,
    started=True,
)


def lease(**kw: object) -> d.Lease:
    return dataclasses.replace(RUNNING, **kw)  # type: ignore[arg-type]


def beat(**kw: object) -> d.Beat:
    values: dict[str, object] = {"panda_id": 7, "epoch": 3, "status": S.RUNNING, "pilot_id": "p1", **kw}
    return d.Beat(**values)  # type: ignore[arg-type]


def report(**kw: object) -> d.FinalReport:
    values: dict[str, object] = {"panda_id": 7, "epoch": 3, "status": S.FINISHED, "pilot_id": "p1", **kw}
    return d.FinalReport(**values)  # type: ignore[arg-type]


# --- heartbeats -------------------------------------------------------------------------------


def test_heartbeat_for_an_unknown_job() -> None:
    assert d.judge_heartbeat(None, beat()) == d.BeatVerdict(answer=A.NOT_FOUND, message="no job 7")


@pytest.mark.parametrize(
    ("held", "epoch"),
    [(lease(), 2), (lease(), 4), (lease(status=S.FINISHED), 3), (lease(status=S.ACTIVATED), 3)],
)
def test_heartbeat_for_another_lease_is_stale(held: d.Lease, epoch: int) -> None:
    v = d.judge_heartbeat(held, beat(epoch=epoch))
    assert v == d.BeatVerdict(answer=A.STALE, message=f"job is {held.status.value} with lease epoch 3")


def test_heartbeat_naming_the_live_lease_from_another_pilot_is_rejected() -> None:
    v = d.judge_heartbeat(lease(), beat(pilot_id="stranger"))
    assert v == d.BeatVerdict(answer=A.REJECTED, message="job 7 is not leased to pilot stranger")
    assert v.to_status is None  # nothing renewed


def test_a_stale_epoch_is_stale_even_from_another_pilot() -> None:
    # a pilot whose job was requeued and claimed again (epoch 4, pilot p2) is told to drop it
    assert d.judge_heartbeat(lease(lease_epoch=4, pilot_id="p2"), beat()).answer is A.STALE


def test_heartbeat_with_the_same_status_renews() -> None:
    assert d.judge_heartbeat(lease(), beat()) == d.BeatVerdict(answer=A.OK, to_status=S.RUNNING)


def test_heartbeat_moving_forward() -> None:
    v = d.judge_heartbeat(lease(status=S.SENT, started=False), beat(status=S.STARTING))
    assert v == d.BeatVerdict(answer=A.OK, to_status=S.STARTING, starts_now=False)
    v = d.judge_heartbeat(lease(status=S.STARTING, started=False), beat(status=S.RUNNING))
    assert v == d.BeatVerdict(answer=A.OK, to_status=S.RUNNING, starts_now=True)


def test_running_again_keeps_the_first_start() -> None:
    v = d.judge_heartbeat(lease(status=S.STARTING, started=True), beat(status=S.RUNNING))
    assert v == d.BeatVerdict(answer=A.OK, to_status=S.RUNNING, starts_now=False)


def test_heartbeat_going_backwards_keeps_the_state_but_renews() -> None:
    v = d.judge_heartbeat(lease(status=S.HOLDING), beat(status=S.RUNNING))
    assert v == d.BeatVerdict(answer=A.OK, message="kept holding: running would go backwards", to_status=S.HOLDING)


# --- retry ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "problem"),
    [
        (S.FAILED, ""),
        (S.CANCELLED, ""),
        (S.CLOSED, ""),
        (S.FINISHED, "is finished; only failed, cancelled or closed jobs can be retried"),
        (S.RUNNING, "is running; only failed, cancelled or closed jobs can be retried"),
        (S.ACTIVATED, "is activated; only failed, cancelled or closed jobs can be retried"),
    ],
)
def test_manual_retry(status: JobState, problem: str) -> None:
    assert d.manual_retry_problem(status) == problem


def test_lost_attempt_is_retried_while_attempts_remain() -> None:
    out = d.lost_attempt(lease(attempt_nr=2, max_attempt=3), "lost heartbeat: pilot p1 stopped reporting", 100)
    assert out == d.LostOutcome(
        to_status=S.ACTIVATED,
        next_attempt=3,
        reason="attempt 2 failed (lost heartbeat: pilot p1 stopped reporting, error 100); retrying as attempt 3",
    )


def test_lost_last_attempt_fails() -> None:
    out = d.lost_attempt(lease(attempt_nr=3, max_attempt=3), "gone", 100)
    assert out == d.LostOutcome(
        to_status=S.FAILED, next_attempt=None, reason="failed: gone (error 100); attempt 3 of 3"
    )


@pytest.mark.parametrize(
    ("held", "lapse"),
    [
        (lease(status=S.SENT, kill_requested=True), d.Lapse.KILLED),
        (lease(status=S.RUNNING, kill_requested=True), d.Lapse.KILLED),
        (lease(status=S.SENT), d.Lapse.REQUEUED),
        (lease(status=S.STARTING), d.Lapse.LOST),
        (lease(status=S.TRANSFERRING), d.Lapse.LOST),
    ],
)
def test_a_lapsed_lease(held: d.Lease, lapse: d.Lapse) -> None:
    assert d.judge_lapse(held) is lapse


# --- final reports: who may report ------------------------------------------------------------


def test_final_for_an_unknown_job() -> None:
    assert d.judge_final(None, report(), now=100.0) == d.FinalVerdict(answer=A.NOT_FOUND, message="no job 7")


def test_replay_of_the_applied_final_is_ok_and_changes_nothing() -> None:
    done = lease(status=S.FINISHED, last_final_epoch=3, last_final_status="finished")
    assert d.judge_final(done, report(), now=100.0) == d.FinalVerdict(answer=A.OK, message="already recorded")


def test_same_job_twice_in_one_batch() -> None:
    same = d.judge_final(lease(), report(), now=1.0, earlier=(3, S.FINISHED))
    assert same == d.FinalVerdict(answer=A.OK, message="already recorded")
    other = d.judge_final(lease(), report(status=S.FAILED), now=1.0, earlier=(3, S.FINISHED))
    assert other == d.FinalVerdict(answer=A.STALE, message="another final report came first")


def test_final_for_another_lease_is_stale() -> None:
    v = d.judge_final(lease(), report(epoch=2), now=1.0)
    assert v == d.FinalVerdict(answer=A.STALE, message="job is running with lease epoch 3")


def test_strangers_final_for_the_live_lease_is_rejected() -> None:
    v = d.judge_final(lease(), report(pilot_id="stranger"), now=1.0)
    assert v == d.FinalVerdict(answer=A.REJECTED, message="job 7 is not leased to pilot stranger")


def test_a_spooled_final_handed_in_by_a_pilot_of_the_holders_principal_counts() -> None:
    v = d.judge_final(lease(), report(pilot_id="heir", holders_heir=True), now=1.0)
    assert v.answer is A.OK and v.outcome is not None and v.outcome.to_status is S.FINISHED
    # but not for a lease that moved on
    assert d.judge_final(lease(), report(pilot_id="heir", holders_heir=True, epoch=2), now=1.0).answer is A.STALE


# --- final reports: outcomes --------------------------------------------------------------------


def test_finished_from_running_passes_through_holding() -> None:
    v = d.judge_final(lease(), report(walltime_s=30.0), now=100.0)
    assert v == d.FinalVerdict(
        answer=A.OK,
        outcome=d.FinalOutcome(
            to_status=S.FINISHED,
            steps=(
                (S.RUNNING, S.HOLDING, "payload done; registering outputs"),
                (S.HOLDING, S.FINISHED, "final report: finished"),
            ),
            outputs=True,
        ),
    )


@pytest.mark.parametrize("state", [S.HOLDING, S.TRANSFERRING])
def test_finished_from_holding_or_transferring_is_one_step(state: JobState) -> None:
    out = d.final_outcome(lease(status=state), report(), now=100.0)
    assert out.steps == ((state, S.FINISHED, "final report: finished"),) and out.to_status is S.FINISHED


def test_a_ddm_job_waits_in_transferring_until_its_outputs_are_verified() -> None:
    out = d.final_outcome(lease(), report(verify_on="CERN_DISK"), now=100.0)
    assert out.to_status is S.TRANSFERRING and out.outputs and not out.ends
    assert out.steps == (
        (S.RUNNING, S.HOLDING, "payload done; registering outputs"),
        (S.HOLDING, S.TRANSFERRING, "final report: outputs stored; verifying them on CERN_DISK"),
    )
    # a delivered kill still wins over it
    killed = lease(kill_requested=True, kill_reason="k", kill_delivered=True)
    assert d.final_outcome(killed, report(verify_on="CERN_DISK"), now=1.0).to_status is S.CANCELLED


def test_a_job_that_ended_before_it_was_reported_running_gets_a_backdated_start() -> None:
    out = d.final_outcome(lease(status=S.SENT, started=False), report(walltime_s=30.0), now=100.0)
    assert out.start_time == 70.0
    assert d.final_outcome(lease(status=S.SENT, started=False), report(), now=100.0).start_time is None


def test_finished_after_a_kill_not_yet_delivered_stands() -> None:
    held = lease(kill_requested=True, kill_reason="killed by alice")
    out = d.final_outcome(held, report(), now=1.0)
    assert out.to_status is S.FINISHED and out.errors is d.ErrorsKept.REPORTED and out.outputs


def test_finished_after_a_delivered_kill_is_cancelled_with_the_kills_error() -> None:
    held = lease(kill_requested=True, kill_reason="killed by alice: wrong input", kill_delivered=True)
    v = d.judge_final(held, report(), now=1.0)
    why = "final report: finished, after the kill was delivered; cancelled (killed by alice: wrong input)"
    assert v == d.FinalVerdict(
        answer=A.OK,
        message=d.KILL_WINS,
        outcome=d.FinalOutcome(
            to_status=S.CANCELLED, steps=((S.RUNNING, S.CANCELLED, why),), errors=d.ErrorsKept.KILL, outputs=False
        ),
    )


def test_cancelled_by_the_pilot_on_its_own() -> None:
    out = d.final_outcome(lease(), report(status=S.CANCELLED), now=1.0)
    assert out == d.FinalOutcome(
        to_status=S.CANCELLED,
        steps=((S.RUNNING, S.CANCELLED, "final report: cancelled (cancelled by the pilot)"),),
        errors=d.ErrorsKept.REPORTED,
    )


@pytest.mark.parametrize(("status", "summary"), [(S.CANCELLED, ""), (S.FAILED, "")])
def test_any_end_after_a_kill_is_cancelled_with_the_kills_error_when_none_reported(
    status: JobState, summary: str
) -> None:
    held = lease(kill_requested=True, kill_reason="killed by bob")
    out = d.final_outcome(held, report(status=status, retryable=True, error_summary=summary), now=1.0)
    assert out == d.FinalOutcome(
        to_status=S.CANCELLED,
        steps=((S.RUNNING, S.CANCELLED, "final report: cancelled (killed by bob)"),),
        errors=d.ErrorsKept.KILL,
    )


def test_the_pilots_own_kill_errors_are_kept() -> None:
    held = lease(kill_requested=True, kill_reason="killed by bob")
    out = d.final_outcome(held, report(status=S.CANCELLED, error_summary="PILOT 1144: killed"), now=1.0)
    assert out.to_status is S.CANCELLED and out.errors is d.ErrorsKept.REPORTED


def test_retryable_failure_with_attempts_left_is_retried() -> None:
    out = d.final_outcome(lease(attempt_nr=1, max_attempt=2), report(status=S.FAILED, retryable=True), now=1.0)
    reason = "attempt 1 failed (no error given); retrying as attempt 2"
    assert out == d.FinalOutcome(
        to_status=S.ACTIVATED, steps=((S.RUNNING, S.ACTIVATED, reason),), next_attempt=2, ends=False
    )


def test_retryable_failure_of_the_last_attempt_fails() -> None:
    rep = report(status=S.FAILED, retryable=True, error_summary="ERROR_COMPONENT_DDM 1099: stage-in failed")
    out = d.final_outcome(lease(attempt_nr=2, max_attempt=2), rep, now=1.0)
    reason = "final report: failed (ERROR_COMPONENT_DDM 1099: stage-in failed; attempt 2 of 2)"
    assert out == d.FinalOutcome(to_status=S.FAILED, steps=((S.RUNNING, S.FAILED, reason),))


def test_not_retryable_failure_fails_at_once() -> None:
    out = d.final_outcome(lease(attempt_nr=1, max_attempt=3), report(status=S.FAILED), now=1.0)
    reason = "final report: failed (no error given; not retryable)"
    assert out == d.FinalOutcome(to_status=S.FAILED, steps=((S.RUNNING, S.FAILED, reason),))


# --- kill -------------------------------------------------------------------------------------


def test_kill_diag() -> None:
    assert d.kill_diag("alice", "") == "killed by alice"
    assert d.kill_diag("alice", "wrong input") == "killed by alice: wrong input"


@pytest.mark.parametrize("status", [S.FINISHED, S.FAILED, S.CANCELLED, S.CLOSED])
def test_kill_of_a_final_job_does_nothing(status: JobState) -> None:
    assert d.decide_kill(status, "p1") == d.KillDecision(
        action=d.KillAction.NONE, accepted=False, status=status, message=f"already {status.value}"
    )


@pytest.mark.parametrize("status", [S.DEFINED, S.ASSIGNED, S.ACTIVATED])
def test_kill_of_a_queued_job_cancels_it(status: JobState) -> None:
    assert d.decide_kill(status, "") == d.KillDecision(
        action=d.KillAction.CANCEL, accepted=True, status=S.CANCELLED, message="cancelled"
    )


@pytest.mark.parametrize("status", [S.SENT, S.STARTING, S.RUNNING, S.HOLDING, S.TRANSFERRING])
def test_kill_of_a_job_on_a_pilot_signals_that_pilot(status: JobState) -> None:
    assert d.decide_kill(status, "p9") == d.KillDecision(
        action=d.KillAction.SIGNAL, accepted=True, status=status, message="kill command sent to pilot p9", pilot_id="p9"
    )


# --- pilot ids --------------------------------------------------------------------------------


def claim(principal: str = "iss alice", *, live: bool = False, leases: bool = False) -> d.PilotClaim:
    return d.PilotClaim(principal=principal, live=live, holds_leases=leases)


def test_a_new_or_unbound_pilot_id_is_bound_to_its_first_caller() -> None:
    assert d.judge_pilot_claim(None, "iss alice", "p") == d.PilotVerdict(allowed=True, rebind=True)
    assert d.judge_pilot_claim(claim(""), "iss alice", "p") == d.PilotVerdict(allowed=True, rebind=True)


@pytest.mark.parametrize(("live", "leases"), [(False, False), (True, False), (False, True), (True, True)])
def test_the_owner_may_always_come_back(live: bool, leases: bool) -> None:
    assert d.judge_pilot_claim(claim(live=live, leases=leases), "iss alice", "p") == d.PilotVerdict(allowed=True)


@pytest.mark.parametrize(
    ("live", "leases", "what"),
    [(True, False, "is connected"), (False, True, "holds leased jobs"), (True, True, "is connected")],
)
def test_another_principal_is_refused_a_live_or_leased_pilot_id(live: bool, leases: bool, what: str) -> None:
    v = d.judge_pilot_claim(claim(live=live, leases=leases), "iss mallory", "p")
    assert v == d.PilotVerdict(allowed=False, message=f"pilot id 'p' belongs to another principal and {what}")


def test_an_abandoned_pilot_id_passes_to_another_principal() -> None:
    assert d.judge_pilot_claim(claim(), "iss mallory", "p") == d.PilotVerdict(allowed=True, rebind=True)


def test_decisions_import_no_wire_or_database_code() -> None:
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(d))
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not {m for m in names if m.startswith(("sqlalchemy", "ailuro.v1", "grpc", "google"))}, names
