"""Draining a queue under load: ``offline`` hands out nothing new, running jobs finish, nothing is lost."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

import pytest

from ailuro import Client
from ailuro.queues import QueueConfig
from ailuro.v1 import job_pb2, pilot_pb2
from dispatcher.server import RunningDispatcher
from loadtests import consistency

J = job_pb2
pytestmark = pytest.mark.timeout(180)


def _take(p: Any, n: int) -> list[pilot_pb2.JobAssignment]:
    """Ask for ``n`` jobs: the assignments of the answer (none when a NoJob comes first)."""
    p.request(n)
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:  # the first answer: an assignment or a NoJob
        with contextlib.suppress(TimeoutError):
            got = [p.expect("assignment", timeout=0.1)]
            break
        with contextlib.suppress(TimeoutError):
            p.expect("no_job", timeout=0.01)
            return []
    else:
        raise TimeoutError("no answer to a job request")
    while len(got) < n:  # the rest of one answer comes together
        try:
            got.append(p.expect("assignment", timeout=0.5))
        except TimeoutError:
            break
    return got


def _finish(p: Any, held: list[pilot_pb2.JobAssignment]) -> None:
    for a in held:
        p.heartbeat(a.job.panda_id, a.lease_epoch, J.JOB_STATUS_RUNNING)
        p.final(a.job.panda_id, a.lease_epoch, J.JOB_STATUS_FINISHED)
    for a in held:
        assert p.ack_for(a.job.panda_id, final=True).result == pilot_pb2.ACK_RESULT_OK


def test_offline_drains_without_losing_a_job(
    make_dispatcher: Callable[..., RunningDispatcher], db_url: str, raw_pilot: Callable[..., Any]
) -> None:
    d = make_dispatcher(queues=(QueueConfig(name="LOCAL"), QueueConfig(name="OTHER")))
    with (
        Client(d.address, identity="prod", vo="compass") as user,
        Client(d.address, identity="ops", roles=("admin",)) as admin,
    ):
        submitted = user.submit([J.Job(transformation="/bin/true", computing_site="LOCAL") for _ in range(60)])
        pilots = [raw_pilot(d.address, pilot_id=f"drain-{i}") for i in range(3)]
        held = {p.pilot_id: _take(p, 5) for p in pilots}
        assignments = [(a.job.panda_id, a.lease_epoch) for h in held.values() for a in h]
        assert len(assignments) == 15
        admin.brokerage.set_queue_status("LOCAL", "offline", "drain test")
        # load keeps coming: explicit submissions wait on LOCAL, brokered ones go to OTHER
        submitted += user.submit([J.Job(transformation="/bin/true", computing_site="LOCAL") for _ in range(20)])
        brokered = user.submit([J.Job(transformation="/bin/true") for _ in range(10)])
        assert {j.computing_site for j in user.get(brokered)} == {"OTHER"}
        for p in pilots:
            assert _take(p, 5) == [], "an offline queue hands out nothing"
            _finish(p, held[p.pilot_id])  # running jobs finish normally
        states = [j.status for j in user.get(submitted)]
        assert states.count(J.JOB_STATUS_FINISHED) == 15
        assert states.count(J.JOB_STATUS_ACTIVATED) == 65, "the rest waits, none lost"
        # back online: everything runs to the end
        admin.brokerage.set_queue_status("LOCAL", "online", "drain test over")
        other = raw_pilot(d.address, pilot_id="other-0", queue="OTHER")
        for p in [*pilots, other]:
            while batch := _take(p, 10):
                assignments += [(a.job.panda_id, a.lease_epoch) for a in batch]
                _finish(p, batch)
    res = consistency.check(db_url, submitted=[*submitted, *brokered], assignments=assignments, expect_final=True)
    assert res.ok, res.summary()
    assert res.by_status == {"finished": 90}
