"""One factory serving queues on several backends at once, and two factories sharing a queue.

``CERN_LSF`` (LSF emulator), ``JINR_SLURM`` (real Slurm) and ``CONDOR_POOL`` (real HTCondor) each
get their own limits; jobs for each finish on pilots of that queue's backend. Two factories
serving one queue count each other's workers from the dispatcher and never exceed its limits.
"""

# ruff: noqa: F811  (the batch-system fixtures are imported by name, then requested as arguments)
from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import typer
from infra.services import condor_pool, lsf_emulator, slurm_cluster  # noqa: F401  (fixtures)
from test_backend_e2e import jobs_for, list_workers, wait
from typer.testing import CliRunner

from ailuro.client import Client
from ailuro.queues import FactoryLimits, QueueConfig
from ailuro.v1 import job_pb2
from backends.base import WorkerState
from backends.factory import Factory, FactoryConfig

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """SQLite only: these tests exercise the factory and the batch systems."""
    return f"sqlite:///{tmp_path / 'multisite.db'}"


def test_one_factory_three_backends(
    make_dispatcher: Callable[..., Any], slurm_cluster: Any, condor_pool: Any, lsf_emulator: Any, tmp_path: Path
) -> None:
    work = condor_pool.workspace(f"multisite-{tmp_path.name}")  # HTCondor needs the shared dir
    # root's pilots (Slurm, LSF) and panda's (HTCondor) write log tarballs to one storage element
    for d in (work / "storage", work / "storage" / "LOCAL"):
        d.mkdir()
        d.chmod(0o1777)
    queues = (
        QueueConfig(
            name="CERN_LSF",
            backend="lsf",
            backend_options=lsf_emulator.options(queue="8nh"),
            factory=FactoryLimits(max_queued=1, max_total=1, max_per_cycle=1, idle_timeout_s=4),
        ),
        QueueConfig(
            name="JINR_SLURM",
            backend="slurm",
            backend_options=slurm_cluster.options(partition="debug"),
            factory=FactoryLimits(max_queued=2, max_total=2, max_per_cycle=2, idle_timeout_s=4),
        ),
        QueueConfig(
            name="CONDOR_POOL",
            backend="htcondor",
            backend_options=condor_pool.options(),
            factory=FactoryLimits(max_queued=1, max_total=1, max_per_cycle=1, idle_timeout_s=4),
        ),
    )
    dispatcher = make_dispatcher(queues=queues, no_job_retry_s=0.5, heartbeat_flush_s=0.2, watchdog_interval_s=0.5)
    server = str(dispatcher.address)
    factory = Factory(
        FactoryConfig(
            server=server,
            queues=queues,
            workdir=work,
            cycle_s=1.0,
            pilot_args=("--heartbeat-s", "2"),
            cancel_queued_after_s=0,
            pilot_environment={"AILURO_STORAGE_ROOT": str(work / "storage")},
        )
    )
    stop = threading.Event()
    thread = threading.Thread(target=factory.run, args=(stop,), daemon=True)
    try:
        with Client(server) as client:
            ids = {q.name: client.submit(jobs_for(q.name, 3)) for q in queues}
            thread.start()
            everything = [i for v in ids.values() for i in v]
            wait(lambda: all(j.status >= job_pb2.JOB_STATUS_FINISHED for j in client.get(everything)), 240, "jobs")
            for q in queues:
                workers = {w.worker_id: w for w in list_workers(server, q.name)}
                assert 1 <= len(workers) <= q.factory.max_total  # each queue's own limit
                for job in client.get(ids[q.name]):
                    assert job.status == job_pb2.JOB_STATUS_FINISHED, job.errors
                    assert workers[job.pilot_id].backend == q.backend
    finally:
        stop.set()
        thread.join(30)
        factory.cancel_all()
        factory.close()

    from ailuro_cli import factory as factory_cli

    app = typer.Typer()
    factory_cli.register(app)

    @app.callback()
    def _root() -> None:
        """Test root."""

    result = CliRunner().invoke(app, ["factory", "status", "--server", server, "--workdir", str(work), "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["queue"]: r for r in json.loads(result.output)}
    assert {rows[q.name]["backend"] for q in queues} == {"lsf", "slurm", "htcondor"}
    assert all(rows[q.name]["last_submission"] > 0 and rows[q.name]["activated_jobs"] == 0 for q in queues)


def test_two_factories_on_one_lsf_queue_do_not_over_submit(
    make_dispatcher: Callable[..., Any], lsf_emulator: Any, tmp_path: Path
) -> None:
    queue = QueueConfig(
        name="CERN_LSF",
        backend="lsf",
        backend_options=lsf_emulator.options(queue="2nw"),
        factory=FactoryLimits(max_queued=10, max_total=3, max_per_cycle=3),
    )
    server = str(make_dispatcher(queues=(queue,)).address)
    silent = (sys.executable, "-c", "import time; time.sleep(120)")  # never connects: stays "running"
    factories = [
        Factory(
            FactoryConfig(
                server=server,
                queues=(queue,),
                workdir=tmp_path / f"f{i}",
                pilot_command=silent,
                cancel_queued_after_s=0,
            )
        )
        for i in range(2)
    ]
    try:
        with Client(server) as client:
            client.submit(jobs_for(queue.name, 10))
        for _ in range(3):
            for f in factories:
                f.run_cycle()
        workers = list_workers(server, queue.name)
        assert len(workers) == 3
        assert len({w.factory_id for w in workers}) == 1  # the first to cycle filled the queue
    finally:
        for f in factories:
            f.cancel_all()
    try:
        # bkill on a busy machine takes a while to act and cancel_all records only what already
        # ended (see its docstring): poll again, as the factory's next cycles would, bounded
        deadline = time.monotonic() + 120
        while _states(server, queue.name) != {WorkerState.CANCELLED} and time.monotonic() < deadline:
            time.sleep(0.5)
            for f in factories:
                f.cancel_all()
        assert _states(server, queue.name) == {WorkerState.CANCELLED}
    finally:
        for f in factories:
            f.close()


def _states(server: str, queue: str) -> set[WorkerState]:
    return {WorkerState.from_proto(w.state) for w in list_workers(server, queue)}
