"""A reconnect storm: thousands of pilot streams opened at once are all served, none refused.

gRPC's core holds incoming calls until the event loop asks for them and, past its default of
1,000 waiting calls, refuses new ones with CANCELLED. A dispatcher busy registering pilots fell
behind and lost about one stream in eight of a 10,000-pilot storm; ``max_pending_calls`` lifts
the limit. Every stream here must answer a JobRequest (NoJob: nothing is queued).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

import grpc
import pytest

from ailuro.v1 import pilot_pb2, pilot_pb2_grpc
from dispatcher.server import RunningDispatcher

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(300)]

STREAMS = 4000
PER_CONNECTION = 100


async def _storm(address: str) -> Counter[str]:
    channels = [
        grpc.aio.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(STREAMS // PER_CONNECTION)
    ]
    outcome: Counter[str] = Counter()

    async def one(i: int) -> None:
        call = pilot_pb2_grpc.PilotServiceStub(channels[i % len(channels)]).Connect()
        try:
            await call.write(pilot_pb2.PilotMessage(hello=pilot_pb2.Hello(pilot_id=f"storm-{i}", queue="LOCAL")))
            await call.write(pilot_pb2.PilotMessage(job_request=pilot_pb2.JobRequest(n=1)))
            msg = await asyncio.wait_for(call.read(), timeout=200)
            if msg is not grpc.aio.EOF and msg.HasField("welcome"):  # a stream's first answer
                msg = await asyncio.wait_for(call.read(), timeout=200)
            outcome["no_job" if msg is not grpc.aio.EOF and msg.HasField("no_job") else repr(msg)] += 1
        except grpc.aio.AioRpcError as exc:
            outcome[f"{exc.code().name}: {exc.details()}"] += 1
        finally:
            call.cancel()

    try:
        await asyncio.gather(*(one(i) for i in range(STREAMS)))
    finally:
        for ch in channels:
            await ch.close()
    return outcome


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_every_stream_of_a_storm_is_served(make_dispatcher: Callable[..., RunningDispatcher]) -> None:
    d = make_dispatcher()
    assert asyncio.run(_storm(d.address)) == Counter({"no_job": STREAMS})
