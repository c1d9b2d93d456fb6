"""Full job lifecycle benchmark: jobs/s from submit to finished, GetJob and kill latency, ceiling.

    python -m loadtests.bench                                  # PostgreSQL, 1 and 2 dispatchers
    python -m loadtests.bench --db both --dispatchers 1,2 --jobs 60000
    python -m loadtests.bench --db sqlite --dispatchers 1 --jobs 10000
    python -m loadtests.bench --dispatchers 1 --jobs 60000 --rate 1000   # latency at 1,000 jobs/s
    python -m loadtests.bench --dispatchers 1 --saturation               # saturation, then 50 % and 80 %

Each configuration gets a fresh database and fresh dispatcher processes (``python -m dispatcher``,
default settings). Load comes from separate processes over real gRPC, asyncio clients:

- one submitter process: ``SubmitJobs`` batches of ``--batch`` (with a request_id), spread
  round-robin over the dispatchers, as fast as they are accepted (with ``--rate R``: at R jobs/s,
  two seconds ahead of the pilots);
- ``--load-processes`` pilot processes with ``--pilots`` Connect streams in total, spread
  round-robin over the dispatchers. Each stream keeps ``--slots`` jobs in hand with
  ``JobRequest(n=1)`` messages (GetJob latency = request to the assignment that names it; a
  request answered NoJob, after waiting parked for work that did not come, is counted apart; with ``--rate R`` the pilot
  processes together send at most R requests per second, an open loop at the target load). A job goes
  ``STARTING`` -> ``RUNNING`` x ``--renewals`` in HeartbeatBatch messages, each sent once the
  previous heartbeat of that job was acknowledged (the dispatcher acks after its periodic flush),
  then a ``JobFinal(FINISHED)`` as a real pilot sends it (metrics and the stored log tarball as a
  LOG file with size, adler32 and pfn, which the dispatcher records); the job counts when the
  final is acknowledged. (A real pilot sends no heartbeat at all for a job shorter than its
  ``status_delay_s``: ``loadtests.bench_pilots`` measures real pilots.)
- every ``--kill-every``-th job that reaches RUNNING is killed with ``KillJobs`` (through the
  *other* dispatcher when there are two, so the cross-process path is measured); kill latency is
  ``KillJobs`` sent to the Command arriving on the pilot's stream, both clocks in one process.

``--saturation`` measures the closed-loop steady throughput S first, then offers 50 % and 80 % of
S (each a fresh database and dispatcher) and prints the three rows: the latency targets of the
hot path are stated at those loads. Its closed loop submits alongside (at most every pilot slot
+ 2,000 jobs ahead of the completions, ``--submit-ahead``), so S is measured on the same
lifecycle, submission included, that the paced rows offer.

Printed: jobs/s end to end (first submit to last final ack) and steady (the middle 60 % of
completions), jobs/day, GetJob p50/p99, kill p50/p99, dispatcher CPU ms per job, the raw gRPC
echo ceiling measured in the same run with ratios, and the database consistency check.
Figures only: nothing here asserts a speed; the exit code is 1 only when the check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import grpc

from ailuro.credentials import aio_interceptors, resolve_token
from ailuro.v1 import job_pb2, pilot_pb2, pilot_pb2_grpc, submission_pb2, submission_pb2_grpc
from loadtests import _box, _disk, _looplag, consistency
from loadtests._bench_report import report
from loadtests._harness import database, dispatcher_handle, load_issuer, percentile, tree_cpu_seconds
from loadtests._machine import uptime
from loadtests._pilot_state import PilotProcessState
from loadtests._scrape import Scraper, free_port_block
from loadtests._submitter import QUEUE, submit_process
from loadtests.echo import measure_ceiling

_RUNNING = job_pb2.JOB_STATUS_RUNNING
_STARTING = job_pb2.JOB_STATUS_STARTING


@dataclass(frozen=True, kw_only=True)
class LifecycleConfig:
    """What one lifecycle run does."""

    jobs: int = 40_000
    batch: int = 500
    submitters: int = 4
    pilots: int = 200
    slots: int = 40
    load_processes: int = 2
    renewals: int = 3
    kill_every: int = 200
    echo_seconds: float = 3.0
    timeout_s: float = 900.0
    pg_settings: tuple[str, ...] = ()
    """``name=value`` PostgreSQL settings applied to the benchmark's database (``--pg-set``)."""
    connections: int = 1
    """TCP connections per load process and dispatcher address; pilot streams are spread over them.
    Real pilots each have their own connection; with ``--workers`` the kernel spreads connections
    (not streams) over the worker processes, so the load needs several to be spread at all."""
    tick_s: float = 0.05
    """How often each pilot stream sends its due heartbeats and job requests (one message each)."""
    rate: float = 0.0
    """Offered load in jobs/s (0: as fast as the dispatcher takes them, a closed loop).

    With a rate, jobs are submitted and requested at that pace (submission runs two seconds
    ahead so the queue never runs dry), so GetJob latency is the dispatcher's answer time at that
    load, not the time a request waits behind thousands of others in a saturated closed loop."""
    scrape_s: float = 0.0
    """Run the dispatchers with ``--metrics-port`` and scrape every worker's ``/metrics`` this often
    during the run (0: metrics off), to measure what serving Prometheus costs the dispatcher."""
    token_auth: bool = True
    """Run the dispatchers in token mode (an embedded issuer); clients send its admin token. False:
    the loopback development mode (``--auth trusted-metadata``), to measure what tokens cost."""
    dispatcher_args: tuple[str, ...] = ()
    """Further ``ailuro server`` options (``--dispatcher-arg``), e.g. to compare settings in one tree."""
    submit_ahead: int = 0
    """In a closed loop, keep at most this many jobs submitted and not yet finished (0: submit all
    of them at once, as fast as they are accepted).

    With everything submitted first, the submission is over in a few seconds and the steady window
    (the middle 60 % of completions) measures a lifecycle without its first step: 1,097 jobs/s
    steady on an AMD EPYC, where a paced run offered 80 % of that (878/s, submission included)
    fell behind at 776. ``--saturation`` measures S with submission alongside (:func:`closed_loop_ahead`)."""


