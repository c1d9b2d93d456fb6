"""Limits on requests and streams (issue 12): each ends with INVALID_ARGUMENT or RESOURCE_EXHAUSTED naming it.

The limits do not depend on the database, so these run on SQLite only. Small limits are
configured (``dispatcher.config.Limits``) so the tests stay cheap; the defaults are in the README.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest

from ailuro.v1 import job_pb2, pilot_pb2, submission_pb2, submission_pb2_grpc
from dispatcher.config import Limits
from dispatcher.server import RunningDispatcher

J = job_pb2
P = pilot_pb2
pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def _ended_with(p: Any, code: grpc.StatusCode) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        p.expect("no_job", timeout=20)
    assert info.value.code() == code, info.value
    return info.value


def _alive(p: Any) -> None:
    p.request(1)
    assert p.expect("no_job").retry_after_s > 0


def test_message_size_limit(make_dispatcher: Callable[..., RunningDispatcher]) -> None:
    d = make_dispatcher(limits=Limits(max_message_bytes=1024 * 1024))
    jobs = [J.Job(transformation="t" * 4000) for _ in range(400)]  # ~1.6 MB
    with grpc.insecure_channel(d.address) as ch:
        sub = submission_pb2_grpc.SubmissionServiceStub(ch)
        with pytest.raises(grpc.RpcError) as info:
            sub.SubmitJobs(submission_pb2.SubmitJobsRequest(jobs=jobs))
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "larger than max" in info.value.details()
        assert len(sub.SubmitJobs(submission_pb2.SubmitJobsRequest(jobs=jobs[:100])).panda_ids) == 100


def test_pending_messages_per_stream(
    make_dispatcher: Callable[..., RunningDispatcher], raw_pilot: Callable[..., Any]
) -> None:
    # Heartbeats wait for a flush that does not come during the test: they pile up unanswered.
    d = make_dispatcher(limits=Limits(pending_per_stream=5, pending_wait_s=0.5), heartbeat_flush_s=60.0)
    fast = raw_pilot(d.address, pilot_id="too-fast")
    other = raw_pilot(d.address, pilot_id="patient")
    _alive(other)
    beats = [P.Heartbeat(panda_id=10_000 + i, lease_epoch=1, status=J.JOB_STATUS_RUNNING) for i in range(10)]
    fast.send(P.PilotMessage(heartbeats=P.HeartbeatBatch(heartbeats=beats)))
    fast.request(1)
    err = _ended_with(fast, grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert "pending_per_stream" in err.details()
    _alive(other)


def test_a_burst_over_the_pending_limit_is_paused_not_cut(
    make_dispatcher: Callable[..., RunningDispatcher], raw_pilot: Callable[..., Any]
) -> None:
    # Like spooled finals after a reconnect: more requests at once than the limit, served in turn.
    d = make_dispatcher(limits=Limits(pending_per_stream=5))
    p = raw_pilot(d.address, pilot_id="bursty")
    for _ in range(50):
        p.request(1)
    for _ in range(50):
        assert p.expect("no_job").retry_after_s > 0


def test_heartbeats_per_message(
    make_dispatcher: Callable[..., RunningDispatcher], raw_pilot: Callable[..., Any]
) -> None:
    d = make_dispatcher(limits=Limits(heartbeats_per_message=3))
    p = raw_pilot(d.address, pilot_id="chatty")
    beats = [P.Heartbeat(panda_id=1 + i, lease_epoch=1, status=J.JOB_STATUS_RUNNING) for i in range(4)]
    p.send(P.PilotMessage(heartbeats=P.HeartbeatBatch(heartbeats=beats)))
    err = _ended_with(p, grpc.StatusCode.INVALID_ARGUMENT)
    assert "heartbeats_per_message" in err.details()
    assert ("ailuro-field", "heartbeats.heartbeats") in tuple(err.trailing_metadata())


def test_held_jobs_per_hello(make_dispatcher: Callable[..., RunningDispatcher], raw_pilot: Callable[..., Any]) -> None:
    d = make_dispatcher(limits=Limits(held_jobs_per_hello=2))
    held = [P.HeldJob(panda_id=1 + i, lease_epoch=1) for i in range(3)]
    p = raw_pilot(d.address, pilot_id="hoarder", held=held)
    err = _ended_with(p, grpc.StatusCode.INVALID_ARGUMENT)
    assert "held_jobs_per_hello" in err.details()
    assert ("ailuro-field", "hello.held_jobs") in tuple(err.trailing_metadata())


def test_one_stream_per_pilot_id(
    make_dispatcher: Callable[..., RunningDispatcher], raw_pilot: Callable[..., Any]
) -> None:
    d = make_dispatcher()
    first = raw_pilot(d.address, pilot_id="twin")
    _alive(first)
    second = raw_pilot(d.address, pilot_id="twin")
    _alive(second)
    err = _ended_with(first, grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert "one stream per pilot id" in err.details()
    _alive(second)
