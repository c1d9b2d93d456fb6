"""Fuzz target (atheris/libFuzzer) for ``dispatcher.validation``: any bytes, as any request type.

The fuzzer picks a request type, parses the rest of its input as that message (what the gRPC
server does with a client's bytes) and runs the validator. A validator may only *accept* or raise
``InvalidArgument`` naming a field; anything else is a crash. An accepted request must also be
safe for what the store does next with it (timestamps convert, ids and page positions fit int64,
``normalize`` and ``fingerprint`` work), since that is where finding 10's INTERNALs came from.

    .venv/bin/python tests/fuzz/fuzz_validators.py -max_total_time=20          # a short run
    .venv/bin/python tests/fuzz/fuzz_validators.py -max_total_time=3600 corpus/  # longer, keeps a corpus
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import atheris
from google.protobuf.message import DecodeError

from ailuro.errors import InvalidArgument
from ailuro.v1 import factory_pb2, pilot_pb2, submission_pb2

# Coverage feedback from the code under test only (instrumenting SQLAlchemy and gRPC costs minutes).
with atheris.instrument_imports(
    include=["dispatcher.validation", "dispatcher.convert", "dispatcher.states", "dispatcher.pilot_protocol"]
):
    from dispatcher import convert, validation
    from dispatcher.pilot_protocol import job_request_problem

from dispatcher.identity import ANONYMOUS
from dispatcher.services.debug import report_problem
from dispatcher.services.submission import fingerprint, normalize

QUEUES = frozenset({"LOCAL", "CERN"})
INT64 = 2**63 - 1


def _submit(r: submission_pb2.SubmitJobsRequest) -> None:
    validation.validate_submit(r, known_sites=QUEUES)
    fingerprint(r)
    for job in r.jobs:
        normalize(job, ANONYMOUS).SerializeToString()


def _list(r: submission_pb2.ListJobsRequest) -> None:
    size, after = validation.validate_list(r)
    assert 1 <= size <= validation.MAX_PAGE_SIZE
    assert after is None or 0 < after <= INT64
    for name in ("since", "until"):
        if r.HasField(name):
            convert.seconds(getattr(r, name))


def _register(r: factory_pb2.RegisterWorkersRequest) -> None:
    validation.validate_register_workers(r, known_queues=QUEUES)
    for w in r.workers:
        if w.HasField("submit_time"):
            convert.seconds(w.submit_time)


def _reports(r: pilot_pb2.UpdateJobRequest) -> None:
    validation.validate_update_job(r)
    for hb in r.heartbeats:
        assert validation.heartbeat_problem(hb) is None or True  # a problem is an Ack, never an exception
    for final in r.finals:
        validation.final_problem(final)


def _connect(r: pilot_pb2.PilotMessage) -> None:
    kind = r.WhichOneof("msg")
    if kind == "hello":
        validation.validate_hello(r.hello, known_queues=QUEUES)
    elif kind == "job_request":  # a bad request is answered NoJob.invalid_field, never an exception
        job_request_problem(r.job_request)
    elif kind == "heartbeats":
        for hb in r.heartbeats.heartbeats:
            validation.heartbeat_problem(hb)
    elif kind == "final":
        validation.final_problem(r.final)
    elif kind == "debug_report":
        report_problem(r.debug_report, 64 * 1024)


TARGETS: list[tuple[type[Any], Callable[[Any], None]]] = [
    (submission_pb2.SubmitJobsRequest, _submit),
    (submission_pb2.KillJobsRequest, validation.validate_kill),
    (submission_pb2.RetryJobsRequest, lambda r: validation.validate_ids(r.panda_ids)),
    (submission_pb2.GetJobsRequest, lambda r: validation.validate_ids(r.panda_ids)),
    (submission_pb2.ListJobsRequest, _list),
    (submission_pb2.WatchJobsRequest, validation.validate_watch),
    (submission_pb2.GetJobEventsRequest, validation.validate_job_events),
    (pilot_pb2.PilotMessage, _connect),
    (pilot_pb2.GetJobRequest, lambda r: validation.validate_get_job(r, known_queues=QUEUES)),
    (pilot_pb2.UpdateJobRequest, _reports),
    (factory_pb2.GetQueueStatsRequest, lambda r: validation.validate_queue_stats(r, known_queues=QUEUES)),
    (factory_pb2.RegisterWorkersRequest, _register),
    (factory_pb2.UpdateWorkersRequest, validation.validate_update_workers),
    (factory_pb2.ListWorkersRequest, validation.validate_list_workers),
]


def test_one_input(data: bytes) -> None:
    """One fuzz case: a target index, then the message bytes (or, for index -1, a page token)."""
    fdp = atheris.FuzzedDataProvider(data)
    index = fdp.ConsumeIntInRange(0, len(TARGETS))
    if index == len(TARGETS):
        token = fdp.ConsumeUnicodeNoSurrogates(fdp.remaining_bytes())
        try:
            after = validation.decode_page_token(token)
        except InvalidArgument as exc:
            assert exc.field == "page_token"
            return
        assert after is None or 0 < after <= INT64
        return
    cls, check = TARGETS[index]
    try:
        request = cls.FromString(fdp.ConsumeBytes(fdp.remaining_bytes()))
    except DecodeError:
        return  # gRPC rejects what does not parse before any handler runs
    try:
        check(request)
    except InvalidArgument as exc:
        assert exc.field, f"InvalidArgument without a field: {exc}"


def seeds() -> list[bytes]:
    """Valid requests to start from (the index byte first, as FuzzedDataProvider reads it)."""
    from ailuro.v1 import job_pb2

    job = job_pb2.Job(transformation="/bin/true", computing_site="LOCAL", files=[job_pb2.File(lfn="a", type=1)])
    samples = [
        (0, submission_pb2.SubmitJobsRequest(request_id="r", jobs=[job])),
        (4, submission_pb2.ListJobsRequest(page_size=5, page_token=validation.encode_page_token(7))),
        (4, submission_pb2.ListJobsRequest(since={"seconds": 5}, until={"seconds": 9})),
        (7, pilot_pb2.PilotMessage(hello=pilot_pb2.Hello(pilot_id="p", queue="LOCAL"))),
        (11, factory_pb2.RegisterWorkersRequest(workers=[factory_pb2.Worker(worker_id="w", queue="LOCAL")])),
    ]
    return [bytes([i]) + m.SerializeToString() for i, m in samples]


def main(argv: list[str]) -> None:
    """libFuzzer's command line (``-max_total_time=N``, ``-seed=N``, corpus directories)."""
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