@dataclass(kw_only=True)
class Result:
    """Figures of one (database, dispatcher count) run."""

    db: str
    dispatchers: int
    label: str = ""
    """What was offered: ``closed+submit`` or ``NN% = R/s`` (saturation mode)."""
    planned: int = 0
    """Jobs the run submits (``LifecycleConfig.jobs`` of its own configuration)."""
    jobs: int = 0
    elapsed_s: float = 0.0
    steady_jobs_per_s: float = 0.0
    getjob_p50_ms: float = 0.0
    getjob_p99_ms: float = 0.0
    kill_p50_ms: float = 0.0
    kill_p99_ms: float = 0.0
    kills: int = 0
    steady_getjob_p50_ms: float = 0.0
    steady_getjob_p99_ms: float = 0.0
    nojob: int = 0
    """Job requests answered NoJob (after waiting parked for work): not in the GetJob figures."""
    nojob_p99_ms: float = 0.0
    written_p50_ms: float = 0.0
    written_p99_ms: float = 0.0
    """A JobRequest queued on its stream to written by the load generator (part of GetJob latency)."""
    submit_per_s: float = 0.0
    cpu_ms_per_job: float = 0.0
    check: consistency.Consistency = field(default_factory=consistency.Consistency)
    loop_lag: list[_looplag.LoopLag] = field(default_factory=list)
    """Event-loop lag of each dispatcher process during the load (``--loop-lag-dir`` reports)."""
    box: _box.BoxShare = field(default_factory=_box.BoxShare)
    """Who used the machine's cores during the load, and the load generator's own loop lag."""
    disk: _disk.DiskFigures = field(default_factory=_disk.DiskFigures)
    """How long a small durable write took meanwhile: every commit waits for one (``_disk.py``)."""

    @property
    def jobs_per_s(self) -> float:
        """End-to-end rate: all jobs over first submit to last final ack."""
        return self.jobs / self.elapsed_s if self.elapsed_s else 0.0


# --- pilots ---------------------------------------------------------------------------------


