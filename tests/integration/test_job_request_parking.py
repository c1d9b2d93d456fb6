"""Parked job requests: a streamed request that finds no work waits for one, bounded (services/parking.py).

No timing assertion: a request parked for up to ``MAX_PARK_S`` (``no_job_retry_s`` is set far
above it) that is answered by an assignment and not first by a NoJob was woken by the activation,
since only the deadline would otherwise end it, with a NoJob.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest

from ailuro.v1 import job_pb2, submission_pb2, submission_pb2_grpc
from dispatcher.server import RunningDispatcher
from dispatcher.services.parking import MAX_PARK_S, SOON_S

J = job_pb2
S = submission_pb2


def submit(address: str, n: int = 1) -> list[int]:
    with grpc.insecure_channel(address) as ch:
        stub = submission_pb2_grpc.SubmissionServiceStub(ch)
        jobs = [J.Job(transformation="/bin/true") for _ in range(n)]
        return list(stub.SubmitJobs(S.SubmitJobsRequest(jobs=jobs)).panda_ids)


def wait_parked(d: RunningDispatcher, n: int) -> None:
    """Block until ``n`` requests are parked (read from the dispatcher's own counter)."""
    import time

    assert d.hub is not None
    deadline = time.monotonic() + 30
    while d.hub.parking.parked < n:
        assert time.monotonic() < deadline, f"{d.hub.parking.parked} of {n} requests parked"
        time.sleep(0.01)


def no_no_job_before(p: Any) -> None:
    """No NoJob came before what was read so far (it would be kept, in arrival order)."""
    with pytest.raises(TimeoutError):
        p.expect("no_job", timeout=0)


def test_parked_request_is_answered_when_a_job_is_submitted(
    make_dispatcher: Callable[..., RunningDispatcher], raw_pilot: Callable[..., Any]
) -> None:
    d = make_dispatcher(no_job_retry_s=3600.0)
    p = raw_pilot(d.address, pilot_id="parked")
    p.request(1)
    wait_parked(d, 1)
    (pid,) = submit(d.address)
    assert p.expect("assignment", timeout=MAX_PARK_S * 3).job.panda_id == pid
    no_no_job_before(p)
    assert d.hub is not None and d.hub.parking.parked == 0


def test_parked_request_for_two_gets_what_came_and_may_ask_again_soon(
    make_dispatcher: Callable[..., RunningDispatcher], raw_pilot: Callable[..., Any]
) -> None:
    d = make_dispatcher(no_job_retry_s=3600.0)
    p = raw_pilot(d.address, pilot_id="parked-2")
    p.request(2)
    wait_parked(d, 1)
    (pid,) = submit(d.address)
    assert p.expect("assignment", timeout=MAX_PARK_S * 3).job.panda_id == pid
    answer = p.expect("no_job", timeout=MAX_PARK_S * 3)
    assert answer.n_given == 1 and answer.retry_after_s == pytest.approx(SOON_S)  # its next request parks


def test_parking_is_bounded_in_time_and_count(
    make_dispatcher: Callable[..., RunningDispatcher], raw_pilot: Callable[..., Any]
) -> None:
    # Parked for MAX_PARK_S (the cap on --no-job-retry), not for a short --no-job-retry: with 0.5 s,
    # a first claim slower than that on a busy machine (a cold connection, say) left the request
    # nothing to park for, and the second pilot's connect had to beat the first one's deadline.
    d = make_dispatcher(no_job_retry_s=3600.0, max_parked_requests=1)
    first = raw_pilot(d.address, pilot_id="first")
    first.request(1)
    wait_parked(d, 1)
    second = raw_pilot(d.address, pilot_id="second")
    second.request(1)
    refused = second.expect("no_job")  # over the limit: answered at once, told the normal retry
    assert refused.n_given == 0 and refused.retry_after_s == pytest.approx(3600.0)
    ended = first.expect("no_job", timeout=MAX_PARK_S * 3)  # the deadline (MAX_PARK_S) ends it with NoJob
    assert ended.n_given == 0 and ended.retry_after_s == pytest.approx(SOON_S)
    assert d.hub is not None and d.hub.parking.parked == 0


def test_no_parking_when_turned_off(
    make_dispatcher: Callable[..., RunningDispatcher], raw_pilot: Callable[..., Any]
) -> None:
    d = make_dispatcher(no_job_retry_s=3600.0, max_parked_requests=0)
    p = raw_pilot(d.address, pilot_id="unparked")
    p.request(1)
    assert p.expect("no_job", timeout=30).retry_after_s == pytest.approx(3600.0)


def test_a_requeued_job_wakes_a_parked_request(
    make_dispatcher: Callable[..., RunningDispatcher], raw_pilot: Callable[..., Any]
) -> None:
    """The watchdog gives a job nobody started back (sent -> activated): a parked pilot gets it."""
    d = make_dispatcher(no_job_retry_s=3600.0, sent_timeout_s=0.5)
    (pid,) = submit(d.address)
    silent = raw_pilot(d.address, pilot_id="silent")
    silent.request(1)
    assert silent.expect("assignment").job.panda_id == pid  # never reports starting
    waiting = raw_pilot(d.address, pilot_id="waiting")
    waiting.request(1)
    got = waiting.expect("assignment", timeout=60)
    assert got.job.panda_id == pid and got.lease_epoch == 2
    no_no_job_before(waiting)


@pytest.mark.postgres
def test_activation_in_another_process_wakes_a_parked_request(pg_url: str, raw_pilot: Callable[..., Any]) -> None:
    """Two dispatchers on one database: the job is submitted to one, the pilot is parked on the
    other, which only the NOTIFY of the submitting transaction can wake before the deadline."""
    from dispatcher.auth.config import TRUSTED_METADATA_MODE, AuthConfig
    from dispatcher.config import DispatcherConfig
    from dispatcher.server import run_in_thread

    dev = AuthConfig(mode=TRUSTED_METADATA_MODE)
    config = DispatcherConfig(db_url=pg_url, port=0, no_job_retry_s=3600.0, auth=dev)
    with run_in_thread(config) as d1, run_in_thread(config) as d2:
        p = raw_pilot(d2.address, pilot_id="p-notified-job")
        p.request(1)
        wait_parked(d2, 1)
        (pid,) = submit(d1.address)
        assert p.expect("assignment", timeout=MAX_PARK_S * 3).job.panda_id == pid
        no_no_job_before(p)
        p.close()
