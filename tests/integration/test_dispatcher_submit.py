"""SubmissionService through real gRPC stubs against an in-process dispatcher, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from ailuro.v1 import job_pb2, submission_pb2, submission_pb2_grpc
from dispatcher.server import RunningDispatcher

J = job_pb2
S = submission_pb2


@pytest.fixture
def sub(dispatcher: RunningDispatcher) -> Iterator[submission_pb2_grpc.SubmissionServiceStub]:
    with grpc.insecure_channel(dispatcher.address) as ch:
        yield submission_pb2_grpc.SubmissionServiceStub(ch)


def job(**kw: Any) -> job_pb2.Job:
    kw.setdefault("transformation", "/bin/echo")
    return J.Job(**kw)


def as_user(name: str, vo: str = "") -> tuple[tuple[str, str], ...]:
    md = [("ailuro-user", name)]
    if vo:
        md.append(("ailuro-vo", vo))
    return tuple(md)


def test_submit_then_get_returns_definition_and_server_fields(sub: Any) -> None:
    sent = job(
        job_name="j1",
        job_parameters="-n 3",
        environment={"A": "1"},
        current_priority=7,
        task_id=42,
        files=[
            J.File(lfn="in.root", type=J.FILE_TYPE_INPUT, adler32="0A0B0C0D", size=5),
            J.File(lfn="out.root", type=J.FILE_TYPE_OUTPUT),
        ],
        panda_id=999,  # server-owned: ignored
        status=J.JOB_STATUS_FINISHED,  # server-owned: ignored
    )
    resp = sub.SubmitJobs(S.SubmitJobsRequest(jobs=[sent]), metadata=as_user("alice", "compass"))
    assert len(resp.panda_ids) == 1 and not resp.replayed
    (got,) = sub.GetJobs(S.GetJobsRequest(panda_ids=resp.panda_ids)).jobs
    assert got.panda_id == resp.panda_ids[0] != 999
    assert got.status == J.JOB_STATUS_ACTIVATED
    assert (got.owner, got.vo, got.prod_source_label) == ("alice", "compass", "user")
    assert (got.job_name, got.job_parameters, dict(got.environment)) == ("j1", "-n 3", {"A": "1"})
    assert (got.current_priority, got.task_id, got.max_attempt, got.attempt_nr, got.cores) == (7, 42, 3, 1, 1)
    assert got.computing_site == "LOCAL" and "lowest load" in got.brokerage_reason
    assert [f.lfn for f in got.files] == ["in.root", "out.root"]
    assert got.files[0].adler32 == "0a0b0c0d" and all(f.guid for f in got.files)
    assert got.HasField("creation_time")
    events = sub.GetJobEvents(S.GetJobEventsRequest(panda_id=got.panda_id)).events
    assert [(e.from_status, e.to_status) for e in events] == [
        (J.JOB_STATUS_UNSPECIFIED, J.JOB_STATUS_DEFINED),
        (J.JOB_STATUS_DEFINED, J.JOB_STATUS_ACTIVATED),
    ]
    assert events[0].actor == "alice" and events[0].event_id < events[1].event_id


def test_anonymous_identity_and_default_vo(sub: Any) -> None:
    pid = sub.SubmitJobs(S.SubmitJobsRequest(jobs=[job()])).panda_ids[0]
    got = sub.GetJobs(S.GetJobsRequest(panda_ids=[pid])).jobs[0]
    assert (got.owner, got.vo) == ("anonymous", "default")


def test_get_jobs_keeps_request_order_and_serves_repeats_once(sub: Any) -> None:
    # issue 12 (finding 4): a repeated id is answered once, so repeats cannot amplify the response
    ids = list(sub.SubmitJobs(S.SubmitJobsRequest(jobs=[job(job_name=f"n{i}") for i in range(3)])).panda_ids)
    got = sub.GetJobs(S.GetJobsRequest(panda_ids=[ids[2], ids[0], ids[2]])).jobs
    assert [j.job_name for j in got] == ["n2", "n0"]


def test_idempotent_submit_replays_same_ids(sub: Any) -> None:
    req = S.SubmitJobsRequest(request_id="req-1", jobs=[job(job_name="a"), job(job_name="b")])
    first = sub.SubmitJobs(req, metadata=as_user("bob"))
    again = sub.SubmitJobs(req, metadata=as_user("bob"))
    assert list(again.panda_ids) == list(first.panda_ids) and again.replayed and not first.replayed
    assert sub.ListJobs(S.ListJobsRequest(owner="bob")).total == 2
    # the same request id from another identity is another request
    other = sub.SubmitJobs(req, metadata=as_user("carol"))
    assert not other.replayed and set(other.panda_ids).isdisjoint(first.panda_ids)


def test_reused_request_id_with_other_payload_is_already_exists(sub: Any) -> None:
    sub.SubmitJobs(S.SubmitJobsRequest(request_id="req-2", jobs=[job(job_name="a")]))
    with pytest.raises(grpc.RpcError) as info:
        sub.SubmitJobs(S.SubmitJobsRequest(request_id="req-2", jobs=[job(job_name="different")]))
    assert info.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert ("ailuro-field", "request_id") in tuple(info.value.trailing_metadata())


def test_list_filters_pagination_and_counts(sub: Any) -> None:
    ids = []
    for i in range(7):
        md = as_user("dave" if i % 2 else "erin")
        j = job(job_name=f"l{i}", task_id=100 + i % 3, prod_source_label="managed" if i < 2 else "user")
        ids += sub.SubmitJobs(S.SubmitJobsRequest(jobs=[j]), metadata=md).panda_ids
    sub.KillJobs(S.KillJobsRequest(panda_ids=[ids[0]]))
    page1 = sub.ListJobs(S.ListJobsRequest(page_size=3))
    assert [j.panda_id for j in page1.jobs] == ids[::-1][:3]
    assert page1.total == 7 and dict(page1.status_counts) == {"activated": 6, "cancelled": 1}
    page2 = sub.ListJobs(S.ListJobsRequest(page_size=3, page_token=page1.next_page_token))
    page3 = sub.ListJobs(S.ListJobsRequest(page_size=3, page_token=page2.next_page_token))
    assert [j.panda_id for j in [*page1.jobs, *page2.jobs, *page3.jobs]] == ids[::-1]
    assert page3.next_page_token == ""
    assert not page1.jobs[0].files
    assert {j.owner for j in sub.ListJobs(S.ListJobsRequest(owner="dave")).jobs} == {"dave"}
    assert sub.ListJobs(S.ListJobsRequest(task_id=101)).total == 2
    assert sub.ListJobs(S.ListJobsRequest(prod_source_label="managed")).total == 2
    assert sub.ListJobs(S.ListJobsRequest(statuses=[J.JOB_STATUS_CANCELLED])).jobs[0].panda_id == ids[0]
    assert sub.ListJobs(S.ListJobsRequest(job_name="l3")).jobs[0].panda_id == ids[3]
    assert sub.ListJobs(S.ListJobsRequest(computing_site="LOCAL", vo="default", transformation="/bin/echo")).total == 7
    assert sub.ListJobs(S.ListJobsRequest(computing_site="NOPE")).total == 0
    future = Timestamp(seconds=4_000_000_000)
    assert sub.ListJobs(S.ListJobsRequest(since=future)).total == 0
    assert sub.ListJobs(S.ListJobsRequest(until=future)).total == 7
    with_files = sub.ListJobs(S.ListJobsRequest(with_files=True, page_size=1))
    assert with_files.jobs[0].panda_id == ids[-1]


def test_kill_queued_jobs_cancels_at_once_and_final_jobs_are_not_accepted(sub: Any) -> None:
    ids = list(sub.SubmitJobs(S.SubmitJobsRequest(jobs=[job(), job()])).panda_ids)
    res = sub.KillJobs(S.KillJobsRequest(panda_ids=ids, reason="oops"), metadata=as_user("frank")).results
    assert [(r.panda_id, r.status, r.accepted) for r in res] == [(i, J.JOB_STATUS_CANCELLED, True) for i in ids]
    got = sub.GetJobs(S.GetJobsRequest(panda_ids=ids[:1])).jobs[0]
    assert got.status == J.JOB_STATUS_CANCELLED and got.HasField("end_time")
    assert (got.errors[0].component, got.errors[0].code) == (J.ERROR_COMPONENT_DISPATCHER, 1144)
    assert got.errors[0].diag == "killed by frank: oops"
    again = sub.KillJobs(S.KillJobsRequest(panda_ids=ids[:1])).results[0]
    assert not again.accepted and again.status == J.JOB_STATUS_CANCELLED and "already cancelled" in again.message
    last = sub.GetJobEvents(S.GetJobEventsRequest(panda_id=ids[0])).events[-1]
    assert (last.to_status, last.actor) == (J.JOB_STATUS_CANCELLED, "frank")


def test_retry_creates_new_jobs_from_final_ones(sub: Any) -> None:
    ids = list(
        sub.SubmitJobs(
            S.SubmitJobsRequest(jobs=[job(job_name="r", files=[J.File(lfn="x", type=J.FILE_TYPE_INPUT)])])
        ).panda_ids
    )
    with pytest.raises(grpc.RpcError) as info:
        sub.RetryJobs(S.RetryJobsRequest(panda_ids=ids))
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert ("ailuro-field", "panda_ids[0]") in tuple(info.value.trailing_metadata())
    sub.KillJobs(S.KillJobsRequest(panda_ids=ids))
    new = sub.RetryJobs(S.RetryJobsRequest(panda_ids=ids)).new_panda_ids
    assert len(new) == 1 and new[0] != ids[0]
    got = sub.GetJobs(S.GetJobsRequest(panda_ids=new)).jobs[0]
    assert (got.parent_panda_id, got.attempt_nr, got.status, got.job_name) == (ids[0], 1, J.JOB_STATUS_ACTIVATED, "r")
    assert [f.lfn for f in got.files] == ["x"]
    assert sub.GetJobs(S.GetJobsRequest(panda_ids=ids)).jobs[0].status == J.JOB_STATUS_CANCELLED


def test_list_queues_reports_counts(sub: Any) -> None:
    sub.SubmitJobs(S.SubmitJobsRequest(jobs=[job(), job()]))
    (q,) = sub.ListQueues(S.ListQueuesRequest()).queues
    assert q.name == "LOCAL" and q.enabled and dict(q.status_counts) == {"activated": 2}
    assert q.connected_pilots == 0


def test_concurrent_identical_submits_through_two_dispatchers_create_one_batch(
    make_dispatcher: Callable[..., RunningDispatcher],
) -> None:
    d1, d2 = make_dispatcher(), make_dispatcher()
    req = S.SubmitJobsRequest(request_id="race", jobs=[job(job_name=f"r{i}") for i in range(200)])
    barrier = threading.Barrier(8)

    def submit(address: str) -> S.SubmitJobsResponse:
        with grpc.insecure_channel(address) as ch:
            stub = submission_pb2_grpc.SubmissionServiceStub(ch)
            barrier.wait(10)
            return stub.SubmitJobs(req, timeout=60)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(submit, [d1.address, d2.address] * 4))
    assert len({tuple(r.panda_ids) for r in results}) == 1
    assert sum(not r.replayed for r in results) == 1
    with grpc.insecure_channel(d1.address) as ch:
        assert submission_pb2_grpc.SubmissionServiceStub(ch).ListJobs(S.ListJobsRequest()).total == 200


def test_database_outage_is_unavailable(pg_url: str) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from dispatcher.auth.config import TRUSTED_METADATA_MODE, AuthConfig
    from dispatcher.config import DispatcherConfig
    from dispatcher.server import run_in_thread

    dev = AuthConfig(mode=TRUSTED_METADATA_MODE)  # about outages: the loopback dev mode
    config = DispatcherConfig(db_url=pg_url, port=0, db_threads=2, grace_s=0.5, auth=dev)
    with run_in_thread(config) as d, grpc.insecure_channel(d.address) as ch:
        stub = submission_pb2_grpc.SubmissionServiceStub(ch)
        stub.SubmitJobs(S.SubmitJobsRequest(jobs=[job()]))
        url = make_url(pg_url)
        admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE "{url.database}" WITH (FORCE)'))
        admin.dispose()
        for call in (
            lambda: stub.ListJobs(S.ListJobsRequest()),
            lambda: stub.SubmitJobs(S.SubmitJobsRequest(jobs=[job()])),
        ):
            with pytest.raises(grpc.RpcError) as info:
                call()
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE, info.value.details()