def real_final(panda_id: int, epoch: int, status: int) -> pilot_pb2.JobFinal:
    """A final report as a real pilot sends it: metrics and the stored log tarball (size, adler32, pfn)."""
    log_file = job_pb2.File(
        lfn=f"bench.{panda_id}.job.log.tgz",
        type=job_pb2.FILE_TYPE_LOG,
        size=420,
        adler32="1b2c0d3e",
        pfn=f"file:///storage/LOCAL/bench.{panda_id}.job.log.tgz",
        status="transferred",
    )
    metrics = job_pb2.JobMetrics(cpu_time_s=0.001, max_rss_kb=1024, walltime_s=0.002, exit_code=0)
    return pilot_pb2.JobFinal(panda_id=panda_id, lease_epoch=epoch, status=status, metrics=metrics, files=[log_file])


class _LifecyclePilot:
    """One Connect stream holding up to ``slots`` jobs through their whole lifecycle."""

    def __init__(
        self,
        stub: pilot_pb2_grpc.PilotServiceStub,
        killer: submission_pb2_grpc.SubmissionServiceStub,
        pilot_id: str,
        shared: PilotProcessState,
    ) -> None:
        self.sh = shared
        self.killer = killer
        self.pilot_id = pilot_id
        self.call = stub.Connect()
        self.jobs: dict[int, list[int]] = {}  # panda_id -> [epoch, heartbeats acked]
        self.requests: dict[int, float] = {}  # request_id -> sent (answers name their request)
        self.next_request = 1
        self.due: list[pilot_pb2.Heartbeat] = []
        self.killing: dict[int, float] = {}
        self.cancelled: set[int] = set()
        self.idle_until = 0.0
        # One writer task sends what the tick and the reader queue, in order: the reader never
        # waits for a write (it did, under a lock, so an assignment read behind a final being
        # written counted that write in its GetJob latency; a real pilot reads and writes apart).
        self._outbox: asyncio.Queue[pilot_pb2.PilotMessage | None] = asyncio.Queue()

    def _write(self, msg: pilot_pb2.PilotMessage) -> None:
        self._outbox.put_nowait(msg)

    async def _writer(self) -> None:
        while (msg := await self._outbox.get()) is not None:
            await self.call.write(msg)
            if msg.WhichOneof("msg") == "job_request":  # how much of GetJob the generator's own write is
                sent = self.requests.get(msg.job_request.request_id)
                if sent is not None:
                    self.sh.written.append(time.perf_counter() - sent)
        await self.call.done_writing()

    def _beat(self, pid: int, epoch: int, status: int) -> None:
        self.due.append(pilot_pb2.Heartbeat(panda_id=pid, lease_epoch=epoch, status=status))

    async def run(self) -> None:
        hello = pilot_pb2.Hello(
            pilot_id=self.pilot_id, queue=QUEUE, node="bench", cores=self.sh.cfg.slots, reads_batches=True
        )
        self._write(pilot_pb2.PilotMessage(hello=hello))
        writer = asyncio.create_task(self._writer())
        reader = asyncio.create_task(self._read())
        try:
            while not self.sh.stop.is_set():
                for task in (reader, writer):
                    if task.done():  # the stream ended or a reply was refused: fail the run loudly
                        task.result()
                        raise RuntimeError(f"pilot {self.pilot_id}: stream ended early")
                self._tick()
                await asyncio.sleep(self.sh.cfg.tick_s)
            self._outbox.put_nowait(None)  # the writer sends what is queued, then half-closes
            await asyncio.wait_for(writer, timeout=30)
            await asyncio.wait_for(reader, timeout=30)
        finally:
            reader.cancel()
            writer.cancel()

    def _tick(self) -> None:
        if self.due:
            batch, self.due = [hb for hb in self.due if hb.panda_id not in self.cancelled], []
            self._write(pilot_pb2.PilotMessage(heartbeats=pilot_pb2.HeartbeatBatch(heartbeats=batch)))
        free = self.sh.cfg.slots - len(self.jobs) - len(self.requests)
        if free > 0 and time.monotonic() >= self.idle_until:
            for _ in range(self.sh.take(free)):
                rid, self.next_request = self.next_request, self.next_request + 1
                self.requests[rid] = time.perf_counter()
                self._write(pilot_pb2.PilotMessage(job_request=pilot_pb2.JobRequest(n=1, request_id=rid)))

    def _final(self, pid: int, epoch: int, status: int) -> None:
        self._write(pilot_pb2.PilotMessage(final=real_final(pid, epoch, status)))

    async def _kill(self, pid: int) -> None:
        self.killing[pid] = time.perf_counter()
        await self.killer.KillJobs(submission_pb2.KillJobsRequest(panda_ids=[pid], reason="bench"), timeout=30)

    async def _read(self) -> None:
        while True:
            msg = await self.call.read()
            if msg is grpc.aio.EOF:
                return
            for one in msg.batch.messages if msg.HasField("batch") else (msg,):
                self._on_message(one)

    def _on_message(self, msg: pilot_pb2.DispatcherMessage) -> None:
        """One message from the dispatcher (a batch's are read one by one, in order)."""
        sh = self.sh
        kind = msg.WhichOneof("msg")
        if kind == "assignment":
            sh.getjob.append((time.time(), time.perf_counter() - self.requests.pop(msg.assignment.request_id)))
            a = msg.assignment
            self.jobs[a.job.panda_id] = [a.lease_epoch, 0]
            sh.assigned.append((a.job.panda_id, a.lease_epoch))
            self._beat(a.job.panda_id, a.lease_epoch, _STARTING)
        elif kind == "no_job":
            sh.nojob.append(time.perf_counter() - self.requests.pop(msg.no_job.request_id))
            self.idle_until = time.monotonic() + min(msg.no_job.retry_after_s, 0.5)
        elif kind == "command":
            pid = msg.command.panda_id
            if pid in self.killing:
                sh.kill_lat.append(time.perf_counter() - self.killing.pop(pid))
            if pid in self.jobs and self.jobs[pid][1] >= 0:
                self.cancelled.add(pid)
                self.jobs[pid][1] = -1  # stop heartbeating; report it cancelled
                self._final(pid, self.jobs[pid][0], job_pb2.JOB_STATUS_CANCELLED)
        elif kind == "acks":
            for ack in msg.acks.acks:
                self._ack(ack)

    def _ack(self, ack: pilot_pb2.Ack) -> None:
        sh = self.sh
        pid = ack.panda_id
        job = self.jobs.get(pid)
        if ack.result != pilot_pb2.ACK_RESULT_OK:
            if pid in self.cancelled and not ack.is_final:
                return  # a heartbeat that crossed the kill: the final report settles the job
            raise RuntimeError(f"pilot {self.pilot_id}: refused {ack}")
        if job is None:
            return
        if ack.is_final:
            del self.jobs[pid]
            sh.complete()
            if sh.done.value >= sh.total:
                sh.stop.set()
            return
        if job[1] < 0:
            return  # being killed: the final is on its way
        job[1] += 1
        if job[1] <= sh.cfg.renewals:
            if job[1] == 1:
                sh.running_seen += 1
                if sh.cfg.kill_every and sh.running_seen % sh.cfg.kill_every == 0:
                    asyncio.get_running_loop().create_task(self._kill(pid))
            self._beat(pid, job[0], _RUNNING)
        else:
            job[1] = -1
            self._final(pid, job[0], job_pb2.JOB_STATUS_FINISHED)


