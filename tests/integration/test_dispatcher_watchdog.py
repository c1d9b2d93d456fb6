"""The watchdog: unstarted jobs requeued, lost heartbeats retried then failed, killed jobs cancelled."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import grpc

from ailuro.v1 import job_pb2, pilot_pb2, submission_pb2, submission_pb2_grpc
from dispatcher.server import RunningDispatcher

J = job_pb2
P = pilot_pb2
S = submission_pb2


def wait_for_status(sub: Any, pid: int, status: int, timeout: float = 15.0) -> job_pb2.Job:
    deadline = time.monotonic() + timeout
    while True:
        job = sub.GetJobs(S.GetJobsRequest(panda_ids=[pid])).jobs[0]
        if job.status == status:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {pid} is {J.JobStatus.Name(job.status)}, wanted {J.JobStatus.Name(status)}")
        time.sleep(0.05)


def test_sent_job_that_never_starts_goes_back_to_activated(
    make_dispatcher: Callable[..., RunningDispatcher], raw_pilot: Callable[..., Any]
) -> None:
    d = make_dispatcher(sent_timeout_s=0.5, watchdog_interval_s=0.1)
    with grpc.insecure_channel(d.address) as ch:
        sub = submission_pb2_grpc.SubmissionServiceStub(ch)
        (pid,) = sub.SubmitJobs(S.SubmitJobsRequest(jobs=[J.Job(transformation="t")])).panda_ids
        p = raw_pilot(d.address, pilot_id="silent")
        p.request(1)
        assert p.expect("assignment").lease_epoch == 1
        job = wait_for_status(sub, pid, J.JOB_STATUS_ACTIVATED)
        assert job.attempt_nr == 1  # a requeue consumes no attempt
        assert (job.errors[0].component, job.errors[0].code) == (J.ERROR_COMPONENT_DISPATCHER, 101)
        last = sub.GetJobEvents(S.GetJobEventsRequest(panda_id=pid)).events[-1]
        assert (last.from_status, last.to_status, last.actor) == (J.JOB_STATUS_SENT, J.JOB_STATUS_ACTIVATED, "watchdog")
        # the old lease is dead: its pilot is refused, and the next claim gets a new epoch
        p.heartbeat(pid, 1, J.JOB_STATUS_STARTING)
        assert p.ack_for(pid).result == P.ACK_RESULT_STALE_EPOCH
        p.request(1)
        assert p.expect("assignment").lease_epoch == 2


def test_lost_heartbeat_retries_until_max_attempt_then_fails(
    make_dispatcher: Callable[..., RunningDispatcher], raw_pilot: Callable[..., Any]
) -> None:
    d = make_dispatcher(lease_s=0.6, watchdog_interval_s=0.1)
    with grpc.insecure_channel(d.address) as ch:
        sub = submission_pb2_grpc.SubmissionServiceStub(ch)
        (pid,) = sub.SubmitJobs(S.SubmitJobsRequest(jobs=[J.Job(transformation="t", max_attempt=2)])).panda_ids
        p = raw_pilot(d.address, pilot_id="lossy")
        for attempt in (1, 2):
            p.request(1)
            a = p.expect("assignment")
            assert (a.job.attempt_nr, a.lease_epoch) == (attempt, attempt)
            p.heartbeat(pid, a.lease_epoch, J.JOB_STATUS_RUNNING)
            assert p.ack_for(pid).result == P.ACK_RESULT_OK
            # then silence: the lease lapses
            want = J.JOB_STATUS_ACTIVATED if attempt == 1 else J.JOB_STATUS_FAILED
            job = wait_for_status(sub, pid, want)
            assert (job.errors[0].component, job.errors[0].code) == (J.ERROR_COMPONENT_DISPATCHER, 100)
        assert job.attempt_nr == 2 and job.HasField("end_time")
        # a late report of the lost attempt changes nothing
        p.final(pid, 2, J.JOB_STATUS_FINISHED)
        assert p.ack_for(pid, final=True).result == P.ACK_RESULT_STALE_EPOCH
        assert sub.GetJobs(S.GetJobsRequest(panda_ids=[pid])).jobs[0].status == J.JOB_STATUS_FAILED


def test_heartbeats_keep_the_lease_alive(
    make_dispatcher: Callable[..., RunningDispatcher], raw_pilot: Callable[..., Any]
) -> None:
    # a 4 s lease: a heartbeat round trip on a loaded machine (stress-ng beside the suite) took longer
    # than the former 0.8 s lease, which then lapsed between two heartbeats
    d = make_dispatcher(lease_s=4.0, watchdog_interval_s=0.1)
    with grpc.insecure_channel(d.address) as ch:
        sub = submission_pb2_grpc.SubmissionServiceStub(ch)
        (pid,) = sub.SubmitJobs(S.SubmitJobsRequest(jobs=[J.Job(transformation="t")])).panda_ids
        p = raw_pilot(d.address, pilot_id="alive")
        p.request(1)
        p.expect("assignment")
        for _ in range(40):  # 12 s or more, three leases long
            p.heartbeat(pid, 1, J.JOB_STATUS_RUNNING)
            assert p.ack_for(pid).result == P.ACK_RESULT_OK
            time.sleep(0.3)
        assert sub.GetJobs(S.GetJobsRequest(panda_ids=[pid])).jobs[0].status == J.JOB_STATUS_RUNNING


def test_killed_job_whose_pilot_vanished_is_cancelled_not_retried(
    make_dispatcher: Callable[..., RunningDispatcher], raw_pilot: Callable[..., Any]
) -> None:
    d = make_dispatcher(lease_s=0.6, watchdog_interval_s=0.1)
    with grpc.insecure_channel(d.address) as ch:
        sub = submission_pb2_grpc.SubmissionServiceStub(ch)
        (pid,) = sub.SubmitJobs(S.SubmitJobsRequest(jobs=[J.Job(transformation="t")])).panda_ids
        p = raw_pilot(d.address, pilot_id="gone")
        p.request(1)
        p.expect("assignment")
        p.heartbeat(pid, 1, J.JOB_STATUS_RUNNING)
        p.ack_for(pid)
        p.close()
        sub.KillJobs(S.KillJobsRequest(panda_ids=[pid]))
        job = wait_for_status(sub, pid, J.JOB_STATUS_CANCELLED)
        assert job.attempt_nr == 1 and job.errors[0].code == 1144
