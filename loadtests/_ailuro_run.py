"""The Ailuro side of the pilot comparison: a dispatcher on PostgreSQL and real ``ailuro pilot`` processes.

One run: a fresh PostgreSQL database, one ``python -m dispatcher`` process, ``pilots`` real pilot
processes (``python -m pilot``) sharing ``slots`` payload slots (``--jobs-in-parallel`` and
``--cores`` of each pilot add up to ``slots``), started and connected before anything is
submitted. Then ``jobs`` jobs with one payload each are submitted in batches of 500, and the run
ends when the database shows every job final. The span is the first submit to the last
``end_time`` the dispatcher recorded.

CPU: the pilots (and everything they fork: guards, payloads) run in their own ``cpuacct``
cgroup when one can be made (else the sum over their process trees, see :mod:`loadtests._cpu`);
the dispatcher is one process, read from ``/proc/<pid>/stat``; the PostgreSQL backends serving
the run's database are found in ``pg_stat_activity`` and read the same way. Each is the delta
from just before the first submit to the moment the last job was seen final.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import create_engine, text

from ailuro.credentials import write_token_file
from ailuro.v1 import job_pb2, submission_pb2, submission_pb2_grpc
from loadtests import consistency
from loadtests._cpu import CpuGroup, proc_cpu_s, tree_cpu_s, wait_until
from loadtests._harness import channel as token_channel
from loadtests._harness import database, dispatcher_handle, role_token

QUEUE = "LOCAL"
SUBMIT_BATCH = 500
FINAL_STATES = ("finished", "failed", "cancelled", "closed")


@dataclass(frozen=True, kw_only=True)
class AiluroSetup:
    """How the Ailuro side runs."""

    pilots: int = 8
    """Pilot processes."""
    slots: int = 8
    """Payload slots over all pilots (each pilot gets its share as --jobs-in-parallel and --cores)."""
    heartbeat_s: float = 30.0
    """The pilots' heartbeat period (the default of ``ailuro pilot``)."""
    pilot_args: tuple[str, ...] = ()
    """Extra options for every pilot (e.g. ``--unary``)."""
    idle_poll_s: float = 1.0
    """The dispatcher's ``--no-job-retry``: how long an idle pilot waits before asking again (the
    dispatcher's default is 5 s; the CI's HTCondor negotiates every 2 s, its Slurm schedules every 2 s)."""
    profile_dir: Path | None = None
    """Run every pilot under ``py-spy record`` writing a flame graph here (profiling only)."""


@dataclass(kw_only=True)
class RunResult:
    """What one system did with one payload."""

    system: str
    payload: str
    jobs: int
    done: int = 0
    elapsed_s: float = 0.0
    slots: int = 0
    cpu_s: dict[str, float] = field(default_factory=dict)
    """CPU seconds by component (e.g. pilots, dispatcher, postgres)."""
    detail_s: dict[str, float] = field(default_factory=dict)
    """CPU seconds of parts of a component (e.g. the pilot processes alone, without what they fork)."""
    note: str = ""
    failed: int = 0
    check: str = ""
    """The database consistency check's summary (Ailuro only: exactly once, none lost)."""

    @property
    def jobs_per_s(self) -> float:
        """Jobs finished over the span (first submit to last job finished)."""
        return self.done / self.elapsed_s if self.elapsed_s else 0.0

    def cpu_per_1000(self, part: str | None = None) -> float:
        """CPU seconds per 1,000 jobs, of one component or of all of them."""
        total = self.cpu_s.get(part, 0.0) if part else sum(self.cpu_s.values())
        return total * 1000 / self.done if self.done else 0.0


def _shares(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def _backend_pids(engine_url: str, dbname: str) -> list[int]:
    engine = create_engine(engine_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT pid FROM pg_stat_activity WHERE datname = :d AND pid <> pg_backend_pid()"), {"d": dbname}
            )
            return [int(r[0]) for r in rows]
    finally:
        engine.dispose()


@contextlib.contextmanager
def _pilot_processes(address: str, setup: AiluroSetup, work: Path, group: CpuGroup | None) -> Iterator[list[int]]:
    procs: list[subprocess.Popen[bytes]] = []
    # real pilots get a pilot token bound to the queue, as the factory gives them (token mode)
    token = role_token("", "", "pilot", QUEUE)
    token_args = ("--token-file", str(write_token_file(work / "pilot.token", token))) if token else ()
    try:
        for i, slots in enumerate(_shares(setup.slots, setup.pilots)):
            if slots == 0:
                continue
            pdir = work / f"pilot-{i}"
            pdir.mkdir()
            argv = [
                sys.executable,
                "-m",
                "pilot",
                "--server",
                address,
                "--queue",
                QUEUE,
                "--pilot-id",
                f"bench-{i}-{uuid.uuid4().hex[:6]}",
                "--workdir",
                str(pdir),
                "--storage-root",
                str(work / "storage"),
                "--jobs-in-parallel",
                str(slots),
                "--cores",
                str(slots),
                "--heartbeat-s",
                str(setup.heartbeat_s),
                "--idle-timeout-s",
                "3600",
                *token_args,
                *setup.pilot_args,
            ]
            if setup.profile_dir is not None:
                out = setup.profile_dir / f"pilot-{i}.txt"
                spy = str(Path(sys.executable).parent / "py-spy")
                argv = [spy, "record", "--format", "raw", "-r", "200", "-o", str(out), "--", *argv]
            with open(pdir / "pilot.log", "wb") as log:
                proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            procs.append(proc)
            if group is not None:
                group.add(proc.pid)
        yield [p.pid for p in procs]
    finally:
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM if setup.profile_dir is None else signal.SIGINT)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=10)


