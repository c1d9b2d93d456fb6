"""dispatcher.validation: each bad input raises InvalidArgument naming the field; good input passes."""

from __future__ import annotations

from typing import Any

import pytest

from ailuro.errors import InvalidArgument
from ailuro.v1 import factory_pb2, job_pb2, pilot_pb2, submission_pb2
from dispatcher import validation as v
from dispatcher.identity import Identity, identity_from_metadata
from dispatcher.services.submission import fingerprint, normalize

J = job_pb2
S = submission_pb2
P = pilot_pb2
SITES = {"LOCAL", "CERN"}


def job(**kw: Any) -> job_pb2.Job:
    kw.setdefault("transformation", "run.sh")
    return J.Job(**kw)


def f(lfn: str = "a.root", **kw: Any) -> job_pb2.File:
    kw.setdefault("type", J.FILE_TYPE_INPUT)
    return J.File(lfn=lfn, **kw)


def field_of(fn: Any, *args: Any, **kwargs: Any) -> str | None:
    with pytest.raises(InvalidArgument) as info:
        fn(*args, **kwargs)
    assert info.value.field and info.value.field in str(info.value)
    return info.value.field


SUBMIT_CASES = [
    ([], "", "jobs"),
    ([job()] * 5001, "", "jobs"),
    ([job(), job(), job(), job(transformation="")], "", "jobs[3].transformation"),
    ([job(transformation="x" * 4097)], "", "jobs[0].transformation"),
    ([job(transformation="a\x00b")], "", "jobs[0].transformation"),
    ([job(job_parameters="p" * 65537)], "", "jobs[0].job_parameters"),
    ([job(job_name="n" * 256)], "", "jobs[0].job_name"),
    ([job(prod_source_label="l" * 256)], "", "jobs[0].prod_source_label"),
    ([job(destination_se="s" * 256)], "", "jobs[0].destination_se"),
    ([job(computing_site="MARS")], "", "jobs[0].computing_site"),
    ([job(current_priority=-1)], "", "jobs[0].current_priority"),
    ([job(job_definition_id=-1)], "", "jobs[0].job_definition_id"),
    ([job(task_id=-1)], "", "jobs[0].task_id"),
    ([job(max_attempt=101)], "", "jobs[0].max_attempt"),
    ([job(max_attempt=-1)], "", "jobs[0].max_attempt"),
    ([job(cores=-1)], "", "jobs[0].cores"),
    ([job(memory_mb=-1)], "", "jobs[0].memory_mb"),
    ([job(max_walltime_s=-1)], "", "jobs[0].max_walltime_s"),
    ([job(environment={f"V{i}": "x" for i in range(257)})], "", "jobs[0].environment"),
    ([job(environment={"A-B": "x"})], "", "jobs[0].environment"),
    ([job(environment={"A": "x" * 4097})], "", "jobs[0].environment[A]"),
    ([job(files=[f()] * 5001)], "", "jobs[0].files"),
    ([job(files=[f("a"), f("b"), f("a")])], "", "jobs[0].files[2].lfn"),
    ([job(files=[f("")])], "", "jobs[0].files[0].lfn"),
    ([job(files=[f("dir/a")])], "", "jobs[0].files[0].lfn"),
    ([job(files=[f(type=J.FILE_TYPE_UNSPECIFIED)])], "", "jobs[0].files[0].type"),
    ([job(files=[f(type=7)])], "", "jobs[0].files[0].type"),
    ([job(files=[f(adler32="abc")])], "", "jobs[0].files[0].adler32"),
    ([job(files=[f(adler32="0x123456")])], "", "jobs[0].files[0].adler32"),
    ([job(files=[f(size=-1)])], "", "jobs[0].files[0].size"),
    ([job(files=[f(dataset="d" * 256)])], "", "jobs[0].files[0].dataset"),
    ([job()], "r" * 129, "request_id"),
]


@pytest.mark.parametrize(("jobs", "request_id", "field"), SUBMIT_CASES, ids=[c[2] for c in SUBMIT_CASES])
def test_bad_submit(jobs: list[job_pb2.Job], request_id: str, field: str) -> None:
    req = S.SubmitJobsRequest(jobs=jobs, request_id=request_id)
    assert field_of(v.validate_submit, req, known_sites=SITES) == field


