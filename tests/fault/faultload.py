"""Load that survives faults, for the fault-tolerance tests: resilient submitters and pilots.

Clients behave like the real ones under failure: a submitter retries ``SubmitJobs`` with the same
``request_id`` on UNAVAILABLE / DEADLINE_EXCEEDED, moving to the next dispatcher address; a pilot
re-opens its stream on the next address with ``held_jobs``, heartbeats every period whatever
happened to earlier acks, resends unacknowledged finals, and drops a job whose lease it lost.
Every status code a client sees is tallied, so a test can say which errors clients got.

Also runnable as a process hosting pilots (``python faultload.py pilots ...``) so a test can
SIGKILL pilots.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from sqlalchemy import create_engine, text

from ailuro import targets
from ailuro.credentials import aio_interceptors, resolve_token
from ailuro.v1 import job_pb2, pilot_pb2, pilot_pb2_grpc, submission_pb2, submission_pb2_grpc

QUEUE = "LOCAL"
RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}
FINAL = ("finished", "failed", "cancelled", "closed")


@dataclass(kw_only=True)
class Tally:
    """What clients saw."""

    submitted: list[int] = field(default_factory=list)
    assignments: list[tuple[int, int]] = field(default_factory=list)
    codes: Counter[str] = field(default_factory=Counter)
    finished: set[int] = field(default_factory=set)
    replayed: int = 0
    write_races: int = 0
    """Writes that failed because the server had just ended the stream (see ``_session``)."""
    odd: list[str] = field(default_factory=list)
    """``where: CODE details`` of every non-retryable status clients saw (for failure messages)."""
    moves: list[tuple[float, float]] = field(default_factory=list)
    """(wall clock a pilot's stream failed, wall clock its next stream delivered a message)."""
    sink: Any = None
    """A text file each assignment is written to at once (survives a SIGKILL of the process)."""


async def submit(
    addresses: list[str], n_jobs: int, tally: Tally, *, batch: int = 100, deadline_s: float = 60.0, timeout: float = 5.0
) -> None:
    """Submit ``n_jobs`` in batches; retry each batch with its request_id until accepted."""
    channels = [grpc.aio.insecure_channel(a) for a in addresses]
    stubs = [submission_pb2_grpc.SubmissionServiceStub(c) for c in channels]
    end = time.monotonic() + deadline_s
    try:
        for b, start in enumerate(range(0, n_jobs, batch)):
            jobs = [
                job_pb2.Job(job_name=f"fault.{b}.{k}", transformation="/bin/true", computing_site=QUEUE)
                for k in range(min(batch, n_jobs - start))
            ]
            req = submission_pb2.SubmitJobsRequest(request_id=uuid.uuid4().hex, jobs=jobs)
            attempt = 0
            while True:
                try:
                    resp = await stubs[(b + attempt) % len(stubs)].SubmitJobs(req, timeout=timeout)
                except grpc.aio.AioRpcError as exc:
                    tally.codes[exc.code().name] += 1
                    if exc.code() not in RETRYABLE:
                        tally.odd.append(f"SubmitJobs: {exc.code().name} {exc.details()}")
                    if exc.code() not in RETRYABLE or time.monotonic() > end:
                        raise
                    attempt += 1
                    await asyncio.sleep(min(0.05 * 2**attempt, 1.0))
                    continue
                tally.submitted.extend(resp.panda_ids)
                tally.replayed += resp.replayed
                break
    finally:
        for c in channels:
            await c.close()


class ResilientPilot:
    """A pilot that reconnects, resumes its held jobs and finishes each after ``beats`` heartbeats."""

    def __init__(
        self, addresses: list[str], pilot_id: str, tally: Tally, *, slots: int = 5, beats: int = 2, period: float = 0.2
    ) -> None:
        self.addresses = addresses
        self.pilot_id = pilot_id
        self.tally = tally
        self.slots, self.beats, self.period = slots, beats, period
        self.jobs: dict[int, dict[str, Any]] = {}  # panda_id -> epoch, beats acked, final status sent
        self.index = hash(pilot_id) % len(addresses)
        self.asking = False
        self.server_list = False
        """Use one round-robin channel over every address (``ailuro.targets``, as ``ailuro pilot
        --server a,b`` does) instead of rotating through them by hand."""
        self.channel_options: list[tuple[str, Any]] = []
        self.lost_at = 0.0

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop``; reconnect (next address) after any stream failure."""
        backoff = 0.05
        while not stop.is_set():
            address = self.addresses[self.index % len(self.addresses)]
            # Its own connection, as a real pilot (its own process) has: gRPC would otherwise
            # share one per address among all pilots of this process.
            own = [("grpc.use_local_subchannel_pool", 1), *self.channel_options]
            try:
                if self.server_list:
                    channel = targets.aio_channel(",".join(self.addresses), options=own, token=resolve_token())
                else:
                    channel = grpc.aio.insecure_channel(
                        address, options=own, interceptors=aio_interceptors(resolve_token())
                    )
                async with channel:
                    await self._session(pilot_pb2_grpc.PilotServiceStub(channel), stop)
                backoff = 0.05
            except grpc.aio.AioRpcError as exc:
                self.lost_at = self.lost_at or time.time()
                self.tally.codes[exc.code().name] += 1
                if exc.code() not in RETRYABLE:
                    self.tally.odd.append(f"Connect: {exc.code().name} {exc.details()}")
                self.index += 1
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 1.0)

    async def _session(self, stub: pilot_pb2_grpc.PilotServiceStub, stop: asyncio.Event) -> None:
        call = stub.Connect()
        held = [pilot_pb2.HeldJob(panda_id=p, lease_epoch=j["epoch"]) for p, j in self.jobs.items()]
        hello = pilot_pb2.Hello(pilot_id=self.pilot_id, queue=QUEUE, node="fault", held_jobs=held)
        await call.write(pilot_pb2.PilotMessage(hello=hello))
        self.asking = False
        reader = asyncio.create_task(self._read(call))
        try:
            while not stop.is_set() and not reader.done():
                # A write fails only once the call is over (the server ended it meanwhile).
                try:
                    await self._tick(call)
                except asyncio.InvalidStateError:  # the server's status has arrived: the reader raises it
                    self.tally.write_races += 1
                    await asyncio.wait({reader}, timeout=5)
                    break
                except grpc.aio.AioRpcError as exc:
                    # It had not arrived: grpc.aio records a status of its own making on the call
                    # (INTERNAL "Internal error from Core", grpc/grpc#36066), and the server's is lost.
                    # Not something the server sent; the tests check the dispatcher's log for those.
                    self.tally.write_races += 1
                    raise grpc.aio.AioRpcError(
                        grpc.StatusCode.UNAVAILABLE, None, None, f"stream ended while writing ({exc.details()})"
                    ) from None
                await asyncio.sleep(self.period)
            if reader.done():
                reader.result()  # raises the stream's error
                raise grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, None, None, "stream ended")
            await call.done_writing()
            await asyncio.wait_for(reader, timeout=10)
        finally:
            reader.cancel()

    async def _tick(self, call: Any) -> None:
        beats = []
        for pid, job in list(self.jobs.items()):
            if job["final"]:
                final = pilot_pb2.JobFinal(panda_id=pid, lease_epoch=job["epoch"], status=job["final"])
                await call.write(pilot_pb2.PilotMessage(final=final))  # resent until acknowledged
            else:
                status = job_pb2.JOB_STATUS_RUNNING if job["acked"] else job_pb2.JOB_STATUS_STARTING
                beats.append(pilot_pb2.Heartbeat(panda_id=pid, lease_epoch=job["epoch"], status=status))
        if beats:
            await call.write(pilot_pb2.PilotMessage(heartbeats=pilot_pb2.HeartbeatBatch(heartbeats=beats)))
        free = self.slots - len(self.jobs)
        if free > 0 and not self.asking:
            self.asking = True
            await call.write(pilot_pb2.PilotMessage(job_request=pilot_pb2.JobRequest(n=free)))

    async def _read(self, call: Any) -> None:
        while True:
            msg = await call.read()
            if msg is grpc.aio.EOF:
                return
            if self.lost_at:
                self.tally.moves.append((self.lost_at, time.time()))
                self.lost_at = 0.0
            kind = msg.WhichOneof("msg")
            if kind == "assignment":
                a = msg.assignment
                self.tally.assignments.append((a.job.panda_id, a.lease_epoch))
                if self.tally.sink is not None:
                    self.tally.sink.write(f"{a.job.panda_id} {a.lease_epoch}\n")
                    self.tally.sink.flush()
                self.jobs[a.job.panda_id] = {"epoch": a.lease_epoch, "acked": 0, "final": 0}
                self.asking = False
            elif kind == "no_job":
                self.asking = False
            elif kind == "command":
                job = self.jobs.get(msg.command.panda_id)
                if job is not None:
                    job["final"] = job_pb2.JOB_STATUS_CANCELLED
            elif kind == "acks":
                for ack in msg.acks.acks:
                    self._ack(ack)

    def _ack(self, ack: pilot_pb2.Ack) -> None:
        job = self.jobs.get(ack.panda_id)
        if job is None or job["epoch"] != ack.lease_epoch:
            return
        if ack.result != pilot_pb2.ACK_RESULT_OK:
            del self.jobs[ack.panda_id]  # the lease is gone: stop the job, never report it again
            return
        if ack.is_final:
            if job["final"] == job_pb2.JOB_STATUS_FINISHED:
                self.tally.finished.add(ack.panda_id)
            del self.jobs[ack.panda_id]
        elif not job["final"]:
            job["acked"] += 1
            if job["acked"] >= self.beats:
                job["final"] = job_pb2.JOB_STATUS_FINISHED


def job_states(db_url: str) -> Counter[str]:
    """Jobs per state, read from the database."""
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            return Counter({st: int(n) for st, n in conn.execute(text("SELECT status, count(*) FROM jobs GROUP BY 1"))})
    finally:
        engine.dispose()


async def wait_all_final(db_url: str, n_jobs: int, *, timeout_s: float) -> Counter[str]:
    """Poll the database until ``n_jobs`` jobs exist and all are final (or the timeout); the last counts."""
    end = time.monotonic() + timeout_s
    while True:
        counts = await asyncio.to_thread(job_states, db_url)
        if sum(counts.values()) >= n_jobs and all(st in FINAL for st in counts):
            return counts
        if time.monotonic() > end:
            return counts
        await asyncio.sleep(0.3)


async def _pilot_main(addresses: list[str], count: int, prefix: str, out: Path, seconds: float) -> None:
    with out.open("a", encoding="utf-8") as sink:
        tally = Tally(sink=sink)
        stop = asyncio.Event()
        pilots = [ResilientPilot(addresses, f"{prefix}-{i}", tally) for i in range(count)]
        tasks = [asyncio.create_task(p.run(stop)) for p in pilots]
        await asyncio.sleep(seconds)
        stop.set()
        await asyncio.wait(tasks, timeout=15)


async def _multihost_main(a: argparse.Namespace) -> dict[str, Any]:
    """Submit ``a.jobs`` through the SDK and run ``a.count`` pilots, both on the server list
    ``a.addresses``, until every job finished or ``a.seconds`` passed; what the clients saw."""
    from ailuro import Client

    addresses = a.addresses.split(",")
    keepalive = [("grpc.keepalive_time_ms", a.keepalive_ms), ("grpc.keepalive_timeout_ms", a.keepalive_ms)]
    tally = Tally()
    stop = asyncio.Event()
    pilots = [ResilientPilot(addresses, f"{a.prefix}-{i}", tally) for i in range(a.count)]
    for p in pilots:
        p.server_list, p.channel_options = True, keepalive
    tasks = [asyncio.create_task(p.run(stop)) for p in pilots]

    def submit_all() -> None:
        with Client(a.addresses, identity="multihost", timeout=10, retries=20) as client:
            for start in range(0, a.jobs, 50):
                jobs = [{"transformation": "/bin/true", "job_name": f"mh.{start + k}"} for k in range(50)]
                tally.submitted += client.submit(jobs[: a.jobs - start])

    await asyncio.to_thread(submit_all)
    end = time.monotonic() + a.seconds
    while len(tally.finished) < a.jobs and time.monotonic() < end:
        await asyncio.sleep(0.2)
    stop.set()
    await asyncio.wait(tasks, timeout=15)
    return {
        "submitted": tally.submitted,
        "assignments": tally.assignments,
        "finished": sorted(tally.finished),
        "moves": tally.moves,
        "codes": dict(tally.codes),
    }


def read_assignments(path: Path) -> list[tuple[int, int]]:
    """The ``(panda_id, lease_epoch)`` pairs a pilot process wrote to ``path`` (none if it never did)."""
    if not path.exists():
        return []
    return [(int(a), int(b)) for a, b in (line.split() for line in path.read_text().splitlines() if line.strip())]


def main(argv: list[str] | None = None) -> int:
    """``faultload.py pilots --addresses a,b --count N --prefix P --out FILE --seconds S``, or
    ``faultload.py multihost ... --jobs N`` (SDK submitter and pilots on a server list; JSON out)."""
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["pilots", "multihost"])
    p.add_argument("--jobs", type=int, default=600, help="multihost: jobs to submit")
    p.add_argument("--keepalive-ms", type=int, default=5000, help="multihost: client keepalive ping period")
    p.add_argument("--addresses", required=True)
    p.add_argument("--count", type=int, default=5)
    p.add_argument("--prefix", default="proc")
    p.add_argument("--out", required=True)
    p.add_argument("--seconds", type=float, default=60.0)
    a = p.parse_args(argv)
    if a.mode == "multihost":
        Path(a.out).write_text(json.dumps(asyncio.run(_multihost_main(a))))
        return 0
    asyncio.run(_pilot_main(a.addresses.split(","), a.count, a.prefix, Path(a.out), a.seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
