"""Database sessions killed under load: clients see only UNAVAILABLE (issue #12, finding 10).

A PostgreSQL restart under load once let an INTERNAL through (``test_restart_postgres_under_load``,
intermittently): a fast shutdown tells each session "terminating connection" (57P01), and whether
that was mapped to UNAVAILABLE depended on a race inside libpq. ``pg_terminate_backend`` sends every
session of the dispatchers' database the same 57P01, many times, without restarting the shared
server; the clients must see nothing but retryable codes, and the consistency check must hold.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
from faultload import ResilientPilot, Tally, submit, wait_all_final
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from loadtests import consistency

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(240)]


def _terminate_sessions(admin_url: str, database: str) -> int:
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :db AND pid <> pg_backend_pid()"
                ),
                {"db": database},
            )
            return len(rows.fetchall())
    finally:
        engine.dispose()


def test_terminated_sessions_give_only_unavailable(pg_url: str, dispatchers: Callable[..., Any]) -> None:
    """Every session killed 12 times while 400 jobs run: only UNAVAILABLE/DEADLINE_EXCEEDED, nothing lost."""
    url = make_url(pg_url)
    admin_url = url.set(database="postgres").render_as_string(hide_password=False)
    d1, d2 = dispatchers(pg_url, "d1"), dispatchers(pg_url, "d2")
    tally = Tally()
    killed = []

    async def run() -> None:
        stop = asyncio.Event()
        addresses = [d1.address, d2.address]
        fleet = [ResilientPilot(addresses, f"k{i}", tally) for i in range(8)]
        tasks = [asyncio.create_task(p.run(stop)) for p in fleet]
        submitter = asyncio.create_task(submit(addresses, 400, tally, batch=40, deadline_s=120))
        try:
            end = time.monotonic() + 60
            while len(tally.assignments) < 40 and time.monotonic() < end:
                await asyncio.sleep(0.05)
            for _ in range(12):
                killed.append(await asyncio.to_thread(_terminate_sessions, admin_url, url.database or ""))
                await asyncio.sleep(0.4)
            await asyncio.wait_for(submitter, timeout=120)
            counts = await wait_all_final(pg_url, 400, timeout_s=120)
            assert sum(counts.values()) == 400 and set(counts) <= {"finished"}, counts
        finally:
            stop.set()
            await asyncio.wait(tasks, timeout=20)
            submitter.cancel()

    asyncio.run(run())
    assert sum(killed) > 0, killed  # sessions really were killed
    assert set(tally.codes) <= {"UNAVAILABLE", "DEADLINE_EXCEEDED"}, (tally.codes, tally.odd[:5])
    for d in (d1, d2):
        assert d.proc.poll() is None, d.tail()
        assert "failed unexpectedly" not in d.log.read_text(errors="replace"), d.tail()
    res = consistency.check(pg_url, submitted=tally.submitted, assignments=tally.assignments, expect_final=True)
    assert res.ok, res.summary()