def test_good_submit_passes() -> None:
    req = S.SubmitJobsRequest(
        request_id="r" * 128,
        jobs=[
            job(
                computing_site="CERN",
                max_attempt=100,
                environment={"_X1": "y"},
                files=[f(adler32="0A1b2C3d", size=10), f("o", type=J.FILE_TYPE_OUTPUT), f("l", type=J.FILE_TYPE_LOG)],
            )
        ]
        * 5000,
    )
    v.validate_submit(req, known_sites=SITES)


def test_ids_and_kill() -> None:
    assert field_of(v.validate_ids, []) == "panda_ids"
    assert field_of(v.validate_ids, [1, 0]) == "panda_ids[1]"
    assert field_of(v.validate_ids, [1] * 5001) == "panda_ids"
    assert field_of(v.validate_kill, S.KillJobsRequest(panda_ids=[1], reason="r" * 1001)) == "reason"
    v.validate_kill(S.KillJobsRequest(panda_ids=[1] * 5000, reason="r" * 1000))


def test_page_tokens_round_trip_and_reject_garbage() -> None:
    assert v.decode_page_token(v.encode_page_token(12345)) == 12345
    assert v.decode_page_token("") is None
    for bad in ("garbage!", "djI6MTA=", "djE6YWJj", "djE6MA==", "\u00e9"):  # v2:10, v1:abc, v1:0
        assert field_of(v.decode_page_token, bad) == "page_token"


@pytest.mark.parametrize(
    ("req", "field"),
    [
        (S.ListJobsRequest(page_size=-1), "page_size"),
        (S.ListJobsRequest(page_size=5001), "page_size"),
        (S.ListJobsRequest(page_token="x"), "page_token"),
        (S.ListJobsRequest(statuses=[J.JOB_STATUS_RUNNING, 0]), "statuses[1]"),
        (S.ListJobsRequest(task_id=-1), "task_id"),
        (S.ListJobsRequest(computing_site="c" * 256), "computing_site"),
        (S.ListJobsRequest(since={"seconds": 10}, until={"seconds": 5}), "until"),
    ],
)
def test_bad_list(req: S.ListJobsRequest, field: str) -> None:
    assert field_of(v.validate_list, req) == field


def test_list_defaults() -> None:
    assert v.validate_list(S.ListJobsRequest()) == (100, None)
    assert v.validate_list(S.ListJobsRequest(page_size=5000, page_token=v.encode_page_token(9))) == (5000, 9)


@pytest.mark.parametrize(
    ("hello", "field"),
    [
        (P.Hello(queue="LOCAL"), "hello.pilot_id"),
        (P.Hello(pilot_id="p"), "hello.queue"),
        (P.Hello(pilot_id="p", queue="MARS"), "hello.queue"),
        (P.Hello(pilot_id="p", queue="LOCAL", node="n" * 256), "hello.node"),
        (P.Hello(pilot_id="p", queue="LOCAL", memory_mb=-1), "hello.memory_mb"),
        (P.Hello(pilot_id="p", queue="LOCAL", held_jobs=[P.HeldJob(panda_id=0)]), "hello.held_jobs[0].panda_id"),
    ],
)
def test_bad_hello(hello: P.Hello, field: str) -> None:
    assert field_of(v.validate_hello, hello, known_queues=SITES) == field


def test_job_request_n_bounds() -> None:
    for n in (0, -1, 101):
        assert field_of(v.validate_job_request_n, n, "job_request.n") == "job_request.n"
    v.validate_job_request_n(1, "n")
    v.validate_job_request_n(100, "n")
    assert (
        field_of(v.validate_get_job, P.GetJobRequest(pilot=P.Hello(pilot_id="p", queue="LOCAL")), known_queues=SITES)
        == "n"
    )
    assert field_of(v.validate_update_job, P.UpdateJobRequest()) == "pilot_id"


