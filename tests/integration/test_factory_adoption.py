"""A factory adopts (or cleans up) the workers of its factory id, whatever its work dir (issue
#19, item 4), on the real test Slurm cluster; ``ailuro factory workers`` lists them.

Before, a factory restarted with another ``--workdir`` (hence another generated id) left the old
workers counted against ``max_total`` for ever, and the way out (``--factory-id``) was undocumented
and needed the old work dir. Now the factory id is all it takes: the id's secret lives in the
state dir, the backend answers for workers it did not submit from this work dir, and
``--cancel-all`` removes them.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from infra.services import slurm_cluster  # noqa: F401  (fixture)
from typer.testing import CliRunner

from ailuro.client import Client
from ailuro.queues import FactoryLimits, QueueConfig
from ailuro.v1 import factory_pb2, factory_pb2_grpc, job_pb2
from ailuro_cli.main import app
from backends.base import WorkerState
from backends.factory import Factory, FactoryConfig

pytestmark = pytest.mark.timeout(240)

SILENT = (sys.executable, "-c", "import time; time.sleep(180)")
"""A pilot that never connects: its worker stays in the batch system until cancelled."""


def _workers(server: str, factory_id: str) -> list[factory_pb2.Worker]:
    with grpc.insecure_channel(server) as ch:
        req = factory_pb2.ListWorkersRequest(factory_id=factory_id, include_final=True)
        return list(factory_pb2_grpc.FactoryServiceStub(ch).ListWorkers(req, timeout=10).workers)


def _queues_toml(path: Path, queue: QueueConfig) -> Path:
    lines = [
        "[[queue]]",
        f'name = "{queue.name}"',
        f'backend = "{queue.backend}"',
        "[queue.factory]",
        "max_queued = 2",
        "max_total = 2",
        "max_per_cycle = 2",
        "[queue.backend_options]",
        *(f'{k} = "{v}"' for k, v in queue.backend_options.items()),
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_workers_of_a_factory_id_are_adopted_and_cancelled_from_any_workdir(
    make_dispatcher: Callable[..., Any],
    slurm_cluster: Any,  # noqa: F811  (the fixture imported above)
    tmp_path: Path,
) -> None:
    queue = QueueConfig(
        name="ADOPT_SLURM",
        backend="slurm",
        factory=FactoryLimits(max_queued=2, max_total=2, max_per_cycle=2),
        backend_options=slurm_cluster.options(job_dir=str(tmp_path)),
    )
    server = str(make_dispatcher(queues=(queue,)).address)
    common: dict[str, Any] = {"server": server, "queues": (queue,), "pilot_command": SILENT, "cycle_s": 0.5}
    old = Factory(FactoryConfig(workdir=tmp_path / "old", factory_id="site-f", **common))
    try:
        with Client(server) as client:
            client.submit([job_pb2.Job(transformation="t", computing_site=queue.name) for _ in range(4)])
        assert old.run_cycle()[queue.name].submitted == 2
    finally:
        old.close()
    submitted = {w.batch_id for w in _workers(server, "site-f")}
    assert len(submitted) == 2
    # a new work dir, the same factory id: the workers are adopted (polled, counted), none added
    new = Factory(FactoryConfig(workdir=tmp_path / "new", factory_id="site-f", **common))
    try:
        new.backend_for(queue).poll_interval = 0.0
        for _ in range(3):
            report = new.run_cycle()[queue.name]
            assert report.submitted == 0 and not report.last_error, report
        states = {WorkerState.from_proto(w.state) for w in _workers(server, "site-f")}
        assert states <= {WorkerState.SUBMITTED, WorkerState.IDLE, WorkerState.RUNNING}, states
        assert report.queued + report.running == 2
    finally:
        new.close()
    runner = CliRunner()
    listed = runner.invoke(app, ["factory", "workers", "--server", server, "--factory-id", "site-f", "--json"])
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.output)
    assert {r["batch_id"] for r in rows} == submitted
    assert all(r["queue"] == queue.name and r["log_path"].endswith(".log") and r["state"] for r in rows)
    table = runner.invoke(app, ["factory", "workers", "--server", server])
    assert table.exit_code == 0 and "site-f" in table.output
    # clean-up from yet another work dir, by factory id alone
    config = _queues_toml(tmp_path / "queues.toml", queue)
    third = str(tmp_path / "third")
    argv = ["factory", "--config", str(config), "--server", server, "--workdir", third, "--factory-id", "site-f"]
    cancel = runner.invoke(app, [*argv, "--cancel-all"])
    assert cancel.exit_code == 0, cancel.output
    assert "cancelled 2 worker(s)" in cancel.output
    # the factory's next polls see them end (scancel takes a moment on Slurm)
    quiet = dataclasses.replace(queue, factory=FactoryLimits(max_queued=0, max_total=0))  # poll, never submit
    poller = Factory(FactoryConfig(workdir=tmp_path / "third", factory_id="site-f", **{**common, "queues": (quiet,)}))
    try:
        poller.backend_for(quiet).poll_interval = 0.0
        deadline = time.monotonic() + 60
        while any(not WorkerState.from_proto(w.state).is_final for w in _workers(server, "site-f")):
            assert time.monotonic() < deadline, _workers(server, "site-f")
            poller.run_cycle()
            time.sleep(0.5)
    finally:
        poller.close()
    final = {WorkerState.from_proto(w.state) for w in _workers(server, "site-f")}
    assert final <= {WorkerState.CANCELLED, WorkerState.MISSING} and final, final
    after = runner.invoke(app, ["factory", "status", "--server", server, "--json"])
    (row,) = [r for r in json.loads(after.output) if r["queue"] == queue.name]
    assert row["queued_workers"] == 0 and row["running_workers"] == 0