async def _pilots(addresses: list[str], cfg: LifecycleConfig, index: int, done: Any, total: int) -> dict[str, Any]:
    share = cfg.pilots // cfg.load_processes + (1 if index < cfg.pilots % cfg.load_processes else 0)
    # A local subchannel pool per channel: otherwise gRPC shares one connection per address.
    own = [("grpc.use_local_subchannel_pool", 1)]
    auth = aio_interceptors(resolve_token())
    channels = [
        grpc.aio.insecure_channel(a, options=own, interceptors=auth) for _ in range(cfg.connections) for a in addresses
    ]
    shared = PilotProcessState(cfg, done, total)
    stubs = [pilot_pb2_grpc.PilotServiceStub(c) for c in channels]
    killers = [submission_pb2_grpc.SubmissionServiceStub(c) for c in channels]
    # Streams spread round-robin over addresses (and connections); each pilot's kills go through
    # the next address (cross-process path) or, with one address, another connection.
    n = len(channels)
    pilots = [_LifecyclePilot(stubs[i % n], killers[(i + 1) % n], f"bench-{index}-{i}", shared) for i in range(share)]

    async def watch_total() -> None:
        while not shared.stop.is_set():
            if done.value >= total:
                shared.stop.set()
            await asyncio.sleep(0.1)

    watcher = asyncio.create_task(watch_total())
    probe = _box.LagProbe()
    probe.start()
    pacer = asyncio.create_task(shared.pace(cfg.rate / cfg.load_processes)) if cfg.rate else None
    try:
        await asyncio.wait_for(asyncio.gather(*(p.run() for p in pilots)), timeout=cfg.timeout_s)
    finally:
        watcher.cancel()
        if pacer is not None:
            pacer.cancel()
        for c in channels:
            await c.close()
    return {
        "finished_at": shared.finished_at,
        "getjob": shared.getjob,
        "nojob": shared.nojob,
        "written": shared.written,
        "kill": shared.kill_lat,
        "assigned": shared.assigned,
        "probe": probe.stop(),
    }


