"""Pilot liveness reported by the factory (issue #19, items 1, 5 and 6).

A worker the factory sees end (exit, removal) or be held has no live pilot: the dispatcher
releases its pilot's jobs at once, through the lease rules (a started attempt fails with the
lost-heartbeat error and is retried), instead of at lease expiry; held workers stop counting as
queued and are removed, so they are replaced without waiting for ``held_timeout_s``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from infra.services import lsf_emulator  # noqa: F401  (fixture)

from ailuro import errorcodes
from ailuro.client import Client
from ailuro.queues import FactoryLimits, QueueConfig
from ailuro.v1 import factory_pb2, factory_pb2_grpc, job_pb2
from backends.base import WorkerState
from backends.factory import Factory, FactoryConfig
from loadtests import consistency

pytestmark = pytest.mark.timeout(240)

LIVE = QueueConfig(
    name="LIVE",
    backend="local",
    factory=FactoryLimits(max_queued=1, max_total=1, max_per_cycle=1, idle_timeout_s=5),
    backend_options={"kill_grace_s": 2},
)
MD = (("ailuro-factory-id", "fx"), ("ailuro-factory-secret", "secret-fx"))


def _wait(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.3)


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def _kill_marked(marker: str) -> None:
    """SIGKILL every process whose command line carries ``marker`` (the orphaned payloads)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    os.kill(int(entry.name), signal.SIGKILL)
            except OSError:
                pass


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_kill9_of_a_pilot_requeues_its_job_before_its_lease_expires(
    make_dispatcher: Callable[..., Any], db_url: str, tmp_path: Path
) -> None:
    # a 120 s lease: only the factory's report can bring the job back within the 90 s waited here
    # (a bound on the wait, generous for a loaded machine, not a speed claim)
    server = make_dispatcher(queues=(LIVE,), lease_s=120.0, watchdog_interval_s=0.5).address
    marker = f"liveness-{uuid.uuid4().hex[:8]}"
    factory = Factory(
        FactoryConfig(
            server=server,
            queues=(LIVE,),
            workdir=tmp_path / "factory",
            cycle_s=0.5,
            pilot_args=("--heartbeat-s", "2"),
            pilot_environment={"AILURO_STORAGE_ROOT": str(tmp_path / "storage")},
            cancel_queued_after_s=0,
        )
    )
    stop = threading.Event()
    thread = threading.Thread(target=factory.run, args=(stop,), daemon=True)
    job = job_pb2.Job(
        job_name="victim",
        transformation=sys.executable,
        job_parameters=f"-c 'import time; time.sleep(60)' {marker}",
        computing_site=LIVE.name,
        max_attempt=3,
    )
    try:
        with Client(server) as client:
            (pid,) = client.submit([job])
            thread.start()
            running = _wait(
                lambda: (j := client.get([pid])[0]).status == job_pb2.JOB_STATUS_RUNNING and j, 90, "the job to run"
            )
            state = json.loads((tmp_path / "factory" / "backends" / LIVE.name / "local-state.json").read_text())
            (wrapper_pid,) = [e["pid"] for e in state["workers"].values() if e["worker_id"] == running.pilot_id]
            (pilot_pid,) = _children(wrapper_pid)
            os.kill(pilot_pid, signal.SIGKILL)
            again = _wait(lambda: (j := client.get([pid])[0]).attempt_nr == 2 and j, 90, "the job to be requeued")
            events = client.events(pid)
            lost = [e for e in events if f"pilot {running.pilot_id} is gone" in e.reason]
            assert lost, [e.reason for e in events]
            assert lost[0].from_status == job_pb2.JOB_STATUS_RUNNING
            assert lost[0].to_status == job_pb2.JOB_STATUS_ACTIVATED
            assert any(err.code == errorcodes.LOST_HEARTBEAT for err in again.errors) or again.status in (
                job_pb2.JOB_STATUS_SENT,
                job_pb2.JOB_STATUS_STARTING,
                job_pb2.JOB_STATUS_RUNNING,
            )
    finally:
        stop.set()
        thread.join(timeout=30)
        factory.cancel_all()
        factory.close()
        _kill_marked(marker)
    report = consistency.check(db_url, submitted=[pid])
    assert report.ok, report.problems


