"""``DispatcherBatch``: what is queued for a pilot together is written as one, if it reads them.

A pilot that sets ``Hello.reads_batches`` may get several messages in one write (the real pilot's
stream transport does); one that does not gets each alone, as before the field existed. On a
reconnect the dispatcher queues the Ack of a held job and the KILL asked for it meanwhile at the
same moment, after the Welcome: a pilot that reads batches gets the two in one, in that order.
"""

from __future__ import annotations

import queue
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest

from ailuro.v1 import job_pb2, pilot_pb2, submission_pb2, submission_pb2_grpc
from dispatcher.server import RunningDispatcher

P = pilot_pb2
pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def sub(dispatcher: RunningDispatcher) -> Iterator[submission_pb2_grpc.SubmissionServiceStub]:
    with grpc.insecure_channel(dispatcher.address) as ch:
        yield submission_pb2_grpc.SubmissionServiceStub(ch)


def _next_raw(pilot: Any) -> P.DispatcherMessage:
    """The next message exactly as written (a batch stays a batch)."""
    try:
        msg = pilot._in.get(timeout=30)
    except queue.Empty as exc:
        raise AssertionError("no message within 30 s") from exc
    assert isinstance(msg, P.DispatcherMessage), msg
    return msg


@pytest.mark.parametrize("reads_batches", [True, False])
def test_a_held_jobs_ack_and_its_kill_come_in_one_batch_to_a_pilot_that_reads_them(
    dispatcher: RunningDispatcher, sub: Any, raw_pilot: Callable[..., Any], reads_batches: bool
) -> None:
    (pid,) = sub.SubmitJobs(submission_pb2.SubmitJobsRequest(jobs=[job_pb2.Job(transformation="/bin/true")])).panda_ids
    first = raw_pilot(dispatcher.address, pilot_id="batcher")
    first.request(1)
    epoch = first.expect("assignment").lease_epoch
    first.close()
    sub.KillJobs(submission_pb2.KillJobsRequest(panda_ids=[pid], reason="wrong input"))

    again = raw_pilot(
        dispatcher.address,
        pilot_id="batcher",
        held=[P.HeldJob(panda_id=pid, lease_epoch=epoch)],
        hello={"reads_batches": reads_batches},
    )
    assert _next_raw(again).WhichOneof("msg") == "welcome"  # always first, and always alone
    if reads_batches:
        batch = _next_raw(again)
        assert batch.WhichOneof("msg") == "batch"
        messages = list(batch.batch.messages)
    else:
        messages = [_next_raw(again), _next_raw(again)]
    assert [m.WhichOneof("msg") for m in messages] == ["acks", "command"]  # the ack, then its kill
    (ack,) = messages[0].acks.acks
    assert (ack.panda_id, ack.result) == (pid, P.ACK_RESULT_OK)
    assert messages[1].command.panda_id == pid and messages[1].command.type == P.COMMAND_TYPE_KILL

    # the job ends once, through the batch-reading stream as through any
    again.final(pid, epoch, job_pb2.JOB_STATUS_CANCELLED)
    assert again.ack_for(pid, final=True).result == P.ACK_RESULT_OK
    status = sub.GetJobs(submission_pb2.GetJobsRequest(panda_ids=[pid])).jobs[0].status
    assert status == job_pb2.JOB_STATUS_CANCELLED


def test_many_requests_on_a_batch_reading_stream_are_each_answered_once(
    dispatcher: RunningDispatcher, sub: Any, raw_pilot: Callable[..., Any]
) -> None:
    jobs = [job_pb2.Job(transformation="/bin/true") for _ in range(40)]
    ids = set(sub.SubmitJobs(submission_pb2.SubmitJobsRequest(jobs=jobs)).panda_ids)
    p = raw_pilot(dispatcher.address, pilot_id="many", hello={"reads_batches": True, "cores": 40})
    for rid in range(1, 41):
        p.send(P.PilotMessage(job_request=P.JobRequest(n=1, request_id=rid)))
    assert _next_raw(p).WhichOneof("msg") == "welcome"
    answered: dict[int, int] = {}
    while len(answered) < 40:
        msg = _next_raw(p)
        for one in msg.batch.messages if msg.HasField("batch") else [msg]:
            assert one.WhichOneof("msg") not in ("batch", "welcome")  # never nested, one Welcome
            if one.WhichOneof("msg") == "assignment":
                rid = one.assignment.request_id
                assert rid not in answered, f"request {rid} answered twice"
                answered[rid] = one.assignment.job.panda_id
    assert sorted(answered) == list(range(1, 41))
    assert set(answered.values()) == ids  # every job handed out once
