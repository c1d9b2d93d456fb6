"""A heartbeat flush writes ``heartbeat_flush_rows`` heartbeats per transaction (issue #18).

Each flush transaction holds the rows of the jobs it renews until it commits, and a kill of one
of them waits for it: 1,500 heartbeats in one transaction held them ~300 ms at 300 jobs/s, in
chunks of 200 ~65 ms (the lifecycle benchmark). Every heartbeat is still acked, once, after the
transaction that wrote it committed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

from ailuro.v1 import job_pb2
from dispatcher.config import DispatcherConfig
from dispatcher.services.hub import PilotHub
from dispatcher.services.runtime import Runtime
from dispatcher.services.streams import PilotStream
from dispatcher.states import JobState
from dispatcher.store import pilots as pstore
from dispatcher.store.engine import open_database


@pytest.mark.parametrize(("rows", "max_batch", "chunks"), [(400, 5000, [400, 400, 250]), (400, 300, [300] * 3 + [150])])
def test_flush_writes_heartbeats_in_bounded_transactions(
    tmp_path: Path, rows: int, max_batch: int, chunks: list[int]
) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    config = DispatcherConfig(db_url=url, db_threads=2, heartbeat_flush_rows=rows, max_batch=max_batch)
    rt = Runtime(config, open_database(url))
    try:
        hub = PilotHub(rt)
        written: list[int] = []

        def batch(beats: Sequence[pstore.HeartbeatIn]) -> list[tuple[pstore.AckResult, str]]:
            written.append(len(beats))
            return [(pstore.OK, "")] * len(beats)

        hub._heartbeat_batch = batch  # type: ignore[method-assign]

        async def flush() -> list[PilotStream]:
            streams = [PilotStream(pilot=pstore.PilotInfo(pilot_id=f"p{i}", queue="LOCAL")) for i in range(7)]
            for pid in range(1, 1051):
                stream = streams[pid % len(streams)]
                beat = pstore.HeartbeatIn(
                    panda_id=pid,
                    epoch=1,
                    status=JobState.RUNNING,
                    metrics=job_pb2.JobMetrics(),
                    pilot_id=stream.pilot.pilot_id,
                )
                hub._beats[(pid, stream.pilot.pilot_id)] = (beat, stream)
            await hub._flush_heartbeats()
            return streams

        streams = asyncio.run(flush())
        assert written == chunks
        acked = sorted(a.panda_id for s in streams for m in _drain(s) for a in m.acks.acks)
        assert acked == list(range(1, 1051))  # every heartbeat acked once
    finally:
        rt.close()


def _drain(stream: PilotStream) -> list[object]:
    out = []
    while not stream.out.empty():
        out.append(stream.out.get_nowait())
    return out
