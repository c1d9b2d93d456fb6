"""Several claim batches in the database at once per process (issue #18): still exactly once.

On PostgreSQL a dispatcher process runs up to ``claim_batches_in_flight`` claim batches at the
same time (held shelf rows and ``SKIP LOCKED`` keep them disjoint; with ``claim_pool_s`` 0, locked
claim transactions), with a thread-safe share-policy cache between them. Here two such processes
serve one queue while every claimed row is slowed down in the database (a trigger, so batches
overlap), and mid-run every session is killed once (batches in flight fail while others commit);
the consistency check must find every job finished once, none dispatched twice, and the reports
must show batches really overlapped.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from faultload import ResilientPilot, Tally, submit, wait_all_final
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from loadtests import consistency

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(240)]

JOBS = 600
PEAK = "claims: batches in flight"

SLOW_CLAIMS = """
CREATE FUNCTION ailuro_test_slow_claim() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_sleep(0.004);  -- per claimed row: a batch stays in the database while the next one starts
    RETURN NEW;
END $$;
CREATE TRIGGER ailuro_test_slow_claim BEFORE UPDATE ON jobs FOR EACH ROW
    WHEN (OLD.status = 'activated' AND NEW.status = 'sent') EXECUTE FUNCTION ailuro_test_slow_claim();
"""


def _execute(url: str, sql: str, **params: Any) -> list[Any]:
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            result = conn.execute(text(sql), params)
            return result.fetchall() if result.returns_rows else []
    finally:
        engine.dispose()


def _peaks(lag_dir: Path) -> list[int]:
    """Each dispatcher's largest number of claim batches in the database at once (its lag report)."""
    return [int(json.loads(p.read_text()).get("db_peaks", {}).get(PEAK, 0)) for p in lag_dir.glob("looplag-*.json")]


@pytest.mark.parametrize("pool_s", [0.5, 0.0], ids=["one-statement", "locked-transaction"])
def test_concurrent_claim_batches_dispatch_exactly_once(
    pg_url: str, dispatchers: Callable[..., Any], tmp_path: Path, pool_s: float
) -> None:
    """Two processes x 3 claim batches in flight, slowed claims, sessions killed once: exactly once,
    with claims from the shelves (the default) and with the locked claim transaction."""
    url = make_url(pg_url)
    admin_url = url.set(database="postgres").render_as_string(hide_password=False)
    lag_dir = tmp_path / "lag"
    lag_dir.mkdir()
    opts = {
        "claim_batches_in_flight": 3,
        "claim_window_ms": 0.5,
        "loop_lag_dir": str(lag_dir),
        "claim_pool_s": pool_s,
    }
    d1, d2 = dispatchers(pg_url, "d1", **opts), dispatchers(pg_url, "d2", **opts)
    _execute(pg_url, SLOW_CLAIMS)  # the schema exists once a dispatcher is up
    tally = Tally()
    killed: list[int] = []

    async def run() -> None:
        stop = asyncio.Event()
        addresses = [d1.address, d2.address]
        fleet = [ResilientPilot(addresses, f"c{i}", tally) for i in range(24)]
        tasks = [asyncio.create_task(p.run(stop)) for p in fleet]
        submitter = asyncio.create_task(submit(addresses, JOBS, tally, batch=50, deadline_s=120))
        try:
            end = time.monotonic() + 90
            while len(tally.assignments) < JOBS // 3:
                assert time.monotonic() < end, f"only {len(tally.assignments)} dispatches"
                await asyncio.sleep(0.05)
            # claim batches in flight lose their sessions: they roll back, the pilots ask again
            rows = await asyncio.to_thread(
                _execute,
                admin_url,
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = :db AND pid <> pg_backend_pid()",
                db=url.database or "",
            )
            killed.append(len(rows))
            await asyncio.wait_for(submitter, timeout=120)
            counts = await wait_all_final(pg_url, JOBS, timeout_s=120)
            assert sum(counts.values()) == JOBS and set(counts) <= {"finished"}, counts
        finally:
            stop.set()
            await asyncio.wait(tasks, timeout=20)
            submitter.cancel()

    asyncio.run(run())
    assert sum(killed) > 0, killed
    for d in (d1, d2):
        assert d.proc.poll() is None, d.tail()
    time.sleep(1.5)  # each process rewrites its report every second
    peaks = _peaks(lag_dir)
    assert len(peaks) == 2 and max(peaks) >= 2, (peaks, d1.tail())  # batches really overlapped
    assert max(peaks) <= 3, peaks  # and never more than configured
    res = consistency.check(pg_url, submitted=tally.submitted, assignments=tally.assignments, expect_final=True)
    assert res.ok, res.summary()
