"""The dispatcher's protocol answers as pure functions (``dispatcher/pilot_protocol.py``) and the
one spelling of job states (``JobState`` values are ``status_name`` of the enum)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from ailuro.jobspec import status_name, status_value
from ailuro.v1 import job_pb2, pilot_pb2
from dispatcher.config import DispatcherConfig, Limits
from dispatcher.pilot_protocol import heartbeat_period_s, job_request_problem, no_more_jobs, welcome
from dispatcher.services.debug import report_problem
from dispatcher.states import JobState, status_count_list


def test_heartbeat_period_is_capped_by_the_lease() -> None:
    assert heartbeat_period_s(DispatcherConfig()) == 30.0
    assert heartbeat_period_s(DispatcherConfig(lease_s=9.0)) == 3.0
    assert heartbeat_period_s(DispatcherConfig(pilot_heartbeat_s=1.0)) == 1.0


def test_welcome_carries_the_configured_limits() -> None:
    cfg = DispatcherConfig(lease_s=60, limits=dataclasses.replace(Limits(), files_per_final=7, debug_report_bytes=99))
    w = welcome(cfg, session_id="s", dispatcher_id="d")
    assert (w.session_id, w.dispatcher_id, w.lease_s, w.heartbeat_s) == ("s", "d", 60, 20.0)
    assert w.limits.files_per_final == 7 and w.limits.debug_report_bytes == 99
    assert w.limits.max_jobs_per_request == 100


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"n": 0}, "job_request.n"),
        ({"n": 101}, "job_request.n"),
        ({"n": -3}, "job_request.n"),
        ({"n": 1, "walltime_left_s": -1}, "job_request.walltime_left_s"),
        ({"n": 1, "request_id": -1}, "job_request.request_id"),
    ],
)
def test_job_request_problem_names_the_field(fields: dict[str, int], field: str) -> None:
    problem = job_request_problem(pilot_pb2.JobRequest(**fields))
    assert problem is not None and problem[0] == field


def test_a_good_job_request_has_no_problem() -> None:
    assert job_request_problem(pilot_pb2.JobRequest(n=100, walltime_left_s=5, request_id=9)) is None


def test_no_more_jobs_echoes_the_request() -> None:
    msg = no_more_jobs(pilot_pb2.JobRequest(n=4, request_id=8), n_given=1, retry_after_s=2.0, reason="r")
    assert (msg.no_job.request_id, msg.no_job.n_requested, msg.no_job.n_given) == (8, 4, 1)


def test_job_state_names_are_the_enum_names() -> None:
    for state in JobState:
        assert status_name(state.to_proto()) == state.value
        assert status_value(state.value) == state.to_proto()
    named = {v.number for v in job_pb2.JobStatus.DESCRIPTOR.values if v.number}
    assert named == {s.to_proto() for s in JobState}


def test_status_count_list_is_in_enum_order_without_zeros() -> None:
    counts = status_count_list({"running": 2, "activated": 5, "failed": 0})
    assert [(c.status, c.count) for c in counts] == [(job_pb2.JOB_STATUS_ACTIVATED, 5), (job_pb2.JOB_STATUS_RUNNING, 2)]


def test_debug_report_bounds() -> None:
    ok = pilot_pb2.DebugReport(panda_id=1, command_id=2, snapshot="x" * 10)
    assert report_problem(ok, 10) is None
    assert "debug_report_bytes" in (report_problem(ok, 9) or "")
    assert report_problem(pilot_pb2.DebugReport(panda_id=1, snapshot="x"), 10) is not None


def test_only_the_owner_or_an_admin_may_debug() -> None:
    from dispatcher.identity import Identity
    from dispatcher.services.debug import may_debug
    from dispatcher.states import JobState
    from dispatcher.store.debug import DebugTarget

    target = DebugTarget(panda_id=1, owner="alice", vo="v", status=JobState.RUNNING, pilot_id="p", node="n")
    assert may_debug(Identity(name="alice", vo="v", roles=("user",)), target)
    assert may_debug(Identity(name="root", vo="admin", roles=("admin",), all_vos=True), target)
    # a snapshot shows what the secret environment shows: the owner's, not the VO admin's
    assert not may_debug(Identity(name="vo-admin", vo="v", roles=("admin",)), target)
    assert not may_debug(Identity(name="alice", vo="other", roles=("user",)), target)
    assert not may_debug(Identity(name="bob", vo="v", roles=("user", "production")), target)
    assert not may_debug(Identity(), target)


def test_a_resuming_watch_goes_back_past_events_that_may_still_commit_late() -> None:
    from ailuro.client import LATE_COMMIT_S, _ResumePoint

    now = [100.0]
    point = _ResumePoint(10, clock=lambda: now[0])
    assert point.after_event_id() == 10
    point.seen(11)
    point.seen(14)  # 12 and 13 may still commit (PostgreSQL draws ids before commit)
    assert point.after_event_id() == 10
    now[0] += LATE_COMMIT_S
    point.seen(20)
    assert point.after_event_id() == 14  # 11 and 14 are old enough: nothing below them can still come
    fresh = _ResumePoint(0, clock=lambda: now[0])
    fresh.seen(7)
    assert fresh.after_event_id() == 6  # never 0, which would mean "only new events"


def test_the_pilot_ends_a_request_at_its_no_job_and_ignores_stale_answers(tmp_path: Path) -> None:
    from pilot.config import PilotConfig
    from pilot.main import Pilot

    cfg = PilotConfig(server="127.0.0.1:1", queue="LOCAL", pilot_id="x", workdir=tmp_path, spool_dir=tmp_path / "s")
    p = Pilot(cfg)
    p._request_pending, p._request_id, p._request_left = True, 5, 3
    p._on_no_job(pilot_pb2.NoJob(request_id=4, n_requested=3, n_given=0, retry_after_s=1.0))
    assert p._request_pending  # an answer to an older request does not end this one
    p._on_no_job(pilot_pb2.NoJob(request_id=5, n_requested=3, n_given=1, retry_after_s=1.0))
    assert not p._request_pending and p._request_left == 0