def test_heartbeat_and_final_problems() -> None:
    assert v.heartbeat_problem(P.Heartbeat(panda_id=1, lease_epoch=1, status=J.JOB_STATUS_RUNNING)) is None
    assert "positive" in v.heartbeat_problem(P.Heartbeat(panda_id=0, status=J.JOB_STATUS_RUNNING))
    assert "not a job status" in v.heartbeat_problem(P.Heartbeat(panda_id=1))
    assert "finished" in v.heartbeat_problem(P.Heartbeat(panda_id=1, status=J.JOB_STATUS_FINISHED))
    assert v.final_problem(P.JobFinal(panda_id=1, status=J.JOB_STATUS_FAILED)) is None
    assert "running" in v.final_problem(P.JobFinal(panda_id=1, status=J.JOB_STATUS_RUNNING))
    bad_file = P.JobFinal(
        panda_id=1, status=J.JOB_STATUS_FINISHED, files=[J.File(lfn="o", type=J.FILE_TYPE_OUTPUT, adler32="q")]
    )
    assert "adler32" in v.final_problem(bad_file)
    no_comp = P.JobFinal(panda_id=1, status=J.JOB_STATUS_FAILED, errors=[J.JobError(code=1)])
    assert "component" in v.final_problem(no_comp)


def test_factory_requests() -> None:
    F = factory_pb2
    assert field_of(v.validate_register_workers, F.RegisterWorkersRequest(), known_queues=SITES) == "workers"
    w = F.Worker(worker_id="w", queue="LOCAL")
    assert field_of(v.validate_register_workers, F.RegisterWorkersRequest(workers=[w, w]), known_queues=SITES) == (
        "workers[1].worker_id"
    )
    bad_state = F.Worker(worker_id="w", queue="LOCAL", state=42)
    assert field_of(v.validate_register_workers, F.RegisterWorkersRequest(workers=[bad_state]), known_queues=SITES) == (
        "workers[0].state"
    )
    assert field_of(v.validate_update_workers, F.UpdateWorkersRequest(updates=[F.WorkerUpdate(worker_id="w")])) == (
        "updates[0].state"
    )
    assert v.validate_list_workers(F.ListWorkersRequest()) == 1000
    assert field_of(v.validate_list_workers, F.ListWorkersRequest(limit=100_001)) == "limit"
    assert field_of(v.validate_queue_stats, F.GetQueueStatsRequest(queues=["LOCAL", "X"]), known_queues=SITES) == (
        "queues[1]"
    )


def test_normalize_applies_defaults_and_clears_server_fields() -> None:
    raw = job(panda_id=5, status=J.JOB_STATUS_RUNNING, owner="mallory", attempt_nr=9, files=[f(adler32="ABCDEF01")])
    out = normalize(raw, Identity(name="alice", vo="compass"))
    assert (out.panda_id, out.status, out.owner, out.attempt_nr) == (0, 0, "", 0)
    assert (out.vo, out.prod_source_label, out.max_attempt, out.cores) == ("compass", "user", 3, 1)
    assert out.files[0].adler32 == "abcdef01" and out.files[0].guid
    assert normalize(job(), Identity()).vo == "default"
    assert raw.panda_id == 5  # the request itself is untouched


def test_fingerprint_depends_on_jobs_only() -> None:
    a = S.SubmitJobsRequest(request_id="x", jobs=[job(job_name="a")])
    b = S.SubmitJobsRequest(request_id="y", jobs=[job(job_name="a")])
    c = S.SubmitJobsRequest(request_id="x", jobs=[job(job_name="b")])
    assert fingerprint(a) == fingerprint(b) != fingerprint(c)


def test_identity_from_metadata() -> None:
    assert identity_from_metadata(None) == Identity(name="anonymous", vo="", roles=())
    got = identity_from_metadata(
        [("ailuro-user", "jdoe"), ("ailuro-vo", "compass"), ("ailuro-roles", "user, production,")]
    )
    assert got == Identity(name="jdoe", vo="compass", roles=("user", "production"))
    assert identity_from_metadata([("ailuro-user", b"bytes")]).name == "bytes"
