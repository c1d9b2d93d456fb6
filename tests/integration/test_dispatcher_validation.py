"""Every bad input of SubmissionService gets the right status code with the field named, and stores nothing.

Also brokerage over several queues (VO/label matching, lowest load, disabled queues).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest

from ailuro.queues import QueueConfig
from ailuro.v1 import job_pb2, submission_pb2, submission_pb2_grpc
from dispatcher.server import RunningDispatcher

J = job_pb2
S = submission_pb2
C = grpc.StatusCode


def ok_job(**kw: Any) -> job_pb2.Job:
    kw.setdefault("transformation", "/bin/true")
    return J.Job(**kw)


def batch(*jobs: job_pb2.Job, **kw: Any) -> S.SubmitJobsRequest:
    return S.SubmitJobsRequest(jobs=list(jobs), **kw)


def in_file(lfn: str = "f", **kw: Any) -> job_pb2.File:
    kw.setdefault("type", J.FILE_TYPE_INPUT)
    return J.File(lfn=lfn, **kw)


BAD_SUBMITS = [
    (batch(), "jobs"),
    (batch(*[ok_job() for _ in range(5001)]), "jobs"),
    (batch(ok_job(), ok_job(), ok_job(), ok_job(transformation="")), "jobs[3].transformation"),
    (batch(ok_job(transformation="   ")), "jobs[0].transformation"),
    (batch(ok_job(transformation="x" * 4097)), "jobs[0].transformation"),
    (batch(ok_job(job_parameters="x" * 65537)), "jobs[0].job_parameters"),
    (batch(ok_job(job_name="n" * 256)), "jobs[0].job_name"),
    (batch(ok_job(vo="v" * 256)), "jobs[0].vo"),
    (batch(ok_job(computing_site="NOWHERE")), "jobs[0].computing_site"),
    (batch(ok_job(), ok_job(current_priority=-1)), "jobs[1].current_priority"),
    (batch(ok_job(max_attempt=101)), "jobs[0].max_attempt"),
    (batch(ok_job(max_attempt=-1)), "jobs[0].max_attempt"),
    (batch(ok_job(cores=-2)), "jobs[0].cores"),
    (batch(ok_job(memory_mb=-1)), "jobs[0].memory_mb"),
    (batch(ok_job(max_walltime_s=-1)), "jobs[0].max_walltime_s"),
    (batch(ok_job(task_id=-1)), "jobs[0].task_id"),
    (batch(ok_job(environment={"1BAD": "x"})), "jobs[0].environment"),
    (batch(ok_job(files=[in_file("a"), in_file("a")])), "jobs[0].files[1].lfn"),
    (batch(ok_job(files=[in_file("")])), "jobs[0].files[0].lfn"),
    (batch(ok_job(files=[in_file("l" * 256)])), "jobs[0].files[0].lfn"),
    (batch(ok_job(files=[J.File(lfn="a")])), "jobs[0].files[0].type"),
    (batch(ok_job(files=[in_file(adler32="12345")])), "jobs[0].files[0].adler32"),
    (batch(ok_job(files=[in_file(adler32="zzzzzzzz")])), "jobs[0].files[0].adler32"),
    (batch(ok_job(files=[in_file(size=-1)])), "jobs[0].files[0].size"),
    (batch(ok_job(), request_id="r" * 129), "request_id"),
]


@pytest.fixture
def sub(dispatcher: RunningDispatcher) -> Iterator[submission_pb2_grpc.SubmissionServiceStub]:
    with grpc.insecure_channel(dispatcher.address) as ch:
        yield submission_pb2_grpc.SubmissionServiceStub(ch)


def expect_error(call: Callable[[], Any], code: grpc.StatusCode, field: str) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    err = info.value
    assert err.code() == code, err.details()
    assert ("ailuro-field", field) in tuple(err.trailing_metadata())
    assert field in err.details()
    return err


@pytest.mark.parametrize(("req", "field"), BAD_SUBMITS, ids=[f for _, f in BAD_SUBMITS])
def test_bad_submit_is_invalid_argument_and_stores_nothing(sub: Any, req: Any, field: str) -> None:
    expect_error(lambda: sub.SubmitJobs(req), C.INVALID_ARGUMENT, field)
    assert sub.ListJobs(S.ListJobsRequest()).total == 0


def test_maximum_batch_is_accepted(sub: Any) -> None:
    ids = sub.SubmitJobs(batch(*[ok_job(files=[in_file("a"), in_file("b")]) for _ in range(5000)])).panda_ids
    assert len(ids) == len(set(ids)) == 5000
    assert sub.ListJobs(S.ListJobsRequest(page_size=1)).total == 5000


BAD_READS = [
    ("GetJobs", S.GetJobsRequest(), C.INVALID_ARGUMENT, "panda_ids"),
    ("GetJobs", S.GetJobsRequest(panda_ids=[0]), C.INVALID_ARGUMENT, "panda_ids[0]"),
    ("GetJobs", S.GetJobsRequest(panda_ids=[1] * 5001), C.INVALID_ARGUMENT, "panda_ids"),
    ("GetJobs", S.GetJobsRequest(panda_ids=[123456]), C.NOT_FOUND, "panda_ids[0]"),
    ("KillJobs", S.KillJobsRequest(), C.INVALID_ARGUMENT, "panda_ids"),
    ("KillJobs", S.KillJobsRequest(panda_ids=[-3]), C.INVALID_ARGUMENT, "panda_ids[0]"),
    ("KillJobs", S.KillJobsRequest(panda_ids=[123456]), C.NOT_FOUND, "panda_ids[0]"),
    ("RetryJobs", S.RetryJobsRequest(), C.INVALID_ARGUMENT, "panda_ids"),
    ("RetryJobs", S.RetryJobsRequest(panda_ids=[123456]), C.NOT_FOUND, "panda_ids[0]"),
    ("GetJobEvents", S.GetJobEventsRequest(), C.INVALID_ARGUMENT, "panda_id"),
    ("GetJobEvents", S.GetJobEventsRequest(panda_id=123456), C.NOT_FOUND, "panda_id"),
    ("ListJobs", S.ListJobsRequest(page_size=-1), C.INVALID_ARGUMENT, "page_size"),
    ("ListJobs", S.ListJobsRequest(page_size=5001), C.INVALID_ARGUMENT, "page_size"),
    ("ListJobs", S.ListJobsRequest(page_token="not-a-token"), C.INVALID_ARGUMENT, "page_token"),
    ("ListJobs", S.ListJobsRequest(page_token="djE6LTE="), C.INVALID_ARGUMENT, "page_token"),  # "v1:-1"
    ("ListJobs", S.ListJobsRequest(statuses=[0]), C.INVALID_ARGUMENT, "statuses[0]"),
    ("ListJobs", S.ListJobsRequest(owner="o" * 256), C.INVALID_ARGUMENT, "owner"),
    ("ListJobs", S.ListJobsRequest(task_id=-1), C.INVALID_ARGUMENT, "task_id"),
]


@pytest.mark.parametrize(
    ("method", "req", "code", "field"), BAD_READS, ids=[f"{m}-{f}-{c.name}" for m, _, c, f in BAD_READS]
)
def test_bad_requests_of_other_calls(sub: Any, method: str, req: Any, code: grpc.StatusCode, field: str) -> None:
    expect_error(lambda: getattr(sub, method)(req), code, field)


def test_kill_with_one_unknown_id_changes_nothing(sub: Any) -> None:
    (pid,) = sub.SubmitJobs(batch(ok_job())).panda_ids
    expect_error(lambda: sub.KillJobs(S.KillJobsRequest(panda_ids=[pid, pid + 1000])), C.NOT_FOUND, "panda_ids[1]")
    assert sub.GetJobs(S.GetJobsRequest(panda_ids=[pid])).jobs[0].status == J.JOB_STATUS_ACTIVATED
    expect_error(
        lambda: sub.KillJobs(S.KillJobsRequest(panda_ids=[pid], reason="r" * 1001)), C.INVALID_ARGUMENT, "reason"
    )


QUEUES = (
    QueueConfig(name="COMPASS_A", vos=("compass",), max_running=10),
    QueueConfig(name="COMPASS_B", vos=("compass",), labels=("managed", "user"), max_running=10),
    QueueConfig(name="TEST_ONLY", labels=("test",)),
    QueueConfig(name="OFF", enabled=False),
)


@pytest.fixture
def multi(make_dispatcher: Callable[..., RunningDispatcher]) -> Iterator[submission_pb2_grpc.SubmissionServiceStub]:
    d = make_dispatcher(queues=QUEUES)
    with grpc.insecure_channel(d.address) as ch:
        yield submission_pb2_grpc.SubmissionServiceStub(ch)


def test_brokerage_spreads_by_load_and_records_why(multi: Any) -> None:
    ids = multi.SubmitJobs(batch(*[ok_job(vo="compass") for _ in range(6)])).panda_ids
    jobs = multi.GetJobs(S.GetJobsRequest(panda_ids=ids)).jobs
    sites = [j.computing_site for j in jobs]
    assert sites.count("COMPASS_A") == sites.count("COMPASS_B") == 3
    assert all("lowest load among 2 queue(s)" in j.brokerage_reason for j in jobs)
    (t,) = multi.SubmitJobs(batch(ok_job(vo="amber", prod_source_label="test"))).panda_ids
    assert multi.GetJobs(S.GetJobsRequest(panda_ids=[t])).jobs[0].computing_site == "TEST_ONLY"
    (explicit,) = multi.SubmitJobs(batch(ok_job(vo="compass", computing_site="COMPASS_B"))).panda_ids
    got = multi.GetJobs(S.GetJobsRequest(panda_ids=[explicit])).jobs[0]
    assert (got.computing_site, got.brokerage_reason) == ("COMPASS_B", "computing_site chosen by the submitter")
    queues = {q.name: q for q in multi.ListQueues(S.ListQueuesRequest()).queues}
    assert dict(queues["COMPASS_B"].status_counts) == {"activated": 4} and not queues["OFF"].enabled


def test_brokerage_rejects_jobs_no_queue_serves(multi: Any) -> None:
    err = expect_error(
        lambda: multi.SubmitJobs(batch(ok_job(vo="compass"), ok_job(vo="amber"))), C.INVALID_ARGUMENT, "jobs[1].vo"
    )
    assert "'amber'" in err.details() and "'user'" in err.details()
    expect_error(
        lambda: multi.SubmitJobs(batch(ok_job(vo="amber", computing_site="COMPASS_A"))),
        C.INVALID_ARGUMENT,
        "jobs[0].computing_site",
    )
    expect_error(
        lambda: multi.SubmitJobs(batch(ok_job(computing_site="OFF"))), C.INVALID_ARGUMENT, "jobs[0].computing_site"
    )
    assert multi.ListJobs(S.ListJobsRequest()).total == 0
