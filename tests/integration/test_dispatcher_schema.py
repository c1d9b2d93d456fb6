"""The Alembic migrations create exactly the schema the code declares, and strings up to the
validation limits fit their columns on both databases."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from ailuro.v1 import (
    factory_pb2,
    factory_pb2_grpc,
    job_pb2,
    pilot_pb2,
    pilot_pb2_grpc,
    submission_pb2,
    submission_pb2_grpc,
)
from ailuro.vocabulary import FACTORY_ID_METADATA_KEY, FACTORY_SECRET_METADATA_KEY
from dispatcher.server import RunningDispatcher
from dispatcher.store.engine import open_database
from dispatcher.store.schema import metadata
from dispatcher.validation import MAX_JOB_PARAMETERS, MAX_NAME, MAX_TRANSFORMATION

J = job_pb2


def test_migrations_match_the_declared_schema(db_url: str) -> None:
    db = open_database(db_url)
    open_database(db_url).dispose()  # a second start finds the schema current and changes nothing
    try:
        with db.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
        assert diff == []
    finally:
        db.dispose()


@pytest.fixture
def channel(dispatcher: RunningDispatcher) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(dispatcher.address) as ch:
        yield ch


def test_longest_accepted_strings_fit_the_columns(channel: grpc.Channel) -> None:
    n = "n" * MAX_NAME
    f = J.File(
        lfn=n,
        guid=n,
        type=J.FILE_TYPE_INPUT,
        dataset=n,
        scope=n,
        status=n,
        source_se=n,
        destination_se=n,
        adler32="a" * 8,
    )
    long_job = J.Job(
        transformation="t" * MAX_TRANSFORMATION,
        job_parameters="p" * MAX_JOB_PARAMETERS,
        job_name=n,
        vo=n,
        prod_source_label=n,
        destination_dblock=n,
        destination_se=n,
        processing_type=n,
        files=[f],
    )
    sub = submission_pb2_grpc.SubmissionServiceStub(channel)
    (pid,) = sub.SubmitJobs(submission_pb2.SubmitJobsRequest(request_id="r" * 128, jobs=[long_job])).panda_ids
    got = sub.GetJobs(submission_pb2.GetJobsRequest(panda_ids=[pid])).jobs[0]
    assert got.job_parameters == long_job.job_parameters and got.files[0].guid == n
    hello = pilot_pb2.Hello(pilot_id=n, queue="LOCAL", node=n, batch_id=n, version=n)
    assert pilot_pb2_grpc.PilotServiceStub(channel).GetJob(pilot_pb2.GetJobRequest(pilot=hello, n=1)).assignments
    worker = factory_pb2.Worker(worker_id=n, queue="LOCAL", backend=n, factory_id=n, batch_id=n, diag="d" * 1000)
    fac = factory_pb2_grpc.FactoryServiceStub(channel)
    owner = ((FACTORY_ID_METADATA_KEY, n), (FACTORY_SECRET_METADATA_KEY, "s" * 64))  # the factory owning it
    fac.RegisterWorkers(factory_pb2.RegisterWorkersRequest(workers=[worker]), metadata=owner)
    assert fac.ListWorkers(factory_pb2.ListWorkersRequest()).workers[0].backend == n
