"""Pilots that die at start are backed off per queue and flag the queue (issue #19, item 3).

A wrapper whose pilot cannot even import its code fails in a second; before, the factory
resubmitted such pilots every cycle (about 1,800 an hour). Now every failure in a row extends the
queue's backoff (one probe pilot at a time), the error line of the pilot's log is shown by
``ailuro factory status``, and after ``flag_after_start_failures`` failures the queue is flagged
in the dispatcher's queue statistics too.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from typer.testing import CliRunner

from ailuro.client import Client
from ailuro.queues import FactoryLimits, QueueConfig
from ailuro.v1 import factory_pb2, factory_pb2_grpc, job_pb2
from ailuro_cli.main import app
from backends.factory import Factory, FactoryConfig
from backends.health import Backoff

pytestmark = pytest.mark.timeout(240)

SICK = QueueConfig(
    name="SICK",
    backend="local",
    factory=FactoryLimits(max_queued=5, max_total=5, max_per_cycle=5, idle_timeout_s=3),
)
BROKEN_PILOT = (sys.executable, "-c", "import ailuro_no_such_module_for_this_test")


def _workers(server: str) -> list[factory_pb2.Worker]:
    with grpc.insecure_channel(server) as ch:
        req = factory_pb2.ListWorkersRequest(queue=SICK.name, include_final=True)
        return list(factory_pb2_grpc.FactoryServiceStub(ch).ListWorkers(req, timeout=10).workers)


def _cycle_until(factory: Factory, predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        factory.run_cycle()
        time.sleep(0.3)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_pilots_failing_at_start_are_backed_off_and_flag_the_queue(
    make_dispatcher: Callable[..., Any], tmp_path: Path
) -> None:
    server = str(make_dispatcher(queues=(SICK,)).address)
    factory = Factory(
        FactoryConfig(
            server=server,
            queues=(SICK,),
            workdir=tmp_path / "factory",
            pilot_command=BROKEN_PILOT,
            cancel_queued_after_s=0,
            flag_after_start_failures=3,
        )
    )
    now = [1000.0]
    factory.start_backoff = Backoff(base_s=30, max_s=300, clock=lambda: now[0])
    try:
        with Client(server) as client:
            client.submit([job_pb2.Job(transformation="t", computing_site=SICK.name) for _ in range(5)])
        assert factory.run_cycle()[SICK.name].submitted == 5
        _cycle_until(factory, lambda: factory.reports[SICK.name].start_failures == 5, 60, "5 start failures")
        report = factory.reports[SICK.name]
        assert report.flagged and "No module named 'ailuro_no_such_module_for_this_test'" in report.start_error
        # backed off: however many cycles run, nothing more is submitted until the delay passed
        blocked = factory.start_backoff.blocked_for(SICK.name)
        assert blocked == 300  # 30 * 2**4, capped at 300
        for _ in range(5):
            assert factory.run_cycle()[SICK.name].submitted == 0
        assert len(_workers(server)) == 5
        # after the delay, one probe pilot at a time, not a storm
        now[0] += blocked + 1
        assert factory.run_cycle()[SICK.name].submitted == 1
        assert factory.run_cycle()[SICK.name].submitted == 0  # its probe has not ended yet
        _cycle_until(factory, lambda: factory.reports[SICK.name].start_failures == 6, 60, "the probe to fail")
        assert factory.start_backoff.blocked_for(SICK.name) == 300
        assert len(_workers(server)) == 6
        # the flag reached the dispatcher and `ailuro factory status`
        with grpc.insecure_channel(server) as ch:
            (stats,) = (
                factory_pb2_grpc.FactoryServiceStub(ch)
                .GetQueueStats(factory_pb2.GetQueueStatsRequest(queues=[SICK.name]), timeout=10)
                .queues
            )
        assert stats.flagged and stats.start_failures == 6 and "No module named" in stats.flag_reason
        result = CliRunner().invoke(
            app, ["factory", "status", "--server", server, "--workdir", str(tmp_path / "factory"), "--json"]
        )
        assert result.exit_code == 0, result.output
        (row,) = json.loads(result.output)
        assert row["flagged"] and row["start_failures"] == 6 and "No module named" in row["flag_reason"]
        assert row["last_worker_log"].endswith(".log") and Path(row["last_worker_log"]).is_file()
        table = CliRunner().invoke(app, ["factory", "status", "--server", server])
        assert "6 FLAGGED: ModuleNotFoundError" in table.output, table.output
    finally:
        factory.cancel_all()
        factory.close()
