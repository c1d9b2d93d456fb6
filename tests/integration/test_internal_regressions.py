"""Finding 10 of issue #12 through real gRPC: inputs that used to end as INTERNAL, on SQLite and PostgreSQL.

The property suite (``tests/property``) found these; each is pinned here with the exact input.
"""

from __future__ import annotations

import base64
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from ailuro.errors import FIELD_METADATA_KEY
from ailuro.v1 import factory_pb2, factory_pb2_grpc, submission_pb2, submission_pb2_grpc


def _token(body: str) -> str:
    return base64.urlsafe_b64encode(body.encode()).decode()


def _invalid_field(call: Any, request: Any) -> str:
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
    return dict(info.value.trailing_metadata() or ()).get(FIELD_METADATA_KEY, "")


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (submission_pb2.ListJobsRequest(page_token=_token("v1:" + "9" * 30)), "page_token"),
        (submission_pb2.ListJobsRequest(page_token=_token(f"v1:{2**63}")), "page_token"),
        (submission_pb2.ListJobsRequest(since=Timestamp(seconds=-62135596801)), "since.seconds"),
        (submission_pb2.ListJobsRequest(until=Timestamp(seconds=10**15)), "until.seconds"),
        (submission_pb2.ListJobsRequest(since=Timestamp(seconds=1, nanos=-1)), "since.nanos"),
    ],
    ids=["token-30-digits", "token-2^63", "since-year-0", "until-1e15", "since-negative-nanos"],
)
def test_list_jobs_bad_token_or_time_is_invalid_argument(dispatcher: Any, request_: Any, field: str) -> None:
    with grpc.insecure_channel(dispatcher.address) as channel:
        stub = submission_pb2_grpc.SubmissionServiceStub(channel)
        assert _invalid_field(stub.ListJobs, request_) == field
        stub.ListJobs(submission_pb2.ListJobsRequest(page_size=1), timeout=30)  # still serving


def test_register_worker_with_invalid_submit_time_is_invalid_argument(dispatcher: Any) -> None:
    w = factory_pb2.Worker(worker_id="w1", queue="LOCAL", submit_time=Timestamp(seconds=10**15))
    with grpc.insecure_channel(dispatcher.address) as channel:
        stub = factory_pb2_grpc.FactoryServiceStub(channel)
        field = _invalid_field(stub.RegisterWorkers, factory_pb2.RegisterWorkersRequest(workers=[w]))
        assert field == "workers[0].submit_time.seconds"
        assert not stub.ListWorkers(factory_pb2.ListWorkersRequest(), timeout=30).workers  # nothing stored


def test_queue_stats_answer_each_queue_once(dispatcher: Any) -> None:
    """20,000 copies of one queue name got 20,000 entries back (past the client's 4 MiB: RESOURCE_EXHAUSTED)."""
    with grpc.insecure_channel(dispatcher.address) as channel:
        stub = factory_pb2_grpc.FactoryServiceStub(channel)
        resp = stub.GetQueueStats(factory_pb2.GetQueueStatsRequest(queues=["LOCAL"] * 20_000), timeout=30)
        assert [q.queue for q in resp.queues] == ["LOCAL"]


def test_nan_metrics_in_a_final_are_not_internal(tmp_path: Any, raw_pilot: Any) -> None:
    """Found by tests/property (pilot sessions): a final with cpu_time_s NaN closed the stream with INTERNAL."""
    from ailuro.v1 import job_pb2
    from dispatcher.auth.config import TRUSTED_METADATA_MODE, AuthConfig
    from dispatcher.config import DispatcherConfig
    from dispatcher.server import run_in_thread

    dev = AuthConfig(mode=TRUSTED_METADATA_MODE)  # about reports, not identity: the loopback dev mode
    with run_in_thread(DispatcherConfig(db_url=f"sqlite:///{tmp_path / 'nan.db'}", port=0, auth=dev)) as d:
        with grpc.insecure_channel(d.address) as channel:
            stub = submission_pb2_grpc.SubmissionServiceStub(channel)
            job = job_pb2.Job(transformation="/bin/true", computing_site="LOCAL")
            stub.SubmitJobs(submission_pb2.SubmitJobsRequest(jobs=[job]), timeout=30)
        pilot = raw_pilot(d.address, pilot_id="nan-pilot")
        pilot.request(1)
        a = pilot.expect("assignment")
        pilot.final(
            a.job.panda_id,
            a.lease_epoch,
            job_pb2.JOB_STATUS_FINISHED,
            metrics=job_pb2.JobMetrics(cpu_time_s=float("nan")),
        )
        ack = pilot.ack_for(a.job.panda_id, final=True)  # the stream ended with INTERNAL instead
        assert ack.result != 0
