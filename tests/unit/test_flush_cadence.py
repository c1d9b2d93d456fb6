"""The heartbeat flush runs ``heartbeat_flush_s`` (0.1 s) after the last one ended; the pilots'
``last_seen`` is refreshed only every ``PRESENCE_REFRESH_S`` (issue #18).

Flushing ten times a second keeps each flush transaction short (at 350 jobs/s: 40 ms instead of
260 ms, the GetJob p99 87 ms instead of 226); refreshing every connected pilot's row as often would
be an UPDATE of all of them ten times a second for a figure the monitor reads with 30 s of slack.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection
from pathlib import Path

from dispatcher.config import DispatcherConfig
from dispatcher.services.hub import PilotHub
from dispatcher.services.presence import PRESENCE_REFRESH_S
from dispatcher.services.runtime import Runtime
from dispatcher.services.streams import PilotStream
from dispatcher.store import pilots as pstore
from dispatcher.store.engine import open_database

FLUSHES = 50


def test_flushes_often_and_refreshes_presence_at_its_own_pace(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    rt = Runtime(DispatcherConfig(db_url=url, db_threads=2, heartbeat_flush_s=0.01), open_database(url))
    try:
        hub = PilotHub(rt)
        hub.streams["p1"] = PilotStream(pilot=pstore.PilotInfo(pilot_id="p1", queue="LOCAL"))
        flushes = 0
        refreshes: list[list[str]] = []

        async def flush() -> None:
            nonlocal flushes
            flushes += 1

        def refresh(live: Collection[str]) -> None:
            refreshes.append(sorted(live))

        hub._flush_heartbeats = flush  # type: ignore[method-assign]
        hub.presence.refresh = refresh  # type: ignore[method-assign]

        async def run() -> float:
            started = time.monotonic()
            loop = asyncio.create_task(hub._flush_loop())
            try:
                # bounded: a busy machine only makes it slower, and a slower run allows more refreshes
                for _ in range(6000):
                    if flushes >= FLUSHES and refreshes:
                        break
                    await asyncio.sleep(0.01)
                return time.monotonic() - started
            finally:
                loop.cancel()

        elapsed = asyncio.run(run())
        assert flushes >= FLUSHES
        assert refreshes and refreshes[0] == ["p1"]  # the live pilots are still refreshed
        # one refresh per PRESENCE_REFRESH_S at most, however often the flush ran (it used to be one per flush)
        assert len(refreshes) <= elapsed / PRESENCE_REFRESH_S + 1
        assert len(refreshes) < flushes
    finally:
        rt.close()
