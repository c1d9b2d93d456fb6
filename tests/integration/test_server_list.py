"""Clients given several dispatcher addresses: calls and pilot streams move to the one that is up.

Two ``python -m dispatcher`` processes on one PostgreSQL database. The pilot and the SDK get
``--server d1,d2`` (no load balancer); d2 starts only after the pilot connected, so the pilot's
stream is known to be on d1, and d1 is then SIGKILLed mid-run: the pilot must carry on through d2
with every job finished exactly once.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from dispatcher_procs import DispatcherProcess, free_port
from sqlalchemy import create_engine, text
from test_pilot_dispatcher import PilotProcess, wait_until

from ailuro.client import Client
from ailuro.v1 import job_pb2

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.timeout(240)]

JS = job_pb2.JobStatus


@pytest.fixture
def started(pg_url: str, tmp_path: Path) -> Iterator[list[DispatcherProcess]]:
    procs: list[DispatcherProcess] = []
    yield procs
    for p in procs:
        p.stop()


def _job(i: int) -> job_pb2.Job:
    code = "import time; time.sleep(0.3)"
    return job_pb2.Job(
        job_name=f"list.{i}", computing_site="LOCAL", transformation=sys.executable, job_parameters=f"-c '{code}'"
    )


def test_pilot_and_sdk_fail_over_to_the_other_dispatcher(
    pg_url: str, tmp_path: Path, started: list[DispatcherProcess]
) -> None:
    d1 = DispatcherProcess(pg_url, tmp_path, "d1")
    started.append(d1)
    a1 = d1.wait_ready()
    a2 = f"127.0.0.1:{free_port()}"  # d2 comes up on it later
    both = f"{a1},{a2}"

    with Client(both, identity="alice", timeout=10) as client:
        ids = client.submit([_job(i) for i in range(12)])  # d2 is down: the channel uses d1
    pilot = PilotProcess(both, tmp_path, "p-list", "--idle-timeout-s", "90")
    try:
        with Client(a1, identity="alice") as c1:
            wait_until(lambda: sum(j.status == JS.JOB_STATUS_FINISHED for j in c1.get(ids)) >= 2, 60, "two jobs done")
        d2 = DispatcherProcess(pg_url, tmp_path, "d2", port=int(a2.rsplit(":", 1)[1]))
        started.append(d2)
        d2.wait_ready()
        d1.kill()  # the pilot's stream and the SDK's channel lose d1 at once

        with Client(both, identity="alice", timeout=10) as client:
            more = client.submit([_job(100 + i) for i in range(3)])
            wait_until(
                lambda: all(j.status == JS.JOB_STATUS_FINISHED for j in client.get(ids + more)),
                120,
                f"every job finished through d2; pilot log:\n{pilot.log()[-3000:]}",
            )
        assert "connected to" in pilot.log()
    finally:
        pilot.stop()

    engine = create_engine(pg_url)
    with engine.connect() as conn:
        finished = dict(
            conn.execute(
                text(
                    "SELECT panda_id, count(*) FROM job_events WHERE to_status = 'finished' "
                    "AND attempt_nr = 1 GROUP BY panda_id"
                )
            ).all()
        )
    engine.dispose()
    # A job on d1's pilot when d1 died is resumed by the same pilot through d2 (Hello.held_jobs):
    # every job finishes in its first attempt, exactly once - none lost, none run twice.
    assert sorted(finished) == sorted(ids + more)
    assert set(finished.values()) == {1}, finished
