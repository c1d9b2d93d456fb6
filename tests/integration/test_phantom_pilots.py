"""Pilot rows leave "connected" when their stream ends, whatever the cause (issue 12, finding 7).

200 clients drop their stream while the dispatcher registers their Hello, and more drop after
it (cancellation, a closed channel), while one honest pilot stays connected (so this
dispatcher keeps refreshing its pilots). Afterwards GetQueueStats, the pilots table and the
monitor's ``/metrics`` must all count exactly the one live pilot: no phantom keeps the factory
from submitting pilots. ``pilot_stale_s`` is set far longer than the test, so staleness cannot
hide a phantom.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
from fastapi.testclient import TestClient
from monitor_login import identities
from sqlalchemy import create_engine, text

from ailuro.v1 import factory_pb2, factory_pb2_grpc, pilot_pb2, pilot_pb2_grpc
from dispatcher.server import RunningDispatcher
from monitor.app import create_app
from monitor.config import MonitorConfig

P = pilot_pb2
MID_HELLO = 200
AFTER_HELLO = 40


async def _drop_mid_hello(address: str, k: int) -> None:
    """Send a Hello and cancel the call at once, or after a few ms: during its registration."""
    async with grpc.aio.insecure_channel(address) as ch:
        call = pilot_pb2_grpc.PilotServiceStub(ch).Connect()
        await call.write(P.PilotMessage(hello=P.Hello(pilot_id=f"phantom-{k}", queue="LOCAL")))
        await asyncio.sleep(random.uniform(0, 0.02))
        call.cancel()


async def _drop_after_hello(address: str, k: int) -> None:
    """Get the Welcome and a NoJob (so the Hello was registered), then drop: half cancel, half close."""
    ch = grpc.aio.insecure_channel(address)
    call = pilot_pb2_grpc.PilotServiceStub(ch).Connect()
    await call.write(P.PilotMessage(hello=P.Hello(pilot_id=f"gone-{k}", queue="LOCAL")))
    await call.write(P.PilotMessage(job_request=P.JobRequest(n=1)))
    first = await call.read()
    assert first.WhichOneof("msg") == "welcome"  # a stream's first answer (the protocol's Welcome)
    msg = await call.read()
    assert msg.WhichOneof("msg") == "no_job"
    if k % 2:
        call.cancel()
    await ch.close(grace=None)


async def _storm(address: str) -> None:
    await asyncio.gather(*(_drop_mid_hello(address, k) for k in range(MID_HELLO)))
    await asyncio.gather(*(_drop_after_hello(address, k) for k in range(AFTER_HELLO)))


def _stats(address: str) -> tuple[int, int]:
    with grpc.insecure_channel(address) as ch:
        (q,) = factory_pb2_grpc.FactoryServiceStub(ch).GetQueueStats(factory_pb2.GetQueueStatsRequest()).queues
    return q.connected_pilots, q.idle_pilots


def _connected_rows(db_url: str) -> int:
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM pilots WHERE connected")).scalar_one())
    finally:
        engine.dispose()


def test_dropped_streams_leave_no_phantom_pilots(
    make_dispatcher: Callable[..., RunningDispatcher], raw_pilot: Callable[..., Any], db_url: str, tmp_path: Path
) -> None:
    d = make_dispatcher(pilot_stale_s=3600.0)
    honest = raw_pilot(d.address, pilot_id="honest")
    honest.request(1)
    honest.expect("no_job")
    asyncio.run(_storm(d.address))
    deadline = time.monotonic() + 30
    while (_stats(d.address), _connected_rows(db_url)) != ((1, 1), 1) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _stats(d.address) == (1, 1), "GetQueueStats counts pilots whose streams ended"
    assert _connected_rows(db_url) == 1
    who = identities(tmp_path)
    with TestClient(create_app(MonitorConfig(db_url=db_url, auth=who.auth())), headers=who.admin()) as web:
        metrics = web.get("/metrics").text
    assert 'ailuro_pilots_connected{queue="LOCAL"} 1.0' in metrics
    honest.close()
    deadline = time.monotonic() + 30
    while _stats(d.address) != (0, 0) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _stats(d.address) == (0, 0)
    assert _connected_rows(db_url) == 0