def _pilot_process(addresses: list[str], cfg: LifecycleConfig, index: int, done: Any, total: int, out: Any) -> None:
    try:
        out.put(asyncio.run(_pilots(addresses, cfg, index, done, total)))
    except BaseException as exc:  # reported to the parent, which stops the run
        out.put({"error": f"pilot process {index}: {exc!r}"})


# --- orchestration --------------------------------------------------------------------------


def run_lifecycle(kind: str, n_dispatchers: int, cfg: LifecycleConfig, *, workers: int = 1) -> Result:
    """One run: fresh database, ``n_dispatchers`` processes, submitter and pilot processes.

    ``workers`` > 1 runs each dispatcher as ``--workers N`` server processes sharing its port.
    """
    ctx = mp.get_context("spawn")
    res = Result(db=kind, dispatchers=n_dispatchers, planned=cfg.jobs)
    extra: tuple[str, ...] = ("--workers", str(workers)) if workers > 1 else ()
    extra = (*extra, *cfg.dispatcher_args)
    with database(kind, pg_settings=cfg.pg_settings) as url, ExitStack() as stack:
        lag_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ailuro-bench-lag-")))
        extra = (*extra, "--loop-stall-ms", str(_looplag.STALL_MS), "--loop-lag-dir", str(lag_dir))
        # token mode: one embedded issuer shared by all processes, clients send its admin token
        # ($AILURO_TOKEN, inherited by the spawned load processes); else the explicit dev mode
        extra = (*extra, *(load_issuer() if cfg.token_auth else ("--auth", "trusted-metadata")))
        ports = [free_port_block(workers) for _ in range(n_dispatchers)] if cfg.scrape_s > 0 else []
        handles = [
            stack.enter_context(
                dispatcher_handle(url, extra_args=(*extra, *(("--metrics-port", str(ports[i])) if ports else ())))
            )
            for i in range(n_dispatchers)
        ]
        addresses = [h.address for h in handles]
        if ports:
            scraper = Scraper([p + w for p in ports for w in range(workers)], cfg.scrape_s)
            stack.callback(lambda: print(f"  scraped /metrics {scraper.stop()} times", flush=True))
        cpu0 = sum(tree_cpu_seconds(h.pid) for h in handles)
        _looplag.settle()  # every process has written its first report: the baseline
        lag0 = _looplag.read(lag_dir)
        box0 = _box.box_cpu()
        disk = _disk.DiskProbe().start()
        done = ctx.Value("q", 0)
        out: Any = ctx.Queue()
        procs = [ctx.Process(target=submit_process, args=(addresses, cfg, done, out))]
        procs += [
            ctx.Process(target=_pilot_process, args=(addresses, cfg, i, done, cfg.jobs, out))
            for i in range(cfg.load_processes)
        ]
        for p in procs:
            p.start()
        results = [out.get(timeout=cfg.timeout_s + 120) for _ in procs]
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
        cpu1 = sum(tree_cpu_seconds(h.pid) for h in handles)
        box1 = _box.box_cpu()
        res.disk = disk.stop()
        _looplag.settle()
        res.loop_lag = _looplag.during(lag0, _looplag.read(lag_dir))
        errors = [r["error"] for r in results if "error" in r]
        if errors:
            raise RuntimeError("; ".join(errors))
        sub = next(r for r in results if "ids" in r)
        pil = [r for r in results if "ids" not in r]
        finished = sorted(t for r in pil for t in r["finished_at"])
        res.jobs = len(finished)
        res.elapsed_s = finished[-1] - sub["t0"] if finished else 0.0
        lo, hi = int(len(finished) * 0.2), int(len(finished) * 0.8)
        if hi > lo + 1:
            res.steady_jobs_per_s = (hi - lo) / (finished[hi - 1] - finished[lo])
        res.submit_per_s = len(sub["ids"]) / max(sub["t1"] - sub["t0"], 1e-9)
        getjob_all = [tuple(x) for r in pil for x in r["getjob"]]
        getjob = [d for _, d in getjob_all]
        if hi > lo + 1:  # GetJob latency in the steady window, without the start-up burst
            steady = [d for t, d in getjob_all if finished[lo] <= t <= finished[hi - 1]]
            res.steady_getjob_p50_ms = percentile(steady, 50) * 1e3
            res.steady_getjob_p99_ms = percentile(steady, 99) * 1e3
        kills = [x for r in pil for x in r["kill"]]
        nojob = [x for r in pil for x in r["nojob"]]
        res.nojob, res.nojob_p99_ms = len(nojob), percentile(nojob, 99) * 1e3
        written = [x for r in pil for x in r["written"]]
        res.written_p50_ms, res.written_p99_ms = percentile(written, 50) * 1e3, percentile(written, 99) * 1e3
        res.getjob_p50_ms, res.getjob_p99_ms = percentile(getjob, 50) * 1e3, percentile(getjob, 99) * 1e3
        res.kill_p50_ms, res.kill_p99_ms = percentile(kills, 50) * 1e3, percentile(kills, 99) * 1e3
        res.kills = len(kills)
        res.cpu_ms_per_job = (cpu1 - cpu0) * 1e3 / max(res.jobs, 1)
        res.box = _box.share(box0, box1, dispatcher_s=cpu1 - cpu0, load=[r["probe"] for r in results])
        assigned = [tuple(a) for r in pil for a in r["assigned"]]
        res.check = consistency.check(url, submitted=sub["ids"], assignments=assigned, expect_final=True)
    return res


