"""A real pilot process is partitioned by what it says is free: a 2-core pilot takes two 1-core jobs,
never the 4-core job although that one comes first by priority; it waits and says why."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from test_pilot_dispatcher import PilotProcess, python_job

from ailuro import Client
from ailuro.v1 import job_pb2
from dispatcher.server import RunningDispatcher

JS = job_pb2
pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def pilots(tmp_path: Path) -> Iterator[Callable[..., PilotProcess]]:
    started: list[PilotProcess] = []

    def start(address: str, name: str, *args: str) -> PilotProcess:
        p = PilotProcess(address, tmp_path, name, *args)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


def test_two_core_pilot_runs_narrow_jobs_and_leaves_the_wide_one(
    dispatcher: RunningDispatcher, pilots: Callable[..., PilotProcess]
) -> None:
    with Client(dispatcher.address) as client:
        (wide,) = client.submit([python_job("wide", "pass", cores=4, current_priority=9)])
        narrow = client.submit([python_job(f"narrow{i}", "import time; time.sleep(1)") for i in range(2)])
        pilot = pilots(dispatcher.address, "pilot-2core", "--cores", "2", "--jobs-in-parallel", "4", "--max-jobs", "2")
        assert pilot.wait() == 0, pilot.log()
        assert [j.status for j in client.get(narrow)] == [JS.JOB_STATUS_FINISHED] * 2
        (left,) = client.get([wide])
        assert left.status == JS.JOB_STATUS_ACTIVATED, "a 4-core job never went to a 2-core pilot"
        why = client.brokerage.why(wide)
        assert why.claim_position == 1 and "no pilot is connected" in why.summary
