"""When a claim batch wakes the parked requests (``hub.spare_after_serving_all``): only after it
served every request of a queue in full and still left locked candidates there, so a wake always
follows a job handed out and parked requests that nothing fits cannot wake each other in a loop."""

from __future__ import annotations

from ailuro.v1 import pilot_pb2
from dispatcher.services.hub import spare_after_serving_all
from dispatcher.store.pilots import ClaimRequest, PilotInfo


def _req(queue: str, n: int, got: int, passed_over: int) -> ClaimRequest:
    req = ClaimRequest(pilot=PilotInfo(pilot_id=f"p-{queue}-{n}-{got}", queue=queue), n=n, passed_over=passed_over)
    req.assignments.extend(pilot_pb2.JobAssignment() for _ in range(got))
    return req


def test_served_in_full_with_candidates_left_wakes() -> None:
    assert spare_after_serving_all([_req("A", 1, 1, 49), _req("A", 2, 2, 49)])


def test_nothing_left_over_does_not_wake() -> None:
    assert not spare_after_serving_all([_req("A", 1, 1, 0)])


def test_a_request_left_short_in_that_queue_does_not_wake() -> None:
    # the walltime case: one candidate that fits nobody, passed over, the request left empty
    assert not spare_after_serving_all([_req("A", 1, 0, 1)])
    assert not spare_after_serving_all([_req("A", 1, 1, 3), _req("A", 1, 0, 3)])


def test_queues_are_judged_apart() -> None:
    assert spare_after_serving_all([_req("A", 1, 0, 2), _req("B", 1, 1, 5)])
    assert not spare_after_serving_all([_req("A", 1, 0, 2), _req("B", 1, 1, 0)])