SATURATION_SHARES = (0.5, 0.8)
"""Fractions of the closed-loop steady throughput offered after the saturation run."""
AHEAD_MARGIN = 2_000
"""Jobs waiting activated beyond the pilots' slots in a closed loop with submission alongside: about
two seconds of work at saturation, as the paced runs' ``SUBMIT_LEAD_S`` keeps."""


def closed_loop_ahead(cfg: LifecycleConfig) -> LifecycleConfig:
    """The closed loop whose steady jobs/s is the saturation point: submission goes on through the
    steady window, as it does in the paced runs offered a share of it.

    The backlog is every pilot slot plus :data:`AHEAD_MARGIN`, so no request waits for work; the run
    has at least five backlogs of jobs, so submission lasts past the window's end (80 % of them).
    """
    ahead = cfg.submit_ahead or cfg.pilots * cfg.slots + AHEAD_MARGIN
    return replace(cfg, rate=0.0, submit_ahead=ahead, jobs=max(cfg.jobs, 5 * ahead))


def run_saturation(kind: str, n_dispatchers: int, cfg: LifecycleConfig, *, workers: int = 1) -> list[Result]:
    """Closed loop first, submission alongside (its steady jobs/s is the saturation point S), then
    ``--rate`` at 50 % and 80 % of S."""
    loop = closed_loop_ahead(cfg)
    closed = run_lifecycle(kind, n_dispatchers, loop, workers=workers)
    closed.label = "closed+submit"
    out = [closed]
    print(
        f"saturation: {closed.steady_jobs_per_s:,.0f} jobs/s steady, {loop.jobs:,} jobs submitted at most "
        f"{loop.submit_ahead:,} ahead of completions ({uptime()})",
        flush=True,
    )
    for share in SATURATION_SHARES:
        rate = max(1.0, share * closed.steady_jobs_per_s)
        res = run_lifecycle(kind, n_dispatchers, replace(cfg, rate=rate), workers=workers)
        res.label = f"{share:.0%} = {rate:,.0f}/s"
        print(f"done: {res.label}: {res.jobs_per_s:,.0f} jobs/s ({uptime()})", flush=True)
        out.append(res)
    return out


