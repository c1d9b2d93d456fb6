"""Dispatcher memory with many connected pilots and a deep queue.

    python -m loadtests.memory                                   # 10,000 streams, 1,000,000 queued jobs
    python -m loadtests.memory --streams 2000 --queued 100000    # smaller

A fresh PostgreSQL database gets one job through ``SubmitJobs`` and ``--queued - 1`` copies of it
in one ``INSERT ... SELECT`` (seconds, not hours). Then ``--processes`` client processes open
``--streams`` ``Connect`` streams in total (100 per HTTP/2 connection) and hold them; the
dispatcher's RSS is printed before, with every stream connected, and after every stream asked
for one job at once (GetJob p50/p99 of that burst against the deep queue).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import time
from typing import Any

import grpc
from sqlalchemy import create_engine, text

from ailuro.v1 import job_pb2, pilot_pb2, pilot_pb2_grpc, submission_pb2, submission_pb2_grpc
from loadtests._harness import aio_channel, database, dispatcher_handle, percentile, rss_mb
from loadtests._harness import channel as token_channel
from loadtests._machine import machine

STREAMS_PER_CONNECTION = 100


def bulk_load(db_url: str, address: str, n: int) -> float:
    """Queue ``n`` activated jobs (one submitted, the rest copied in SQL); seconds it took."""
    t0 = time.perf_counter()
    with token_channel(address) as channel:
        stub = submission_pb2_grpc.SubmissionServiceStub(channel)
        job = job_pb2.Job(job_name="memory", transformation="/bin/true", computing_site="LOCAL")
        stub.SubmitJobs(submission_pb2.SubmitJobsRequest(jobs=[job]), timeout=30)
    engine = create_engine(db_url)
    with engine.begin() as conn:
        cols = [
            r[0]
            for r in conn.execute(
                text(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_name = 'jobs' AND column_name <> 'panda_id' ORDER BY ordinal_position"
                )
            )
        ]
        listed = ", ".join(cols)
        conn.execute(
            text(f"INSERT INTO jobs ({listed}) SELECT {listed} FROM jobs, generate_series(1, :n)"), {"n": n - 1}
        )
    with engine.begin() as conn:
        conn.execute(text("ANALYZE jobs"))
    engine.dispose()
    return time.perf_counter() - t0


async def _hold(address: str, count: int, index: int, go: Any, ready: Any, out: Any) -> None:
    n_conn = max(1, -(-count // STREAMS_PER_CONNECTION))
    # A private subchannel pool per channel: separate HTTP/2 connections, as separate pilots would use.
    channels = [aio_channel(address, options=[("grpc.use_local_subchannel_pool", 1)]) for _ in range(n_conn)]
    calls = []
    refused = 0
    for i in range(count):
        hello = pilot_pb2.Hello(pilot_id=f"mem-{index}-{i}", queue="LOCAL", node="memory")
        for attempt in range(5):  # a stream refused while thousands open is retried, and counted
            call = pilot_pb2_grpc.PilotServiceStub(channels[(i + attempt) % n_conn]).Connect()
            try:
                await call.write(pilot_pb2.PilotMessage(hello=hello))
                break
            except grpc.aio.AioRpcError:
                refused += 1
                await asyncio.sleep(0.1 * (attempt + 1))
        calls.append(call)
    if refused:
        print(f"client {index}: {refused} stream open(s) refused and retried", flush=True)
    ready.put(index)
    await asyncio.get_running_loop().run_in_executor(None, go.wait)
    t0 = time.perf_counter()
    for call in calls:
        await call.write(pilot_pb2.PilotMessage(job_request=pilot_pb2.JobRequest(n=1)))

    async def answer(call: Any) -> float:
        msg = await call.read()
        if msg is grpc.aio.EOF:
            raise RuntimeError("stream ended")
        return time.perf_counter() - t0

    got = await asyncio.wait_for(asyncio.gather(*(answer(c) for c in calls), return_exceptions=True), timeout=600)
    out.put([x for x in got if isinstance(x, float)])  # a stream the dispatcher refused has no answer
    await asyncio.get_running_loop().run_in_executor(None, go.wait)  # hold until measured
    for call in calls:
        call.cancel()
    for ch in channels:
        await ch.close()


def _client(address: str, count: int, index: int, go: Any, ready: Any, out: Any) -> None:
    asyncio.run(_hold(address, count, index, go, ready, out))


def connected(db_url: str) -> int:
    """Pilots the database lists as connected."""
    engine = create_engine(db_url)
    with engine.connect() as conn:
        n = int(conn.execute(text("SELECT count(*) FROM pilots WHERE connected")).scalar_one())
    engine.dispose()
    return n


def main(argv: list[str] | None = None) -> int:
    """Run the measurement and print it."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--streams", type=int, default=10_000)
    p.add_argument("--queued", type=int, default=1_000_000)
    p.add_argument("--processes", type=int, default=4)
    p.add_argument("--timeout", type=float, default=600.0)
    a = p.parse_args(argv)
    ctx = mp.get_context("spawn")
    with database("postgres") as url, dispatcher_handle(url) as d:
        rss_idle = rss_mb(d.pid)
        load_s = bulk_load(url, d.address, a.queued)
        rss_queued = rss_mb(d.pid)
        go, ready, out = ctx.Barrier(a.processes + 1), ctx.Queue(), ctx.Queue()
        share = [a.streams // a.processes + (1 if i < a.streams % a.processes else 0) for i in range(a.processes)]
        procs = [ctx.Process(target=_client, args=(d.address, share[i], i, go, ready, out)) for i in range(a.processes)]
        t0 = time.perf_counter()
        for proc in procs:
            proc.start()
        try:
            for _ in procs:
                ready.get(timeout=a.timeout)
            deadline = time.monotonic() + min(a.timeout, 120)
            while connected(url) < a.streams and time.monotonic() < deadline:
                time.sleep(0.5)
            open_s = time.perf_counter() - t0
            n_connected = connected(url)
            rss_streams = rss_mb(d.pid)
            go.wait(timeout=a.timeout)
            lat = [x for _ in procs for x in out.get(timeout=a.timeout)]
            rss_claimed = rss_mb(d.pid)
            go.wait(timeout=a.timeout)
        finally:
            for proc in procs:
                proc.join(timeout=60)
                if proc.is_alive():
                    proc.kill()
    print(f"Ailuro dispatcher memory on {machine()}, PostgreSQL")
    print(f"RSS idle, empty database:                     {rss_idle:8.0f} MiB")
    print(f"RSS with {a.queued:,} queued jobs (loaded in {load_s:.0f} s): {rss_queued:8.0f} MiB")
    print(f"RSS with {n_connected:,} connected pilot streams (opened in {open_s:.0f} s): {rss_streams:8.0f} MiB")
    print(
        f"RSS after all {len(lat):,} streams asked for a job at once: {rss_claimed:8.0f} MiB; "
        f"GetJob p50 {percentile(lat, 50) * 1e3:.0f} ms, p99 {percentile(lat, 99) * 1e3:.0f} ms "
        "(one burst, queue depth as above)"
    )
    print(f"per stream: {(rss_streams - rss_queued) * 1024 / max(n_connected, 1):.1f} KiB")
    return 0 if n_connected == a.streams and len(lat) == a.streams else 1


if __name__ == "__main__":
    raise SystemExit(main())
