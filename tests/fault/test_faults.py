"""Fault tolerance under load: each test breaks something mid-run and ends with the consistency check.

Real processes throughout: dispatchers (``run_dispatcher.py``, short timeouts), PostgreSQL (the
shared server, or a private cluster when the test restarts it), gRPC clients from
``faultload.py``. Bounded: a few hundred jobs each, deadlines on every wait.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from faultload import ResilientPilot, Tally, job_states, read_assignments, submit, wait_all_final
from sqlalchemy import create_engine, text

from ailuro.v1 import job_pb2, pilot_pb2, pilot_pb2_grpc, submission_pb2, submission_pb2_grpc
from loadtests import consistency

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(240)]

HERE = Path(__file__).parent


def _assert_consistent(db_url: str, tally: Tally, *, expect_final: bool = True) -> consistency.Consistency:
    res = consistency.check(db_url, submitted=tally.submitted, assignments=tally.assignments, expect_final=expect_final)
    assert res.ok, res.summary()
    return res


def _finished_in_db(db_url: str) -> set[int]:
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            return {int(r[0]) for r in conn.execute(text("SELECT panda_id FROM jobs WHERE status = 'finished'"))}
    finally:
        engine.dispose()


async def _run_load(
    addresses: list[str],
    db_url: str,
    tally: Tally,
    *,
    jobs: int,
    pilots: int,
    fault: Callable[[], Any],
    fault_after: int,
    timeout_s: float = 90.0,
) -> Any:
    """Submit ``jobs``, run ``pilots``; call ``fault()`` once ``fault_after`` jobs are dispatched; drain."""
    stop = asyncio.Event()
    fleet = [ResilientPilot(addresses, f"p{i}", tally) for i in range(pilots)]
    tasks = [asyncio.create_task(p.run(stop)) for p in fleet]
    submitter = asyncio.create_task(submit(addresses, jobs, tally, batch=50, deadline_s=timeout_s))
    result = None
    try:
        end = time.monotonic() + timeout_s
        while len(tally.assignments) < fault_after:
            assert time.monotonic() < end, f"only {len(tally.assignments)} dispatches before the fault"
            await asyncio.sleep(0.05)
        result = await fault()
        await asyncio.wait_for(submitter, timeout=timeout_s)
        counts = await wait_all_final(db_url, jobs, timeout_s=timeout_s)
        assert sum(counts.values()) == jobs and set(counts) <= {"finished"}, counts
    finally:
        stop.set()
        await asyncio.wait(tasks, timeout=20)
        submitter.cancel()
    return result


def _sigkill_one_of_two(pg_url: str, dispatchers: Callable[..., Any], **opts: Any) -> None:
    """Two dispatchers (``opts`` for both) under load; SIGKILL the first; every job finishes exactly once."""
    d1, d2 = dispatchers(pg_url, "d1", **opts), dispatchers(pg_url, "d2", **opts)
    tally = Tally()

    async def kill() -> None:
        d1.kill()

    asyncio.run(_run_load([d1.address, d2.address], pg_url, tally, jobs=600, pilots=12, fault=kill, fault_after=150))
    assert d1.proc.returncode == -signal.SIGKILL
    assert d2.proc.poll() is None, d2.tail()
    assert tally.finished <= _finished_in_db(pg_url)
    _assert_consistent(pg_url, tally)


def test_sigkill_one_of_two_dispatchers(pg_url: str, dispatchers: Callable[..., Any]) -> None:
    """Pilots of the killed process move to the other; nothing is lost or dispatched twice."""
    _sigkill_one_of_two(pg_url, dispatchers)


def test_sigkill_a_dispatcher_whose_shelves_hold_jobs(pg_url: str, dispatchers: Callable[..., Any]) -> None:
    """Both processes keep the candidate jobs they read for 600 s (``claim_pool_s``), longer than this
    test may run, so their shelves hold the same rows and claims find rows taken by the other. One is
    SIGKILLed: nothing it had read is withheld (a shelf reserves nothing in the database; the load's
    deadlines are far shorter than 600 s), and every job finishes exactly once through the other's
    one-statement claims."""
    _sigkill_one_of_two(pg_url, dispatchers, claim_pool_s=600.0)


def _worker_pids(supervisor: int) -> list[int]:
    """The dispatcher worker processes of a ``--workers`` supervisor (not multiprocessing's helpers)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (stat.parent / "cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        if ppid == supervisor and b"spawn_main" in cmdline and b"resource_tracker" not in cmdline:
            pids.append(int(stat.parent.name))
    return sorted(pids)


def test_sigkill_one_worker_of_a_multi_process_dispatcher(pg_url: str, dispatchers: Callable[..., Any]) -> None:
    """``--workers 2`` on one port: SIGKILL one worker mid-load; its pilots reconnect to the same
    address (the kernel hands them to the survivor, or to the restarted worker), resume their jobs,
    and every job finishes exactly once."""
    d = dispatchers(pg_url, "multi", workers=2)
    workers = _worker_pids(d.proc.pid)
    assert len(workers) == 2, workers
    tally = Tally()

    async def kill_one_worker() -> None:
        os.kill(workers[0], signal.SIGKILL)

    # 24 pilots, each its own connection: both workers hold streams when one is killed
    asyncio.run(_run_load([d.address], pg_url, tally, jobs=600, pilots=24, fault=kill_one_worker, fault_after=150))
    assert d.proc.poll() is None, d.tail()
    assert tally.codes, "no pilot lost its stream: the killed worker served nobody"
    assert set(tally.codes) <= {"UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED"}, tally.codes
    restarted = _worker_pids(d.proc.pid)
    assert len(restarted) == 2 and workers[0] not in restarted, (workers, restarted, d.tail())
    assert tally.finished <= _finished_in_db(pg_url)
    _assert_consistent(pg_url, tally)


def test_restart_postgres_under_load(private_pg: Any, dispatchers: Callable[..., Any]) -> None:
    """Dispatchers survive a PostgreSQL restart; clients see only UNAVAILABLE meanwhile; nothing lost."""
    admin = create_engine(private_pg.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text("CREATE DATABASE ailuro_fault"))
    admin.dispose()
    db_url = private_pg.url.rsplit("/", 1)[0] + "/ailuro_fault"
    d1, d2 = dispatchers(db_url, "d1"), dispatchers(db_url, "d2")
    tally = Tally()
    probe_codes: list[str] = []

    async def restart() -> None:
        async with grpc.aio.insecure_channel(d1.address) as channel:
            stub = submission_pb2_grpc.SubmissionServiceStub(channel)
            await asyncio.to_thread(private_pg.stop)
            for _ in range(10):  # while the database is down, calls fail with a retryable code
                try:
                    await stub.ListJobs(submission_pb2.ListJobsRequest(page_size=1), timeout=5)
                    probe_codes.append("OK")
                except grpc.aio.AioRpcError as exc:
                    probe_codes.append(exc.code().name)
                await asyncio.sleep(0.1)
            await asyncio.to_thread(private_pg.start)

    asyncio.run(
        _run_load(
            [d1.address, d2.address], db_url, tally, jobs=500, pilots=10, fault=restart, fault_after=100, timeout_s=120
        )
    )
    assert "UNAVAILABLE" in probe_codes, probe_codes
    assert set(probe_codes) <= {"UNAVAILABLE", "OK"}, probe_codes
    assert set(tally.codes) <= {"UNAVAILABLE", "DEADLINE_EXCEEDED"}, (tally.codes, tally.odd[:5])
    for d in (d1, d2):
        assert d.proc.poll() is None, d.tail()
        assert "failed unexpectedly" not in d.log.read_text(errors="replace"), d.tail()  # no INTERNAL sent
    _assert_consistent(db_url, tally)


def test_sigkill_pilots_jobs_fail_over_by_lease(pg_url: str, dispatchers: Callable[..., Any], tmp_path: Path) -> None:
    """Pilot processes killed mid-job: their leases lapse, the jobs are retried elsewhere and finish."""
    d1 = dispatchers(pg_url, "d1")
    jobs = 400
    tally = Tally()
    asyncio.run(submit([d1.address], jobs, tally, batch=100))
    procs = []
    for i in range(4):
        argv = [sys.executable, str(HERE / "faultload.py"), "pilots", "--addresses", d1.address]
        argv += ["--count", "4", "--prefix", f"proc{i}", "--out", str(tmp_path / f"pilots{i}.txt")]
        argv += ["--seconds", "100"]
        procs.append(subprocess.Popen(argv, cwd=HERE.parents[1]))
    try:
        # kill only once the doomed pilots (proc0-*, proc1-*) hold started jobs: a pilot that dies
        # holding only `sent` jobs is recovered by the sent-timeout requeue, not by its lease
        engine = create_engine(pg_url)
        started_on_doomed = text(
            "SELECT count(*) FROM jobs WHERE status IN ('starting', 'running') "
            "AND (pilot_id LIKE 'proc0-%' OR pilot_id LIKE 'proc1-%')"
        )
        deadline = time.monotonic() + 60
        while True:
            with engine.connect() as conn:
                if conn.execute(started_on_doomed).scalar_one() >= 4:
                    break
            assert time.monotonic() < deadline, job_states(pg_url)
            time.sleep(0.02)
        engine.dispose()
        for p in procs[:2]:  # half the pilots die holding jobs
            p.send_signal(signal.SIGKILL)
            p.wait(timeout=10)
        counts = asyncio.run(wait_all_final(pg_url, jobs, timeout_s=90))
        assert sum(counts.values()) == jobs and set(counts) <= {"finished"}, counts
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            p.wait(timeout=30)
    for i in range(4):
        tally.assignments += read_assignments(tmp_path / f"pilots{i}.txt")
    engine = create_engine(pg_url)
    with engine.connect() as conn:
        retried = conn.execute(text("SELECT count(*) FROM jobs WHERE attempt_nr > 1")).scalar_one()
        lost = conn.execute(
            text("SELECT count(*) FROM job_events WHERE reason LIKE '%heartbeat%' OR actor LIKE '%watchdog%'")
        ).scalar_one()
    engine.dispose()
    assert retried > 0 and lost > 0, (retried, lost)
    _assert_consistent(pg_url, tally)


def test_submit_retried_after_timeout_creates_no_duplicates(pg_url: str, dispatchers: Callable[..., Any]) -> None:
    """Timed-out SubmitJobs retried with the same request_id, also concurrently on two processes: no copies."""
    d1, d2 = dispatchers(pg_url, "d1"), dispatchers(pg_url, "d2")
    tally = Tally()
    batches, size = 40, 25

    async def one(b: int, stubs: list[Any]) -> None:
        jobs = [job_pb2.Job(job_name=f"dup.{b}.{k}", transformation="/bin/true") for k in range(size)]
        req = submission_pb2.SubmitJobsRequest(request_id=uuid.uuid4().hex, jobs=jobs)
        with pytest.raises(grpc.aio.AioRpcError) as info:  # the client gives up before any answer
            await stubs[b % 2].SubmitJobs(req, timeout=0.0005)
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        # Retry on both processes at once: exactly one set of jobs, the same ids for both answers.
        answers = await asyncio.gather(*(s.SubmitJobs(req, timeout=30) for s in stubs))
        assert list(answers[0].panda_ids) == list(answers[1].panda_ids)
        assert len(answers[0].panda_ids) == size
        assert any(a.replayed for a in answers)
        tally.submitted.extend(answers[0].panda_ids)

    async def main() -> None:
        async with grpc.aio.insecure_channel(d1.address) as c1, grpc.aio.insecure_channel(d2.address) as c2:
            stubs = [submission_pb2_grpc.SubmissionServiceStub(c) for c in (c1, c2)]
            await asyncio.gather(*(one(b, stubs) for b in range(batches)))

    asyncio.run(main())
    assert len(set(tally.submitted)) == batches * size
    res = _assert_consistent(pg_url, tally, expect_final=False)
    assert res.jobs == batches * size


def test_stuck_pilot_does_not_stall_others(pg_url: str, dispatchers: Callable[..., Any]) -> None:
    """A pilot that asks for work but never reads its stream is cut off; the others keep working."""
    d1 = dispatchers(pg_url, "d1")
    tally = Tally()
    holder: list[Any] = []

    async def fault() -> None:
        # Opens a stream and floods it with requests, never reading: the dispatcher's queue for it fills.
        channel = grpc.aio.insecure_channel(d1.address)
        call = pilot_pb2_grpc.PilotServiceStub(channel).Connect()
        holder[:] = [channel, call]
        await call.write(pilot_pb2.PilotMessage(hello=pilot_pb2.Hello(pilot_id="stuck", queue="LOCAL")))
        # Malformed heartbeats are answered at once, one AckBatch (~25 KB) per message: megabytes
        # for a reader that never comes (gRPC buffers ~4 MB per stream, then the dispatcher's queue fills).
        bad = pilot_pb2.HeartbeatBatch(heartbeats=[pilot_pb2.Heartbeat(panda_id=0, lease_epoch=1) for _ in range(500)])
        for _ in range(1500):
            await call.write(pilot_pb2.PilotMessage(heartbeats=bad))
            await call.write(pilot_pb2.PilotMessage(job_request=pilot_pb2.JobRequest(n=1)))

    try:
        asyncio.run(_run_load([d1.address], pg_url, tally, jobs=800, pilots=8, fault=fault, fault_after=50))
    finally:
        holder.clear()
    assert d1.proc.poll() is None, d1.tail()
    assert "does not read its stream" in d1.log.read_text(), d1.tail()
    engine = create_engine(pg_url)
    with engine.connect() as conn:
        connected = conn.execute(text("SELECT connected FROM pilots WHERE pilot_id = 'stuck'")).scalar_one()
    engine.dispose()
    assert connected is False
    _assert_consistent(pg_url, tally)


def test_bulk_work_off_the_loop_survives_a_killed_dispatcher(
    pg_url: str, dispatchers: Callable[..., Any], tmp_path: Path
) -> None:
    """The bulk work moved off the event loop (SubmitJobs validation, building the heartbeat flush's
    acks on a thread) under a SIGKILL of one of two dispatchers, with the loop lag monitor on in
    both: an invalid batch is still refused whole, every job finishes exactly once, and the
    survivor's monitor reports what it measured (probes and callbacks counted; no timing asserted)."""
    lag_dir = tmp_path / "lag"
    lag_dir.mkdir()
    d1 = dispatchers(pg_url, "d1", loop_lag_dir=str(lag_dir))
    d2 = dispatchers(pg_url, "d2", loop_lag_dir=str(lag_dir))
    tally = Tally()
    refused: list[str] = []

    async def bad_batch_then_kill() -> None:
        async with grpc.aio.insecure_channel(d2.address) as channel:
            stub = submission_pb2_grpc.SubmissionServiceStub(channel)
            bad = [job_pb2.Job(transformation="/bin/true", computing_site="LOCAL") for _ in range(30)]
            bad.append(job_pb2.Job(transformation="/bin/true", computing_site="NO_SUCH_SITE"))
            try:
                await stub.SubmitJobs(submission_pb2.SubmitJobsRequest(jobs=bad), timeout=30)
            except grpc.aio.AioRpcError as exc:
                refused.append(f"{exc.code().name}: {exc.details()}")
        d1.kill()

    asyncio.run(
        _run_load(
            [d1.address, d2.address], pg_url, tally, jobs=600, pilots=12, fault=bad_batch_then_kill, fault_after=150
        )
    )
    assert len(refused) == 1 and refused[0].startswith("INVALID_ARGUMENT") and "NO_SUCH_SITE" in refused[0], refused
    assert d2.proc.poll() is None, d2.tail()
    assert tally.finished <= _finished_in_db(pg_url)
    _assert_consistent(pg_url, tally)  # and _run_load counted exactly 600 jobs stored: none of the refused 31
    d2.proc.terminate()
    d2.proc.wait(timeout=30)
    report = json.loads((lag_dir / f"looplag-{d2.proc.pid}.json").read_text())
    assert report["samples"] > 0 and sum(report["callback_cpu_hist"].values()) > 0, report