def test_held_and_ended_workers_release_their_pilots_jobs(
    dispatcher: Any, raw_pilot: Callable[..., Any], tmp_path: Path
) -> None:
    with grpc.insecure_channel(dispatcher.address) as ch, Client(dispatcher.address) as client:
        fac = factory_pb2_grpc.FactoryServiceStub(ch)
        workers = [
            factory_pb2.Worker(worker_id=w, queue="LOCAL", backend="htcondor", factory_id="fx", batch_id=f"7.{i}")
            for i, w in enumerate(("held-w", "sent-w"))
        ]
        fac.RegisterWorkers(factory_pb2.RegisterWorkersRequest(workers=workers), metadata=MD)
        ids = client.submit([job_pb2.Job(transformation="t", max_attempt=2) for _ in range(2)])
        held = raw_pilot(dispatcher.address, pilot_id="held-w")
        held.request(1)
        first = held.expect("assignment")
        held.heartbeat(first.job.panda_id, first.lease_epoch, job_pb2.JOB_STATUS_STARTING)
        held.heartbeat(first.job.panda_id, first.lease_epoch, job_pb2.JOB_STATUS_RUNNING)
        _wait(lambda: client.get([first.job.panda_id])[0].status == job_pb2.JOB_STATUS_RUNNING, 10, "running")
        sent = raw_pilot(dispatcher.address, pilot_id="sent-w")
        sent.request(1)
        second = sent.expect("assignment")
        (stats,) = fac.GetQueueStats(factory_pb2.GetQueueStatsRequest(queues=["LOCAL"])).queues
        assert stats.connected_pilots == 2
        resp = fac.UpdateWorkers(
            factory_pb2.UpdateWorkersRequest(
                updates=[
                    factory_pb2.WorkerUpdate(worker_id="held-w", state=factory_pb2.WORKER_STATE_HELD, diag="hold"),
                    factory_pb2.WorkerUpdate(worker_id="sent-w", state=factory_pb2.WORKER_STATE_FAILED, diag="137"),
                ]
            ),
            metadata=MD,
        )
        assert resp.released_jobs == 2
        running_job, sent_job = client.get([first.job.panda_id, second.job.panda_id])
        # the started attempt failed (lost heartbeat) and is retried; the unstarted one goes back as it was
        assert (running_job.status, running_job.attempt_nr) == (job_pb2.JOB_STATUS_ACTIVATED, 2)
        assert (sent_job.status, sent_job.attempt_nr) == (job_pb2.JOB_STATUS_ACTIVATED, 1)
        # the stale pilot's late report cannot overwrite anything
        held.heartbeat(first.job.panda_id, first.lease_epoch, job_pb2.JOB_STATUS_RUNNING)
        (stats,) = fac.GetQueueStats(factory_pb2.GetQueueStatsRequest(queues=["LOCAL"])).queues
        assert stats.connected_pilots == 0 and stats.activated_jobs == 2
        assert dict(stats.workers) == {"held": 1}
        assert sorted(ids) == sorted([first.job.panda_id, second.job.panda_id])


def test_held_pilots_are_removed_and_replaced_at_once(
    make_dispatcher: Callable[..., Any],
    lsf_emulator: Any,  # noqa: F811  (the fixture imported above)
    tmp_path: Path,
) -> None:
    # "bsub -H": every pilot is submitted held (PSUSP) and would stay so for ever
    queue = QueueConfig(
        name="HELD_LSF",
        backend="lsf",
        backend_options=lsf_emulator.options(queue="8nh", bsub_args=["-H"]),
        factory=FactoryLimits(max_queued=2, max_total=2, max_per_cycle=2),
    )
    server = make_dispatcher(queues=(queue,)).address
    factory = Factory(
        FactoryConfig(server=server, queues=(queue,), workdir=tmp_path / "f", cancel_queued_after_s=0, cycle_s=0.5)
    )
    try:
        with Client(server) as client:
            client.submit([job_pb2.Job(transformation="t", computing_site=queue.name) for _ in range(3)])
        assert factory.run_cycle()[queue.name].submitted == 2
        factory.backend_for(queue).poll_interval = 0.0  # poll at every cycle
        removed = 0
        deadline = time.monotonic() + 60
        while removed < 2 and time.monotonic() < deadline:
            removed += factory.run_cycle()[queue.name].held_removed
            time.sleep(0.5)
        assert removed >= 2
        report = _wait(lambda: (r := factory.run_cycle()[queue.name]).submitted and r, 30, "replacements")
        assert report.submitted >= 1
    finally:
        factory.cancel_all()
        factory.close()
    with grpc.insecure_channel(server) as ch:
        listed = factory_pb2_grpc.FactoryServiceStub(ch).ListWorkers(
            factory_pb2.ListWorkersRequest(queue=queue.name, include_final=True)
        )
    states = [WorkerState.from_proto(w.state) for w in listed.workers]
    assert len(states) >= 3 and WorkerState.CANCELLED in states
