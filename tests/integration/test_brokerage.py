"""Queue status, resource matching, shares and ``job why`` against a real in-process dispatcher."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ailuro import Client
from ailuro.errors import InvalidArgument, PermissionDenied
from ailuro.queues import QueueConfig
from ailuro.v1 import job_pb2
from dispatcher.server import RunningDispatcher

J = job_pb2
QUEUES = (QueueConfig(name="LOCAL"), QueueConfig(name="OTHER"))

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def two_queues(make_dispatcher: Callable[..., RunningDispatcher]) -> RunningDispatcher:
    return make_dispatcher(queues=QUEUES)


@pytest.fixture
def admin(two_queues: RunningDispatcher) -> Iterator[Client]:
    with Client(two_queues.address, identity="ops", roles=("admin",)) as c:
        yield c


@pytest.fixture
def user(two_queues: RunningDispatcher) -> Iterator[Client]:
    with Client(two_queues.address, identity="alice", vo="compass") as c:
        yield c


def job(**kw: Any) -> J.Job:
    kw.setdefault("transformation", "/bin/true")
    kw.setdefault("vo", "compass")
    return J.Job(**kw)


def test_status_changes_need_admin_and_are_recorded(admin: Client, user: Client) -> None:
    with pytest.raises(PermissionDenied):
        user.brokerage.set_queue_status("LOCAL", "offline", "disk full")
    with pytest.raises(InvalidArgument) as bad:
        admin.brokerage.set_queue_status("LOCAL", "sleeping", "x")
    assert bad.value.field == "status"
    with pytest.raises(InvalidArgument) as empty:
        admin.brokerage.set_queue_status("LOCAL", "offline", " ")
    assert empty.value.field == "reason"
    change = admin.brokerage.set_queue_status("LOCAL", "offline", "disk full")
    assert (change.queue, change.status, change.changed_by) == ("LOCAL", "offline", "ops")
    admin.brokerage.set_queue_status("LOCAL", "online", "disk replaced")
    history = user.brokerage.queue_history("LOCAL")
    assert [(c.status, c.reason, c.changed_by) for c in history] == [
        ("online", "disk replaced", "ops"),
        ("offline", "disk full", "ops"),
    ]
    statuses = {q.name: (q.status, q.status_reason) for q in user.queues()}
    assert statuses == {"LOCAL": ("online", "disk replaced"), "OTHER": ("online", "")}
    audited = [(e.actor, e.target) for e in admin.admin.audit(action="queue.status")]
    assert audited == [("ops", "LOCAL"), ("ops", "LOCAL")]
    admin.brokerage.set_share_weight("compass/production", 70)
    (weight,) = admin.admin.audit(action="share.weight")
    assert (weight.actor, weight.target) == ("ops", "compass/production")


def test_offline_test_and_brokeroff(
    two_queues: RunningDispatcher, admin: Client, user: Client, raw_pilot: Callable[..., Any]
) -> None:
    (waiting,) = user.submit([job(computing_site="LOCAL")])
    admin.brokerage.set_queue_status("LOCAL", "offline", "draining for an upgrade")
    p = raw_pilot(two_queues.address, pilot_id="p-local")
    p.request(1)
    p.expect("no_job")
    why = user.brokerage.why(waiting)
    (local,) = [v for v in why.queues if v.queue == "LOCAL"]
    assert not local.can_run and "queue is offline: no new jobs are handed out" in local.reasons
    assert any("set-status LOCAL online" in a for a in why.advice)
    # test: only prod_source_label=test jobs are handed out
    admin.brokerage.set_queue_status("LOCAL", "test", "validating the new release")
    (test_job,) = user.submit([job(computing_site="LOCAL", prod_source_label="test")])
    p.request(5)
    assert p.expect("assignment").job.panda_id == test_job
    p.request(5)
    p.expect("no_job")
    # brokeroff: brokerage places nothing new there, its pilots are still served
    admin.brokerage.set_queue_status("LOCAL", "brokeroff", "no new work, drain what is placed")
    placed = user.submit([job() for _ in range(3)])
    assert {j.computing_site for j in user.get(placed)} == {"OTHER"}
    p.request(5)
    assert p.expect("assignment").job.panda_id == waiting
    why = user.brokerage.why(placed[0])
    (local,) = [v for v in why.queues if v.queue == "LOCAL"]
    assert "queue is brokeroff: brokerage does not place new jobs there" in local.reasons


def test_partitionable_pilot_and_resource_reasons(
    two_queues: RunningDispatcher, user: Client, raw_pilot: Callable[..., Any]
) -> None:
    wide, *narrow = user.submit(
        [job(computing_site="LOCAL", cores=8, current_priority=9)]
        + [job(computing_site="LOCAL", cores=2, memory_mb=1000) for _ in range(3)]
        + [job(computing_site="LOCAL", tags=["gpu"])]
    )
    p = raw_pilot(two_queues.address, pilot_id="p-4core", hello={"cores": 4, "memory_mb": 8000})
    p.request(10)
    got = {p.expect("assignment").job.panda_id, p.expect("assignment").job.panda_id}
    assert got == set(narrow[:2]), "4 cores: two 2-core jobs, not the 8-core one, not the gpu one"
    why = user.brokerage.why(wide)
    (local,) = [v for v in why.queues if v.queue == "LOCAL"]
    assert not local.can_run
    assert local.reasons == ["no connected pilot fits (1 connected; e.g. needs 8 cores, the pilot has 4 free)"]
    gpu = user.brokerage.why(narrow[3])
    assert "needs tag(s) gpu the pilot does not have" in gpu.summary
    # a wide pilot takes the wide job alone (highest priority first, all 8 cores)
    big = raw_pilot(two_queues.address, pilot_id="p-8core", hello={"cores": 8})
    big.request(10)
    assert big.expect("assignment").job.panda_id == wide


def test_why_ranks_the_claim_order_and_shares_report(two_queues: RunningDispatcher, user: Client) -> None:
    ids = user.submit([job(computing_site="OTHER", current_priority=p) for p in (1, 5, 3)])
    why = {pid: user.brokerage.why(pid) for pid in ids}
    assert [why[pid].claim_position for pid in ids] == [3, 1, 2]
    assert all(w.claim_waiting == 3 for w in why.values())
    assert why[ids[0]].share_leaf == "compass//alice"
    assert "no pilot is connected" in why[ids[0]].summary
    nodes = {n.path: n for n in user.brokerage.shares().nodes}
    assert nodes["compass//alice"].target == pytest.approx(1.0)
    with pytest.raises(PermissionDenied):
        user.brokerage.set_share_weight("compass", 3)