def main(argv: list[str] | None = None) -> int:
    """Parse options, run each (database, dispatcher count), print the report."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", choices=["sqlite", "postgres", "both"], default="postgres")
    p.add_argument("--dispatchers", default="1,2", help="comma-separated process counts (default: %(default)s)")
    d = LifecycleConfig()
    for name in ("jobs", "batch", "submitters", "pilots", "slots", "load_processes", "renewals", "kill_every"):
        p.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(d, name))
    p.add_argument("--echo-seconds", type=float, default=d.echo_seconds)
    p.add_argument("--timeout", type=float, default=d.timeout_s)
    p.add_argument("--rate", type=float, default=0.0, help="offered jobs/s (default: closed loop, as fast as taken)")
    p.add_argument(
        "--saturation",
        action="store_true",
        help="closed loop, then --rate at 50 %% and 80 %% of its steady jobs/s (three rows per configuration)",
    )
    p.add_argument(
        "--submit-ahead",
        type=int,
        default=0,
        metavar="N",
        help="closed loop: keep at most N jobs submitted and not finished (default: all at once; "
        "--saturation: every pilot slot + 2,000)",
    )
    p.add_argument("--workers", type=int, default=1, help="server processes per dispatcher (ailuro server --workers)")
    p.add_argument(
        "--connections", type=int, default=0, help="connections per load process and address (default: 4 x workers)"
    )
    p.add_argument(
        "--scrape-metrics",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="serve the dispatchers' /metrics and scrape them this often during the run (default: off)",
    )
    p.add_argument(
        "--pg-set", action="append", default=[], help="NAME=VALUE set on the benchmark database (repeatable)"
    )
    p.add_argument(
        "--dispatcher-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="pass ARG to every `ailuro server` (repeatable; e.g. --dispatcher-arg=--claim-batches-in-flight=1)",
    )
    p.add_argument(
        "--auth",
        choices=["token", "trusted-metadata"],
        default="token",
        help="dispatcher auth mode (default: %(default)s)",
    )
    a = p.parse_args(argv)
    cfg = LifecycleConfig(
        jobs=a.jobs,
        batch=a.batch,
        submitters=a.submitters,
        pilots=a.pilots,
        slots=a.slots,
        load_processes=a.load_processes,
        renewals=max(a.renewals, 2),
        kill_every=a.kill_every,
        echo_seconds=a.echo_seconds,
        timeout_s=a.timeout,
        rate=a.rate,
        connections=a.connections or 4 * a.workers,
        pg_settings=tuple(a.pg_set),
        token_auth=a.auth == "token",
        scrape_s=a.scrape_metrics,
        dispatcher_args=tuple(a.dispatcher_arg),
        submit_ahead=a.submit_ahead,
    )
    kinds = ["sqlite", "postgres"] if a.db == "both" else [a.db]
    counts = [int(x) for x in a.dispatchers.split(",") if x]
    results = []
    print(f"start: {uptime()}", flush=True)
    for kind in kinds:
        for n in counts:
            if a.saturation:
                results += run_saturation(kind, n, cfg, workers=a.workers)
            else:
                results.append(run_lifecycle(kind, n, cfg, workers=a.workers))
            print(f"done: {kind} x{n}: {results[-1].jobs_per_s:,.0f} jobs/s ({uptime()})", flush=True)
    ceiling = measure_ceiling(seconds=cfg.echo_seconds)
    print(report(results, ceiling, cfg, workers=a.workers))
    return 0 if all(r.check.ok and r.jobs == r.planned for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
