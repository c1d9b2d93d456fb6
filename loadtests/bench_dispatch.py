"""Dispatcher throughput benchmark: submit, claim, heartbeat and final rates on SQLite and PostgreSQL.

    python -m loadtests.bench_dispatch                    # both databases, 20,000 jobs each
    python -m loadtests.bench_dispatch --db postgres --jobs 50000 --pilots 100

For each database it starts a fresh database and a dispatcher process, then drives it from
separate load processes over real gRPC:

1. submit: concurrent ``SubmitJobs`` calls with batches of ``--batch`` jobs;
2. claim: ``--pilots`` ``Connect`` streams, each keeping ``--window`` ``JobRequest(n=1)`` in flight,
   until every job is assigned (per-request latency = GetJob latency);
3. heartbeat: every pilot reports STARTING, then RUNNING, then ``--rounds`` lease renewals for all
   its jobs in batched ``HeartbeatBatch`` messages; a round ends when every heartbeat is acked;
4. final: one ``JobFinal(FINISHED)`` per job, until every final is acked.

It then measures the raw gRPC echo ceiling of this machine (``loadtests/echo.py``) in the same run
and prints each rate beside it as a ratio. Figures only: nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import grpc

from ailuro.v1 import job_pb2, pilot_pb2, pilot_pb2_grpc, submission_pb2, submission_pb2_grpc
from loadtests._harness import aio_channel, database, dispatcher_process, percentile
from loadtests._submitter import named_jobs
from loadtests.echo import EchoCeiling, measure_ceiling

QUEUE = "LOCAL"


@dataclass(frozen=True, kw_only=True)
class BenchConfig:
    """What one benchmark run does."""

    jobs: int = 20_000
    batch: int = 500
    submitters: int = 4
    pilots: int = 50
    load_processes: int = 2
    window: int = 4
    rounds: int = 3
    echo_seconds: float = 3.0


@dataclass(kw_only=True)
class Figures:
    """Rates of one database run (per second) and GetJob latencies (milliseconds)."""

    db: str
    submit: float = 0.0
    claim: float = 0.0
    heartbeat: float = 0.0
    final: float = 0.0
    getjob_p50_ms: float = 0.0
    getjob_p99_ms: float = 0.0
    assigned: int = 0
    notes: list[str] = field(default_factory=list)


# --- submit ---------------------------------------------------------------------------------


async def _submit_all(address: str, cfg: BenchConfig) -> float:
    template = job_pb2.Job(transformation="/bin/true", job_parameters="--events 1000", computing_site=QUEUE)
    batches = [min(cfg.batch, cfg.jobs - i) for i in range(0, cfg.jobs, cfg.batch)]
    async with aio_channel(address) as channel:
        stub = submission_pb2_grpc.SubmissionServiceStub(channel)
        queue: asyncio.Queue[int] = asyncio.Queue()
        for n in batches:
            queue.put_nowait(n)

        async def worker(w: int) -> None:
            while not queue.empty():
                n = queue.get_nowait()
                jobs = named_jobs(template, n, str(w))
                await stub.SubmitJobs(
                    submission_pb2.SubmitJobsRequest(request_id=uuid.uuid4().hex, jobs=jobs), timeout=120
                )

        t0 = time.perf_counter()
        await asyncio.gather(*(worker(w) for w in range(cfg.submitters)))
        return cfg.jobs / (time.perf_counter() - t0)


def _submit_process(address: str, cfg: BenchConfig, out: mp.Queue) -> None:  # type: ignore[type-arg]
    out.put(asyncio.run(_submit_all(address, cfg)))


# --- pilots ---------------------------------------------------------------------------------


class _BenchPilot:
    """One Connect stream that claims, heartbeats and finishes jobs as fast as acks allow."""

    def __init__(self, stub: pilot_pb2_grpc.PilotServiceStub, pilot_id: str) -> None:
        self.call = stub.Connect()
        self.pilot_id = pilot_id
        self.jobs: dict[int, int] = {}  # panda_id -> epoch
        self.latencies: list[float] = []
        self._sent: deque[float] = deque()
        self._acks = 0
        self._acks_wanted = 0
        self._acked = asyncio.Event()
        self._claim_done = asyncio.Event()
        self._outstanding = 0
        self._no_job = False
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        hello = pilot_pb2.Hello(pilot_id=self.pilot_id, queue=QUEUE, node="bench", cores=1)
        await self.call.write(pilot_pb2.PilotMessage(hello=hello))
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while True:
            msg = await self.call.read()
            if msg is grpc.aio.EOF:
                return
            kind = msg.WhichOneof("msg")
            if kind in ("assignment", "no_job"):
                self.latencies.append(time.perf_counter() - self._sent.popleft())
                self._outstanding -= 1
                if kind == "assignment":
                    self.jobs[msg.assignment.job.panda_id] = msg.assignment.lease_epoch
                    await self._request()
                else:
                    self._no_job = True
                    if self._outstanding == 0:
                        self._claim_done.set()
            elif kind == "acks":
                bad = [a for a in msg.acks.acks if a.result != pilot_pb2.ACK_RESULT_OK]
                if bad:
                    raise RuntimeError(f"pilot {self.pilot_id}: {len(bad)} refused, e.g. {bad[0]}")
                self._acks += len(msg.acks.acks)
                if self._acks >= self._acks_wanted:
                    self._acked.set()

    async def _request(self) -> None:
        if self._no_job:
            if self._outstanding == 0:
                self._claim_done.set()
            return
        self._outstanding += 1
        self._sent.append(time.perf_counter())
        await self.call.write(pilot_pb2.PilotMessage(job_request=pilot_pb2.JobRequest(n=1)))

    async def claim(self, window: int) -> None:
        for _ in range(window):
            await self._request()
        await self._claim_done.wait()

    async def heartbeat_round(self, status: int) -> None:
        self._expect(len(self.jobs))
        beats = [pilot_pb2.Heartbeat(panda_id=p, lease_epoch=e, status=status) for p, e in self.jobs.items()]
        for i in range(0, len(beats), 100):
            batch = pilot_pb2.HeartbeatBatch(heartbeats=beats[i : i + 100])
            await self.call.write(pilot_pb2.PilotMessage(heartbeats=batch))
        await self._acked.wait()

    async def finish_all(self) -> None:
        self._expect(len(self.jobs))
        for p, e in self.jobs.items():
            final = pilot_pb2.JobFinal(
                panda_id=p, lease_epoch=e, status=job_pb2.JOB_STATUS_FINISHED, metrics=job_pb2.JobMetrics(exit_code=0)
            )
            await self.call.write(pilot_pb2.PilotMessage(final=final))
        await self._acked.wait()

    def _expect(self, n: int) -> None:
        self._acks, self._acks_wanted = 0, n
        self._acked = asyncio.Event()
        if n == 0:
            self._acked.set()

    async def close(self) -> None:
        await self.call.done_writing()
        if self._reader is not None:
            await asyncio.wait_for(self._reader, timeout=30)


async def _pilot_load(address: str, cfg: BenchConfig, index: int, barrier: Any) -> dict[str, Any]:
    n_pilots = cfg.pilots // cfg.load_processes + (1 if index < cfg.pilots % cfg.load_processes else 0)
    timings: dict[str, Any] = {}
    loop = asyncio.get_running_loop()

    async def sync() -> None:
        await loop.run_in_executor(None, barrier.wait)

    async with aio_channel(address) as channel:
        stub = pilot_pb2_grpc.PilotServiceStub(channel)
        pilots = [_BenchPilot(stub, f"bench-{index}-{i}") for i in range(n_pilots)]
        await asyncio.gather(*(p.start() for p in pilots))
        phases: list[tuple[str, Any]] = [
            ("claim", lambda p: p.claim(cfg.window)),
            ("starting", lambda p: p.heartbeat_round(job_pb2.JOB_STATUS_STARTING)),
            ("running", lambda p: p.heartbeat_round(job_pb2.JOB_STATUS_RUNNING)),
        ]
        phases += [(f"renew{r}", lambda p: p.heartbeat_round(job_pb2.JOB_STATUS_RUNNING)) for r in range(cfg.rounds)]
        phases.append(("final", lambda p: p.finish_all()))
        for name, action in phases:
            await sync()
            t0 = time.perf_counter()
            await asyncio.wait_for(asyncio.gather(*(action(p) for p in pilots)), timeout=600)
            timings[name] = time.perf_counter() - t0
        await asyncio.gather(*(p.close() for p in pilots))
    return {
        "timings": timings,
        "assigned": sum(len(p.jobs) for p in pilots),
        "latencies": [x for p in pilots for x in p.latencies],
        "ids": [pid for p in pilots for pid in p.jobs],
    }


def _pilot_process(address: str, cfg: BenchConfig, index: int, barrier: Any, out: mp.Queue) -> None:  # type: ignore[type-arg]
    try:
        out.put(asyncio.run(_pilot_load(address, cfg, index, barrier)))
    except BaseException as exc:
        barrier.abort()
        out.put({"error": repr(exc)})


# --- orchestration --------------------------------------------------------------------------


def run_db(kind: str, cfg: BenchConfig) -> Figures:
    """Benchmark one database kind on a fresh database and a fresh dispatcher process."""
    ctx = mp.get_context("spawn")
    fig = Figures(db=kind)
    with database(kind) as url, dispatcher_process(url) as address:
        out: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
        p = ctx.Process(target=_submit_process, args=(address, cfg, out))
        p.start()
        fig.submit = out.get(timeout=900)
        p.join(timeout=30)

        barrier = ctx.Barrier(cfg.load_processes)
        procs = [
            ctx.Process(target=_pilot_process, args=(address, cfg, i, barrier, out)) for i in range(cfg.load_processes)
        ]
        for proc in procs:
            proc.start()
        results = [out.get(timeout=1800) for _ in procs]
        for proc in procs:
            proc.join(timeout=30)
    errors = [r["error"] for r in results if "error" in r]
    if errors:
        raise RuntimeError(f"{kind}: load process failed: {errors}")
    ids = [i for r in results for i in r["ids"]]
    fig.assigned = len(ids)
    if len(ids) != cfg.jobs or len(set(ids)) != len(ids):
        fig.notes.append(f"assigned {len(ids)} ({len(set(ids))} distinct) of {cfg.jobs} jobs")

    def slowest(phase: str) -> float:
        return max(r["timings"][phase] for r in results)

    fig.claim = len(ids) / slowest("claim")
    renewals = [slowest(f"renew{r}") for r in range(cfg.rounds)]
    fig.heartbeat = len(ids) * cfg.rounds / sum(renewals) if renewals else 0.0
    fig.final = len(ids) / slowest("final")
    lat = [x for r in results for x in r["latencies"]]
    fig.getjob_p50_ms = percentile(lat, 50) * 1000
    fig.getjob_p99_ms = percentile(lat, 99) * 1000
    return fig


def report(figures: list[Figures], ceiling: EchoCeiling, cfg: BenchConfig) -> str:
    """The printed table: rates, latencies and ratios to the raw transport ceiling."""
    lines = [
        f"Ailuro dispatcher benchmark: {cfg.jobs:,} jobs, {cfg.pilots} pilot streams in {cfg.load_processes} "
        f"processes, window {cfg.window}, submit batches of {cfg.batch}",
        f"{'db':<10}{'submit/s':>12}{'claim/s':>12}{'heartbeat/s':>14}{'final/s':>12}{'GetJob p50':>12}{'p99':>10}",
    ]
    for f in figures:
        lines.append(
            f"{f.db:<10}{f.submit:>12,.0f}{f.claim:>12,.0f}{f.heartbeat:>14,.0f}{f.final:>12,.0f}"
            f"{f.getjob_p50_ms:>10.1f}ms{f.getjob_p99_ms:>8.1f}ms"
        )
        lines += [f"  note: {n}" for n in f.notes]
    lines.append(
        f"raw gRPC echo ceiling (same machine, same run): unary {ceiling.unary_calls_per_s:,.0f} calls/s, "
        f"bidi stream {ceiling.bidi_msgs_per_s:,.0f} msgs/s"
    )
    for f in figures:
        lines.append(
            f"ratios {f.db}: claims/bidi {f.claim / ceiling.bidi_msgs_per_s:.2f}, "
            f"heartbeats/bidi {f.heartbeat / ceiling.bidi_msgs_per_s:.2f}, "
            f"finals/bidi {f.final / ceiling.bidi_msgs_per_s:.2f}, "
            f"submitted jobs per unary call-slot {f.submit / ceiling.unary_calls_per_s:.2f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Parse options, run each database, print the report."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    d = BenchConfig()
    p.add_argument("--jobs", type=int, default=d.jobs)
    p.add_argument("--batch", type=int, default=d.batch)
    p.add_argument("--submitters", type=int, default=d.submitters)
    p.add_argument("--pilots", type=int, default=d.pilots)
    p.add_argument("--load-processes", type=int, default=d.load_processes)
    p.add_argument("--window", type=int, default=d.window)
    p.add_argument("--rounds", type=int, default=d.rounds)
    p.add_argument("--echo-seconds", type=float, default=d.echo_seconds)
    a = p.parse_args(argv)
    cfg = BenchConfig(
        jobs=a.jobs,
        batch=a.batch,
        submitters=a.submitters,
        pilots=a.pilots,
        load_processes=a.load_processes,
        window=a.window,
        rounds=a.rounds,
        echo_seconds=a.echo_seconds,
    )
    kinds = ["sqlite", "postgres"] if a.db == "both" else [a.db]
    figures = [run_db(k, cfg) for k in kinds]
    ceiling = measure_ceiling(seconds=cfg.echo_seconds)
    print(report(figures, ceiling, cfg))
    return 0 if all(f.assigned == cfg.jobs and not f.notes for f in figures) else 1


if __name__ == "__main__":
    raise SystemExit(main())
