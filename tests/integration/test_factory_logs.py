"""Logs within reach (issue #19, item 7): on the real HTCondor pool, where pilots run as another
user in another root, a job's log tarball lands under the factory's work dir (on the shared
directory) and ``ailuro job log`` returns it; workers' log paths are listed; a queue's
``pilot_environment`` reaches its pilots.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from infra.services import condor_pool  # noqa: F401  (fixture)
from test_backend_e2e import BundleServer, bundle_server, jobs_for, list_workers, wait  # noqa: F401
from typer.testing import CliRunner

from ailuro.client import Client
from ailuro.queues import FactoryLimits, QueueConfig
from ailuro.v1 import job_pb2
from ailuro_cli.main import app
from backends.factory import Factory, FactoryConfig

pytestmark = pytest.mark.timeout(300)


def test_htcondor_job_logs_are_fetchable_and_queue_environment_reaches_pilots(
    make_dispatcher: Callable[..., Any],
    condor_pool: Any,  # noqa: F811  (the fixture imported above)
    bundle_server: BundleServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    queue = QueueConfig(
        name="CONDOR_LOGS",
        backend="htcondor",
        factory=FactoryLimits(max_queued=1, max_total=1, max_per_cycle=1, idle_timeout_s=5),
        backend_options=condor_pool.options(),
        pilot_environment={"AILURO_QUEUE_MARK": "from-the-queue"},
    )
    workdir = condor_pool.workspace(f"logs-{tmp_path.name}")
    # the dispatcher reads logs back only from configured storage: here, the factory's default
    # storage root for its pilots (README, "Security model")
    server = str(
        make_dispatcher(
            queues=(queue,), no_job_retry_s=0.5, heartbeat_flush_s=0.2, storage_root=workdir / "storage"
        ).address
    )
    # no AILURO_STORAGE_ROOT anywhere: the factory's default must put logs where they can be read
    factory = Factory(
        FactoryConfig(
            server=server,
            queues=(queue,),
            workdir=workdir,
            cycle_s=1.0,
            pilot_args=("--heartbeat-s", "2"),
            cancel_queued_after_s=0,
            pilot_bundle_url=bundle_server.url,
            pilot_python=condor_pool.python(),  # a Python the pool's chroot sees
        )
    )
    stop = threading.Event()
    thread = threading.Thread(target=factory.run, args=(stop,), daemon=True)
    try:
        with Client(server) as client:
            (pid,) = client.submit(jobs_for(queue.name, 1))
            thread.start()
            wait(lambda: client.get([pid])[0].status >= job_pb2.JOB_STATUS_FINISHED, 240, "the job to end")
            job = client.get([pid])[0]
        assert job.status == job_pb2.JOB_STATUS_FINISHED, job.errors
    finally:
        stop.set()
        thread.join(30)
        factory.cancel_all()
        factory.close()
    runner = CliRunner()
    result = runner.invoke(app, ["--server", server, "job", "log", str(pid)])
    assert result.exit_code == 0, result.output
    assert f"job 0 on {job.pilot_id}" in result.output
    (log_file,) = [f for f in job.files if f.type == job_pb2.FILE_TYPE_LOG]
    assert str(workdir / "storage") in log_file.pfn, log_file.pfn
    # the worker's log path is listed, and the queue's environment reached its pilot's wrapper
    listed = runner.invoke(app, ["factory", "workers", "--server", server, "--all", "--json"])
    (row,) = [r for r in json.loads(listed.output) if r["worker_id"] == job.pilot_id]
    assert Path(row["log_path"]).is_file() and row["node"]
    assert f"ailuro-wrapper: pilot {job.pilot_id}" in Path(row["log_path"]).read_text()
    wrappers = list((workdir / "backends" / queue.name).rglob("*.sh"))
    assert wrappers and all("AILURO_QUEUE_MARK=from-the-queue" in w.read_text() for w in wrappers)
    assert list_workers(server, queue.name)
