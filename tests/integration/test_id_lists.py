"""Id-list RPCs deduplicate and cap their ids (issue 12, finding 4: memory amplification)."""

from __future__ import annotations

import grpc
import pytest

from ailuro import Client
from ailuro.v1 import job_pb2, submission_pb2, submission_pb2_grpc
from dispatcher.server import RunningDispatcher
from dispatcher.validation import MAX_BATCH


def _stub(d: RunningDispatcher) -> tuple[grpc.Channel, submission_pb2_grpc.SubmissionServiceStub]:
    channel = grpc.insecure_channel(d.address)
    return channel, submission_pb2_grpc.SubmissionServiceStub(channel)


def test_get_jobs_returns_each_job_once_however_often_it_is_named(dispatcher: RunningDispatcher) -> None:
    big = job_pb2.Job(transformation="/bin/true", job_parameters="x" * 60_000, computing_site="LOCAL")
    with Client(dispatcher.address) as client:
        a, b = client.submit([big, job_pb2.Job(transformation="/bin/true", computing_site="LOCAL")])
        # the SDK still answers one job per requested id, asking the server for each once
        assert [j.panda_id for j in client.get([a, b, a, a])] == [a, b, a, a]
    channel, stub = _stub(dispatcher)
    with channel:
        many = stub.GetJobs(submission_pb2.GetJobsRequest(panda_ids=[a] * MAX_BATCH), timeout=30)
        assert [j.panda_id for j in many.jobs] == [a]  # not 5,000 copies of a 60 KB job
        assert [j.panda_id for j in stub.GetJobs(submission_pb2.GetJobsRequest(panda_ids=[b, a, b, a])).jobs] == [b, a]
        with pytest.raises(grpc.RpcError) as info:
            stub.GetJobs(submission_pb2.GetJobsRequest(panda_ids=[a] * (MAX_BATCH + 1)))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "panda_ids" in info.value.details() and f"limit is {MAX_BATCH}" in info.value.details()
        with pytest.raises(grpc.RpcError) as unknown:
            stub.GetJobs(submission_pb2.GetJobsRequest(panda_ids=[a, a, b, 10**12]))
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
        assert unknown.value.details().startswith("panda_ids[3]:")  # the index in the request as sent


def test_retry_of_a_repeated_id_resubmits_the_job_once(dispatcher: RunningDispatcher) -> None:
    with Client(dispatcher.address) as client:
        (job,) = client.submit([job_pb2.Job(transformation="/bin/true", computing_site="LOCAL")])
        client.kill([job])
        new = client.retry([job, job, job])
        assert len(new) == 3 and len(set(new)) == 1 and new[0] != job
        page = client.list_page(page_size=10)
        assert sorted(j.panda_id for j in page.jobs) == sorted({job, new[0]})