def _connected(db_url: str, n: int) -> bool:
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            got = conn.execute(text("SELECT count(*) FROM pilots WHERE connected")).scalar_one()
    finally:
        engine.dispose()
    return int(got) >= n


def _submit(address: str, argv: list[str], n: int, tag: str) -> list[int]:
    ids: list[int] = []
    with token_channel(address) as channel:
        stub = submission_pb2_grpc.SubmissionServiceStub(channel)
        for start in range(0, n, SUBMIT_BATCH):
            jobs = [
                job_pb2.Job(
                    transformation=argv[0],
                    job_parameters=shlex.join(argv[1:]),
                    computing_site=QUEUE,
                    job_name=f"{tag}.{i}",
                )
                for i in range(start, min(n, start + SUBMIT_BATCH))
            ]
            reply = stub.SubmitJobs(
                submission_pb2.SubmitJobsRequest(request_id=uuid.uuid4().hex, jobs=jobs), timeout=120
            )
            ids.extend(reply.panda_ids)
    return ids


def run_ailuro(payload: str, argv: list[str], jobs: int, setup: AiluroSetup, timeout_s: float) -> RunResult:
    """Run ``jobs`` jobs of ``argv`` through a fresh dispatcher and real pilots (see the module docstring)."""
    result = RunResult(system="Ailuro", payload=payload, jobs=jobs, slots=setup.slots)
    with contextlib.ExitStack() as stack:
        db_url = stack.enter_context(database("postgres"))
        handle = stack.enter_context(dispatcher_handle(db_url, extra_args=("--no-job-retry", str(setup.idle_poll_s))))
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ailuro-bench-pilots-")))
        group = CpuGroup.make("pilots")
        if group is not None:
            stack.callback(group.remove)
        pilot_pids = stack.enter_context(_pilot_processes(handle.address, setup, work, group))
        live = len(pilot_pids)
        if not wait_until(lambda: _connected(db_url, live), 60):
            result.note = "pilots did not connect"
            return result
        admin_url = db_url.rsplit("/", 1)[0] + "/postgres"
        dbname = db_url.rsplit("/", 1)[1]
        backends = _backend_pids(admin_url, dbname)

        def pilots_cpu() -> float:
            got = group.cpu_s() if group is not None else None
            return got if got is not None else tree_cpu_s(pilot_pids)

        def own_cpu() -> float:
            return sum(proc_cpu_s(p, children=False) for p in pilot_pids)

        before = {
            "pilots": pilots_cpu(),
            "pilot processes": own_cpu(),
            "dispatcher": proc_cpu_s(handle.pid),
            "postgres": sum(proc_cpu_s(p) for p in backends),
        }
        if setup.profile_dir is not None:
            spy = str(Path(sys.executable).parent / "py-spy")
            out = str(setup.profile_dir / "dispatcher.txt")
            spy_argv = [spy, "record", "--format", "raw", "-r", "200", "-o", out, "--pid", str(handle.pid)]
            prof = subprocess.Popen(spy_argv)
            stack.callback(prof.wait, 60)
            stack.callback(prof.send_signal, signal.SIGINT)
        t0 = time.time()
        submitted = _submit(handle.address, argv, jobs, f"bench.{payload}")
        engine = create_engine(db_url)
        stack.callback(engine.dispose)
        finals = ", ".join(f"'{s}'" for s in FINAL_STATES)

        def counts() -> tuple[int, int, float | None]:
            with engine.connect() as conn:
                row = conn.execute(
                    text(
                        f"SELECT count(*), count(*) FILTER (WHERE status <> 'finished'), max(end_time) "
                        f"FROM jobs WHERE status IN ({finals})"
                    )
                ).one()
            return int(row[0]), int(row[1]), row[2]

        done = wait_until(lambda: counts()[0] >= jobs, timeout_s, interval_s=0.25)
        backends = sorted(set(backends) | set(_backend_pids(admin_url, dbname)))
        after = {
            "pilots": pilots_cpu(),
            "pilot processes": own_cpu(),
            "dispatcher": proc_cpu_s(handle.pid),
            "postgres": sum(proc_cpu_s(p) for p in backends),
        }
        n, failed, last_end = counts()
        result.done, result.failed = n, failed
        result.elapsed_s = (float(last_end) if last_end else time.time()) - t0
        result.cpu_s = {k: after[k] - before[k] for k in before if k != "pilot processes"}
        result.detail_s = {"pilot processes": after["pilot processes"] - before["pilot processes"]}
        # after the CPU readings: the check's own queries are not counted for anyone
        check = consistency.check(db_url, submitted=submitted, expect_final=done)
        result.check = check.summary()
        if not done:
            result.note = f"timed out after {timeout_s:.0f}s"
        if not check.ok:
            result.note = (result.note + "; " if result.note else "") + "CONSISTENCY VIOLATED"
        if group is None:
            result.note = (result.note + "; " if result.note else "") + "pilot CPU from /proc (no cgroup)"
    return result
