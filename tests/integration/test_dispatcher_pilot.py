"""PilotService (Connect stream and unary calls) against an in-process dispatcher, both databases."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest

from ailuro.v1 import job_pb2, pilot_pb2, pilot_pb2_grpc, submission_pb2, submission_pb2_grpc
from dispatcher.server import RunningDispatcher

J = job_pb2
P = pilot_pb2
S = submission_pb2


@pytest.fixture
def sub(dispatcher: RunningDispatcher) -> Iterator[submission_pb2_grpc.SubmissionServiceStub]:
    with grpc.insecure_channel(dispatcher.address) as ch:
        yield submission_pb2_grpc.SubmissionServiceStub(ch)


def submit(sub: Any, n: int = 1, **kw: Any) -> list[int]:
    kw.setdefault("transformation", "/bin/true")
    return list(sub.SubmitJobs(S.SubmitJobsRequest(jobs=[J.Job(**kw) for _ in range(n)])).panda_ids)


def status_of(sub: Any, pid: int) -> int:
    return sub.GetJobs(S.GetJobsRequest(panda_ids=[pid])).jobs[0].status


def events_of(sub: Any, pid: int) -> list[tuple[int, int]]:
    return [(e.from_status, e.to_status) for e in sub.GetJobEvents(S.GetJobEventsRequest(panda_id=pid)).events]


def test_no_job_when_idle(dispatcher: RunningDispatcher, raw_pilot: Callable[..., Any]) -> None:
    """Parked up to no_job_retry_s, then NoJob: the pilot may ask again soon (its next request parks too)."""
    from dispatcher.services.parking import SOON_S

    p = raw_pilot(dispatcher.address, pilot_id="idle")
    p.request(1)
    answer = p.expect("no_job")
    assert answer.n_given == 0 and answer.retry_after_s == pytest.approx(SOON_S)


def test_full_lifecycle_on_a_stream(dispatcher: RunningDispatcher, sub: Any, raw_pilot: Callable[..., Any]) -> None:
    (pid,) = submit(
        sub, files=[J.File(lfn="in.dat", type=J.FILE_TYPE_INPUT), J.File(lfn="out.dat", type=J.FILE_TYPE_OUTPUT)]
    )
    p = raw_pilot(dispatcher.address, pilot_id="p-life")
    p.request(1)
    a = p.expect("assignment")
    assert a.job.panda_id == pid and a.lease_epoch == 1 and a.lease_s == int(dispatcher.config.lease_s)
    assert a.job.status == J.JOB_STATUS_SENT and a.job.pilot_id == "p-life" and len(a.job.files) == 2
    p.heartbeat(pid, 1, J.JOB_STATUS_STARTING)
    assert p.ack_for(pid).result == P.ACK_RESULT_OK
    p.heartbeat(pid, 1, J.JOB_STATUS_RUNNING, cpu_time_s=1.5, max_rss_kb=1000)
    assert p.ack_for(pid).result == P.ACK_RESULT_OK
    running = sub.GetJobs(S.GetJobsRequest(panda_ids=[pid])).jobs[0]
    assert running.status == J.JOB_STATUS_RUNNING and running.HasField("start_time")
    assert running.metrics.max_rss_kb == 1000
    out = J.File(lfn="out.dat", type=J.FILE_TYPE_OUTPUT, size=12, adler32="01020304", pfn="file:///x/out.dat")
    log = J.File(lfn="j.job.log.tgz", type=J.FILE_TYPE_LOG, size=3, adler32="0000ffff", pfn="file:///x/log")
    p.final(pid, 1, J.JOB_STATUS_FINISHED, files=[out, log], metrics=J.JobMetrics(exit_code=0, cpu_time_s=2.0))
    ack = p.ack_for(pid, final=True)
    assert ack.result == P.ACK_RESULT_OK and ack.is_final
    done = sub.GetJobs(S.GetJobsRequest(panda_ids=[pid])).jobs[0]
    assert done.status == J.JOB_STATUS_FINISHED and done.HasField("end_time")
    assert {f.lfn: (f.size, f.adler32, f.pfn) for f in done.files} == {
        "in.dat": (0, "", ""),
        "out.dat": (12, "01020304", "file:///x/out.dat"),
        "j.job.log.tgz": (3, "0000ffff", "file:///x/log"),
    }
    assert events_of(sub, pid)[2:] == [
        (J.JOB_STATUS_ACTIVATED, J.JOB_STATUS_SENT),
        (J.JOB_STATUS_SENT, J.JOB_STATUS_STARTING),
        (J.JOB_STATUS_STARTING, J.JOB_STATUS_RUNNING),
        (J.JOB_STATUS_RUNNING, J.JOB_STATUS_HOLDING),
        (J.JOB_STATUS_HOLDING, J.JOB_STATUS_FINISHED),
    ]
    # a replayed final (the pilot did not see the ack) is acknowledged again, nothing changes
    p.final(pid, 1, J.JOB_STATUS_FINISHED, files=[out, log])
    assert p.ack_for(pid, final=True).result == P.ACK_RESULT_OK
    assert len(events_of(sub, pid)) == 7
    # but a heartbeat for a finished job is stale
    p.heartbeat(pid, 1, J.JOB_STATUS_RUNNING)
    assert p.ack_for(pid).result == P.ACK_RESULT_STALE_EPOCH


def test_stale_epoch_and_unknown_job_refused(
    dispatcher: RunningDispatcher, sub: Any, raw_pilot: Callable[..., Any]
) -> None:
    (pid,) = submit(sub)
    p = raw_pilot(dispatcher.address, pilot_id="p-stale")
    p.request(1)
    assert p.expect("assignment").lease_epoch == 1
    p.heartbeat(pid, 7, J.JOB_STATUS_RUNNING)
    assert p.ack_for(pid).result == P.ACK_RESULT_STALE_EPOCH
    p.final(pid, 0, J.JOB_STATUS_FAILED)
    assert p.ack_for(pid, final=True).result == P.ACK_RESULT_STALE_EPOCH
    assert status_of(sub, pid) == J.JOB_STATUS_SENT
    p.heartbeat(10**9, 1, J.JOB_STATUS_RUNNING)
    assert p.ack_for(10**9).result == P.ACK_RESULT_NOT_FOUND
    p.final(10**9, 1, J.JOB_STATUS_FINISHED)
    assert p.ack_for(10**9, final=True).result == P.ACK_RESULT_NOT_FOUND


def test_bad_reports_are_rejected(dispatcher: RunningDispatcher, sub: Any, raw_pilot: Callable[..., Any]) -> None:
    (pid,) = submit(sub)
    p = raw_pilot(dispatcher.address, pilot_id="p-bad")
    p.request(1)
    p.expect("assignment")
    p.heartbeat(pid, 1, J.JOB_STATUS_FINISHED)  # finals are not heartbeats
    ack = p.ack_for(pid)
    assert ack.result == P.ACK_RESULT_REJECTED and "heartbeat" in ack.message
    p.final(pid, 1, J.JOB_STATUS_RUNNING)
    assert p.ack_for(pid, final=True).result == P.ACK_RESULT_REJECTED
    p.final(pid, 1, J.JOB_STATUS_FINISHED, files=[J.File(lfn="o", type=J.FILE_TYPE_OUTPUT, adler32="xyz")])
    ack = p.ack_for(pid, final=True)
    assert ack.result == P.ACK_RESULT_REJECTED and "adler32" in ack.message
    assert status_of(sub, pid) == J.JOB_STATUS_SENT


def test_failed_attempt_is_retried_then_fails_for_good(
    dispatcher: RunningDispatcher, sub: Any, raw_pilot: Callable[..., Any]
) -> None:
    (pid,) = submit(sub, max_attempt=2)
    p = raw_pilot(dispatcher.address, pilot_id="p-retry")
    err = J.JobError(component=J.ERROR_COMPONENT_DDM, code=1099, diag="stage-in failed")
    for attempt, epoch in ((1, 1), (2, 2)):
        p.request(1)
        a = p.expect("assignment")
        assert (a.job.attempt_nr, a.lease_epoch) == (attempt, epoch)
        p.final(pid, epoch, J.JOB_STATUS_FAILED, errors=[err], retryable=True)
        assert p.ack_for(pid, final=True).result == P.ACK_RESULT_OK
    got = sub.GetJobs(S.GetJobsRequest(panda_ids=[pid])).jobs[0]
    assert got.status == J.JOB_STATUS_FAILED and got.attempt_nr == 2
    assert (got.errors[0].component, got.errors[0].code) == (J.ERROR_COMPONENT_DDM, 1099)
    evs = events_of(sub, pid)
    assert (J.JOB_STATUS_SENT, J.JOB_STATUS_ACTIVATED) in evs and evs[-1] == (J.JOB_STATUS_SENT, J.JOB_STATUS_FAILED)


def test_not_retryable_failure_is_final(dispatcher: RunningDispatcher, sub: Any, raw_pilot: Callable[..., Any]) -> None:
    (pid,) = submit(sub)
    p = raw_pilot(dispatcher.address, pilot_id="p-nr")
    p.request(1)
    p.expect("assignment")
    p.final(pid, 1, J.JOB_STATUS_FAILED, retryable=False, metrics=J.JobMetrics(exit_code=3))
    assert p.ack_for(pid, final=True).result == P.ACK_RESULT_OK
    got = sub.GetJobs(S.GetJobsRequest(panda_ids=[pid])).jobs[0]
    assert got.status == J.JOB_STATUS_FAILED and got.metrics.exit_code == 3 and got.attempt_nr == 1


def test_kill_is_pushed_to_the_connected_pilot(
    dispatcher: RunningDispatcher, sub: Any, raw_pilot: Callable[..., Any]
) -> None:
    (pid,) = submit(sub)
    p = raw_pilot(dispatcher.address, pilot_id="p-kill")
    p.request(1)
    p.expect("assignment")
    p.heartbeat(pid, 1, J.JOB_STATUS_RUNNING)
    p.ack_for(pid)
    res = sub.KillJobs(S.KillJobsRequest(panda_ids=[pid], reason="wrong input")).results[0]
    assert res.accepted and res.status == J.JOB_STATUS_RUNNING and "p-kill" in res.message
    cmd = p.expect("command", timeout=5)
    assert (cmd.panda_id, cmd.type) == (pid, P.COMMAND_TYPE_KILL) and "wrong input" in cmd.reason
    p.final(pid, 1, J.JOB_STATUS_CANCELLED, errors=[J.JobError(component=J.ERROR_COMPONENT_PILOT, code=1144)])
    assert p.ack_for(pid, final=True).result == P.ACK_RESULT_OK
    assert status_of(sub, pid) == J.JOB_STATUS_CANCELLED


def test_kill_reaches_a_pilot_on_another_dispatcher(
    make_dispatcher: Callable[..., RunningDispatcher], raw_pilot: Callable[..., Any]
) -> None:
    d1, d2 = make_dispatcher(), make_dispatcher()
    with grpc.insecure_channel(d1.address) as ch:
        s1 = submission_pb2_grpc.SubmissionServiceStub(ch)
        (pid,) = submit(s1)
        p = raw_pilot(d2.address, pilot_id="p-remote")
        p.request(1)
        assert p.expect("assignment").job.panda_id == pid
        s1.KillJobs(S.KillJobsRequest(panda_ids=[pid]))
        assert p.expect("command", timeout=5).panda_id == pid


@pytest.mark.postgres
def test_kill_on_another_process_is_announced_not_polled(pg_url: str, raw_pilot: Callable[..., Any]) -> None:
    """On PostgreSQL the killing transaction NOTIFYs: the pilot's process looks at once. The poll
    is set to a minute here, so only the notification can deliver the command within the wait."""
    from dispatcher.auth.config import TRUSTED_METADATA_MODE, AuthConfig
    from dispatcher.config import DispatcherConfig
    from dispatcher.server import run_in_thread

    dev = AuthConfig(mode=TRUSTED_METADATA_MODE)  # about kill delivery: the loopback dev mode
    config = DispatcherConfig(db_url=pg_url, port=0, command_poll_s=60.0, auth=dev)
    with run_in_thread(config) as d1, run_in_thread(config) as d2, grpc.insecure_channel(d1.address) as ch:
        s1 = submission_pb2_grpc.SubmissionServiceStub(ch)
        (pid,) = submit(s1)
        p = raw_pilot(d2.address, pilot_id="p-notified")
        p.request(1)
        assert p.expect("assignment", timeout=30).job.panda_id == pid
        s1.KillJobs(S.KillJobsRequest(panda_ids=[pid]))
        assert p.expect("command", timeout=30).panda_id == pid
        p.close()


def test_failed_report_of_killed_job_ends_cancelled(
    dispatcher: RunningDispatcher, sub: Any, raw_pilot: Callable[..., Any]
) -> None:
    (pid,) = submit(sub)
    p = raw_pilot(dispatcher.address, pilot_id="p-kf")
    p.request(1)
    p.expect("assignment")
    sub.KillJobs(S.KillJobsRequest(panda_ids=[pid]))
    p.expect("command")
    p.final(pid, 1, J.JOB_STATUS_FAILED, retryable=True)
    p.ack_for(pid, final=True)
    assert status_of(sub, pid) == J.JOB_STATUS_CANCELLED


def test_reconnect_resumes_held_jobs_and_refuses_stale_ones(
    dispatcher: RunningDispatcher, sub: Any, raw_pilot: Callable[..., Any]
) -> None:
    a, b = submit(sub, 2)
    p = raw_pilot(dispatcher.address, pilot_id="p-re")
    p.request(2)
    got = {p.expect("assignment").job.panda_id, p.expect("assignment").job.panda_id}
    assert got == {a, b}
    p.close()
    held = [P.HeldJob(panda_id=a, lease_epoch=1), P.HeldJob(panda_id=b, lease_epoch=5)]
    p2 = raw_pilot(dispatcher.address, pilot_id="p-re", held=held)
    assert p2.ack_for(a).result == P.ACK_RESULT_OK
    assert p2.ack_for(b).result == P.ACK_RESULT_STALE_EPOCH
    # another pilot cannot take over a job it does not hold
    p3 = raw_pilot(dispatcher.address, pilot_id="p-other", held=[P.HeldJob(panda_id=a, lease_epoch=1)])
    assert p3.ack_for(a).result == P.ACK_RESULT_STALE_EPOCH


def test_stream_must_start_with_hello(dispatcher: RunningDispatcher) -> None:
    with grpc.insecure_channel(dispatcher.address) as ch:
        stub = pilot_pb2_grpc.PilotServiceStub(ch)
        call = stub.Connect(iter([P.PilotMessage(job_request=P.JobRequest(n=1))]))
        with pytest.raises(grpc.RpcError) as info:
            list(call)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert ("ailuro-field", "hello") in tuple(info.value.trailing_metadata())


@pytest.mark.parametrize(
    ("hello", "field"),
    [
        (P.Hello(pilot_id="", queue="LOCAL"), "hello.pilot_id"),
        (P.Hello(pilot_id="x", queue="NOWHERE"), "hello.queue"),
        (P.Hello(pilot_id="x" * 300, queue="LOCAL"), "hello.pilot_id"),
        (P.Hello(pilot_id="x", queue="LOCAL", cores=-1), "hello.cores"),
    ],
)
def test_bad_hello_is_invalid_argument(dispatcher: RunningDispatcher, hello: Any, field: str) -> None:
    with grpc.insecure_channel(dispatcher.address) as ch:
        call = pilot_pb2_grpc.PilotServiceStub(ch).Connect(iter([P.PilotMessage(hello=hello)]))
        with pytest.raises(grpc.RpcError) as info:
            list(call)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert ("ailuro-field", field) in tuple(info.value.trailing_metadata())


@pytest.mark.parametrize("n", [0, 101, -1])
def test_bad_job_request_is_rejected_alone(
    dispatcher: RunningDispatcher, sub: Any, raw_pilot: Callable[..., Any], n: int
) -> None:
    """A malformed JobRequest gets a NoJob naming the field; the stream and its job go on."""
    (pid,) = submit(sub)
    p = raw_pilot(dispatcher.address, pilot_id=f"bad-n{n}")
    p.request(1)
    a = p.expect("assignment")
    p.send(P.PilotMessage(job_request=P.JobRequest(n=n, request_id=7)))
    no_job = p.expect("no_job")
    assert no_job.invalid_field == "job_request.n" and no_job.request_id == 7
    assert no_job.n_requested == n and no_job.n_given == 0 and "job_request.n" in no_job.reason
    p.heartbeat(pid, a.lease_epoch, J.JOB_STATUS_RUNNING)
    assert p.ack_for(pid).result == P.ACK_RESULT_OK
    assert status_of(sub, pid) == J.JOB_STATUS_RUNNING


def test_unary_get_job_and_update_job(dispatcher: RunningDispatcher, sub: Any) -> None:
    (pid,) = submit(sub)
    with grpc.insecure_channel(dispatcher.address) as ch:
        stub = pilot_pb2_grpc.PilotServiceStub(ch)
        hello = P.Hello(pilot_id="unary-1", queue="LOCAL", node="wn1", batch_id="b7")
        resp = stub.GetJob(P.GetJobRequest(pilot=hello, n=5))
        (a,) = resp.assignments
        assert a.job.panda_id == pid and a.job.node == "wn1" and a.job.batch_id == "b7"
        assert stub.GetJob(P.GetJobRequest(pilot=hello, n=1)).retry_after_s == pytest.approx(0.2)
        up = stub.UpdateJob(
            P.UpdateJobRequest(
                pilot_id="unary-1",
                heartbeats=[
                    P.Heartbeat(panda_id=pid, lease_epoch=1, status=J.JOB_STATUS_RUNNING),
                    P.Heartbeat(panda_id=pid, lease_epoch=9, status=J.JOB_STATUS_RUNNING),
                ],
            )
        )
        assert [x.result for x in up.acks] == [P.ACK_RESULT_OK, P.ACK_RESULT_STALE_EPOCH]
        sub.KillJobs(S.KillJobsRequest(panda_ids=[pid]))
        up = stub.UpdateJob(P.UpdateJobRequest(pilot_id="unary-1"))
        assert [(c.panda_id, c.type) for c in up.commands] == [(pid, P.COMMAND_TYPE_KILL)]
        assert not stub.UpdateJob(P.UpdateJobRequest(pilot_id="unary-1")).commands  # delivered once
        final = P.JobFinal(panda_id=pid, lease_epoch=1, status=J.JOB_STATUS_CANCELLED)
        up = stub.UpdateJob(P.UpdateJobRequest(pilot_id="unary-1", finals=[final]))
        assert [(x.result, x.is_final) for x in up.acks] == [(P.ACK_RESULT_OK, True)]
        assert status_of(sub, pid) == J.JOB_STATUS_CANCELLED
        with pytest.raises(grpc.RpcError) as info:
            stub.GetJob(P.GetJobRequest(pilot=hello, n=0))
        assert ("ailuro-field", "n") in tuple(info.value.trailing_metadata())
        with pytest.raises(grpc.RpcError) as info:
            stub.UpdateJob(P.UpdateJobRequest(pilot_id=""))
        assert ("ailuro-field", "pilot_id") in tuple(info.value.trailing_metadata())


def test_each_job_is_assigned_once_across_many_streams(
    dispatcher: RunningDispatcher, sub: Any, raw_pilot: Callable[..., Any]
) -> None:
    ids = set(submit(sub, 60))
    pilots = [raw_pilot(dispatcher.address, pilot_id=f"many-{i}") for i in range(6)]
    seen: list[int] = []
    for p in pilots:
        p.request(10)
    for p in pilots:
        for _ in range(10):
            seen.append(p.expect("assignment").job.panda_id)
    assert sorted(seen) == sorted(ids)
    time.sleep(0.1)
    assert sub.ListJobs(S.ListJobsRequest(statuses=[J.JOB_STATUS_SENT])).total == 60


def test_a_job_longer_than_the_pilot_walltime_is_not_handed_to_it(
    dispatcher: RunningDispatcher, sub: Any, raw_pilot: Callable[..., Any]
) -> None:
    (long_job,) = submit(sub, max_walltime_s=3600, current_priority=10)
    (short_job,) = submit(sub, max_walltime_s=30)
    p = raw_pilot(dispatcher.address, pilot_id="p-short")
    p.send(P.PilotMessage(job_request=P.JobRequest(n=2, walltime_left_s=60)))
    assert p.expect("assignment").job.panda_id == short_job  # the higher-priority long job was passed over
    assert status_of(sub, long_job) == J.JOB_STATUS_ACTIVATED
    p.send(P.PilotMessage(job_request=P.JobRequest(n=1, walltime_left_s=60)))
    p.expect("no_job")
    p.send(P.PilotMessage(job_request=P.JobRequest(n=1)))  # 0 = unlimited
    assert p.expect("assignment").job.panda_id == long_job
    # unary GetJob honours Hello.walltime_left_s the same way
    (another_long,) = submit(sub, max_walltime_s=3600)
    with grpc.insecure_channel(dispatcher.address) as ch:
        stub = pilot_pb2_grpc.PilotServiceStub(ch)
        hello = P.Hello(pilot_id="p-unary-short", queue="LOCAL", walltime_left_s=100)
        assert not stub.GetJob(P.GetJobRequest(pilot=hello, n=1)).assignments
        hello.walltime_left_s = 7200
        assert [a.job.panda_id for a in stub.GetJob(P.GetJobRequest(pilot=hello, n=1)).assignments] == [another_long]
