"""The pilot protocol as ``pilot.proto`` states it, against a real dispatcher (both databases).

Welcome answers Hello; a short answer to a JobRequest ends with NoJob (n_given); a malformed
JobRequest is rejected alone; the real pilot follows the heartbeat period it is told; DEBUG works
end to end (``ailuro job debug``); status counts use the JobStatus enum.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlalchemy import create_engine, select
from test_pilot_dispatcher import PilotProcess, job_status, python_job, wait_until
from typer.testing import CliRunner

from ailuro import errors
from ailuro.client import Client
from ailuro.jobspec import status_name
from ailuro.v1 import job_pb2, pilot_pb2, pilot_pb2_grpc, submission_pb2, submission_pb2_grpc
from ailuro_cli.main import app
from dispatcher.pilot_protocol import heartbeat_period_s
from dispatcher.server import RunningDispatcher
from dispatcher.store.schema import audit as audit_table

J = job_pb2
P = pilot_pb2
S = submission_pb2
JS = job_pb2.JobStatus

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def sub(dispatcher: RunningDispatcher) -> Iterator[submission_pb2_grpc.SubmissionServiceStub]:
    with grpc.insecure_channel(dispatcher.address) as ch:
        yield submission_pb2_grpc.SubmissionServiceStub(ch)


@pytest.fixture
def pilots(tmp_path: Path) -> Iterator[Callable[..., PilotProcess]]:
    started: list[PilotProcess] = []

    def start(address: str, name: str, *args: str, env: dict[str, str] | None = None) -> PilotProcess:
        p = PilotProcess(address, tmp_path, name, *args, env=env)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


def submit(sub: Any, n: int = 1) -> list[int]:
    jobs = [J.Job(transformation="/bin/true") for _ in range(n)]
    return list(sub.SubmitJobs(S.SubmitJobsRequest(jobs=jobs)).panda_ids)


def first_messages(address: str, hello: P.Hello, count: int) -> list[P.DispatcherMessage]:
    """The first ``count`` messages the dispatcher sends on a stream opened with ``hello``."""
    with grpc.insecure_channel(address) as ch:
        call = pilot_pb2_grpc.PilotServiceStub(ch).Connect(iter([P.PilotMessage(hello=hello)]))
        out = [next(call) for _ in range(count)]
        call.cancel()
    return out


# --- Hello is answered ------------------------------------------------------------------------


def test_hello_is_answered_by_welcome_first(dispatcher: RunningDispatcher, sub: Any) -> None:
    cfg = dispatcher.config
    (welcome,) = first_messages(dispatcher.address, P.Hello(pilot_id="w1", queue="LOCAL"), 1)
    assert welcome.WhichOneof("msg") == "welcome"
    w = welcome.welcome
    assert w.session_id and w.dispatcher_id
    assert w.lease_s == int(cfg.lease_s)
    assert w.heartbeat_s == pytest.approx(heartbeat_period_s(cfg)) and 0 < w.heartbeat_s <= cfg.lease_s / 3
    limits = w.limits
    assert limits.max_jobs_per_request == 100
    assert limits.held_jobs_per_hello == cfg.limits.held_jobs_per_hello
    assert limits.errors_per_final == cfg.limits.errors_per_final
    assert limits.files_per_final == cfg.limits.files_per_final
    assert limits.diag_chars == cfg.limits.diag_chars
    assert limits.pending_per_stream == cfg.limits.pending_per_stream
    assert limits.max_message_bytes == cfg.limits.max_message_bytes
    assert limits.debug_report_bytes == cfg.limits.debug_report_bytes
    # a reconnect is a new session; held jobs are acknowledged only after the Welcome
    held = [P.HeldJob(panda_id=999_999, lease_epoch=1)]
    again = first_messages(dispatcher.address, P.Hello(pilot_id="w1", queue="LOCAL", held_jobs=held), 2)
    assert [m.WhichOneof("msg") for m in again] == ["welcome", "acks"]
    assert again[0].welcome.session_id != w.session_id
    assert again[1].acks.acks[0].result == P.ACK_RESULT_NOT_FOUND


def test_unary_get_job_carries_the_welcome(dispatcher: RunningDispatcher) -> None:
    with grpc.insecure_channel(dispatcher.address) as ch:
        got = pilot_pb2_grpc.PilotServiceStub(ch).GetJob(
            P.GetJobRequest(pilot=P.Hello(pilot_id="u1", queue="LOCAL"), n=1)
        )
    assert got.welcome.lease_s == int(dispatcher.config.lease_s) and got.welcome.heartbeat_s > 0
    assert got.welcome.session_id == "" and got.welcome.limits.max_jobs_per_request == 100


# --- JobRequest answers -----------------------------------------------------------------------


def test_fewer_jobs_than_asked_end_with_no_job(
    dispatcher: RunningDispatcher, sub: Any, raw_pilot: Callable[..., Any]
) -> None:
    ids = submit(sub, 2)
    p = raw_pilot(dispatcher.address, pilot_id="fewer")
    p.send(P.PilotMessage(job_request=P.JobRequest(n=5, request_id=3)))
    got = [p.expect("assignment"), p.expect("assignment")]
    assert sorted(a.job.panda_id for a in got) == sorted(ids) and {a.request_id for a in got} == {3}
    no_job = p.expect("no_job")
    assert (no_job.request_id, no_job.n_requested, no_job.n_given) == (3, 5, 2)
    assert no_job.retry_after_s > 0 and no_job.reason and not no_job.invalid_field


def test_a_request_served_in_full_gets_no_no_job(
    dispatcher: RunningDispatcher, sub: Any, raw_pilot: Callable[..., Any]
) -> None:
    submit(sub, 1)
    p = raw_pilot(dispatcher.address, pilot_id="full")
    p.send(P.PilotMessage(job_request=P.JobRequest(n=1, request_id=10)))
    assert p.expect("assignment").request_id == 10
    p.send(P.PilotMessage(job_request=P.JobRequest(n=1, request_id=11)))
    # the first NoJob on the stream answers request 11: request 10 got all it asked for
    no_job = p.expect("no_job")
    assert (no_job.request_id, no_job.n_given) == (11, 0)


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"n": 1, "walltime_left_s": -5}, "job_request.walltime_left_s"),
        ({"n": 1, "request_id": -1}, "job_request.request_id"),
        ({"n": 1, "cores_free": -2}, "job_request.cores_free"),
    ],
)
def test_malformed_job_request_names_its_field_and_keeps_the_stream(
    dispatcher: RunningDispatcher, sub: Any, raw_pilot: Callable[..., Any], request_fields: dict[str, int], field: str
) -> None:
    p = raw_pilot(dispatcher.address, pilot_id="malformed")
    p.send(P.PilotMessage(job_request=P.JobRequest(**request_fields)))
    rejected = p.expect("no_job")
    assert rejected.invalid_field == field and field in rejected.reason
    (pid,) = submit(sub)
    p.send(P.PilotMessage(job_request=P.JobRequest(n=1, request_id=2)))
    assert p.expect("assignment").job.panda_id == pid  # the same stream still gets work


# --- the real pilot follows the Welcome ------------------------------------------------------


def test_pilot_heartbeats_at_the_period_it_is_told(make_dispatcher: Callable[..., Any], tmp_path: Path) -> None:
    """A 3 s lease: a pilot heartbeating at its old fixed 30 s would lose a 6 s job's lease."""
    d = make_dispatcher(lease_s=3.0)
    argv = [sys.executable, "-m", "pilot", "--server", d.address, "--queue", "LOCAL", "--pilot-id", "told"]
    argv += ["--workdir", str(tmp_path / "wd"), "--idle-timeout-s", "3", "--max-jobs", "1"]
    env = dict(os.environ, AILURO_STORAGE_ROOT=str(tmp_path / "storage"))
    env.pop("AILURO_PILOT_UNARY", None)
    with Client(d.address) as client:
        (pid,) = client.submit([python_job("slow", "import time; time.sleep(6)")])
        log = tmp_path / "pilot.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            assert proc.wait(90) == 0, log.read_text()
        finally:
            proc.kill()
            proc.wait()
        (job,) = client.get([pid])
    assert job.status == JS.JOB_STATUS_FINISHED, (job.errors, log.read_text())
    assert "heartbeat every 1.0s" in log.read_text()


def test_pilot_obeys_welcome_limits_and_shorter_own_period(tmp_path: Path) -> None:
    from pilot.config import PilotConfig
    from pilot.main import Pilot

    def pilot(**kw: Any) -> Pilot:
        cfg = PilotConfig(
            server="127.0.0.1:1", queue="LOCAL", pilot_id="x", workdir=tmp_path, spool_dir=tmp_path / "s", **kw
        )
        return Pilot(cfg)

    told = P.Welcome(lease_s=60, heartbeat_s=7.0, limits=P.PilotLimits(max_jobs_per_request=2))
    plain, eager, lazy = pilot(jobs_in_parallel=10, cores=10), pilot(heartbeat_s=1.0), pilot(heartbeat_s=20.0)
    for p in (plain, eager, lazy):
        p._on_welcome(told)
    assert (plain.heartbeat_s, eager.heartbeat_s, lazy.heartbeat_s) == (7.0, 1.0, 7.0)
    assert plain._room([]) == 2


# --- DEBUG end to end -------------------------------------------------------------------------


def test_job_debug_returns_a_bounded_snapshot_for_the_owner_only(
    make_dispatcher: Callable[..., Any], pilots: Callable[..., PilotProcess], tmp_path: Path
) -> None:
    d = make_dispatcher(limits=_limits(debug_report_bytes=3_000))
    go = tmp_path / "go"
    code = (
        "import os, sys, time\n"
        "print('working on it', flush=True)\n"
        "sys.stderr.write('e' * 50000 + '\\n'); sys.stderr.flush()\n"
        f"while not os.path.exists({str(go)!r}): time.sleep(0.05)\n"
    )
    with Client(d.address, identity="alice") as alice:
        (pid,) = alice.submit([python_job("debugged", code)])
        pilot = pilots(d.address, "pilot-dbg", "--max-jobs", "1")
        wait_until(lambda: job_status(alice, pid) == JS.JOB_STATUS_RUNNING, 30, "running")
        wait_until(lambda: "working on it" in _stdout(tmp_path / "pilot-dbg"), 10, "the payload's output")
        answer = alice.debug(pid, timeout_s=20)
        with Client(d.address, identity="mallory") as mallory, pytest.raises(errors.PermissionDenied):
            mallory.debug(pid, timeout_s=5)
        with Client(d.address, identity="root", roles=["admin"]) as admin:
            assert admin.debug(pid, timeout_s=20).panda_id == pid
        go.touch()
        assert pilot.wait() == 0, pilot.log()
        with pytest.raises(errors.FailedPrecondition):
            alice.debug(pid, timeout_s=5)  # final: no pilot holds it any more
        with pytest.raises(errors.NotFound):
            alice.debug(pid + 1000, timeout_s=5)
    assert answer.panda_id == pid and answer.pilot_id == "pilot-dbg" and answer.status == JS.JOB_STATUS_RUNNING
    assert "working on it" in answer.snapshot and sys.executable in answer.snapshot
    assert len(answer.snapshot.encode()) <= 3_000 and "debug_report_bytes" in answer.snapshot


def test_job_debug_reaches_a_unary_pilot(
    dispatcher: RunningDispatcher, pilots: Callable[..., PilotProcess], tmp_path: Path
) -> None:
    go = tmp_path / "go"
    code = f"import os, time\nprint('polling', flush=True)\nwhile not os.path.exists({str(go)!r}): time.sleep(0.05)\n"
    with Client(dispatcher.address, identity="dana") as dana:
        (pid,) = dana.submit([python_job("unary-debugged", code)])
        pilot = pilots(dispatcher.address, "pilot-unary-dbg", "--max-jobs", "1", env={"AILURO_PILOT_UNARY": "1"})
        wait_until(lambda: job_status(dana, pid) == JS.JOB_STATUS_RUNNING, 30, "running")
        wait_until(lambda: "polling" in _stdout(tmp_path / "pilot-unary-dbg"), 10, "the payload's output")
        answer = dana.debug(pid, timeout_s=20)  # command in UpdateJob's answer, report in the next call
        go.touch()
        assert pilot.wait() == 0, pilot.log()
    assert answer.pilot_id == "pilot-unary-dbg" and "polling" in answer.snapshot


def _stdout(workdir: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in workdir.glob("*/payload.stdout"))


def _limits(**kw: Any) -> Any:
    from dispatcher.config import Limits

    return Limits(**kw)


def test_cli_job_debug(
    make_dispatcher: Callable[..., Any], pilots: Callable[..., PilotProcess], tmp_path: Path
) -> None:
    d = make_dispatcher()
    go = tmp_path / "go"
    code = (
        f"import os, time\nprint('cli sees me', flush=True)\nwhile not os.path.exists({str(go)!r}): time.sleep(0.05)\n"
    )
    with Client(d.address, identity="bob") as bob:
        (pid,) = bob.submit([python_job("cli-debugged", code)])
        pilot = pilots(d.address, "pilot-cli", "--max-jobs", "1")
        wait_until(lambda: job_status(bob, pid) == JS.JOB_STATUS_RUNNING, 30, "running")
        runner = CliRunner(env={"COLUMNS": "200", "AILURO_SERVER": None, "AILURO_USER": None})
        args = ["--server", d.address, "--user", "bob", "job", "debug", str(pid), "--timeout", "20"]
        done = runner.invoke(app, args)
        go.touch()
        assert pilot.wait() == 0, pilot.log()
    assert done.exit_code == 0, done.stdout + done.stderr
    assert f"job {pid}" in done.stdout and "pilot-cli" in done.stdout
    assert "cli sees me" in done.stdout and "processes" in done.stdout


# --- one spelling of states -------------------------------------------------------------------


def test_status_counts_use_the_enum(dispatcher: RunningDispatcher, sub: Any) -> None:
    submit(sub, 3)
    listed = sub.ListJobs(S.ListJobsRequest(statuses=[J.JOB_STATUS_ACTIVATED]))
    assert [(c.status, c.count) for c in listed.state_counts] == [(J.JOB_STATUS_ACTIVATED, 3)]
    assert dict(listed.status_counts) == {status_name(c.status): c.count for c in listed.state_counts}
    (local,) = [q for q in sub.ListQueues(S.ListQueuesRequest()).queues if q.name == "LOCAL"]
    assert [(c.status, c.count) for c in local.state_counts] == [(J.JOB_STATUS_ACTIVATED, 3)]
    with Client(dispatcher.address) as client:
        assert client.list_page(status="activated").status_counts == {"activated": 3}


def test_debug_crosses_dispatcher_processes_and_drops_bad_reports(
    make_dispatcher: Callable[..., Any], raw_pilot: Callable[..., Any]
) -> None:
    """The pilot streams to dispatcher A, the user asks dispatcher B (same database)."""
    a = make_dispatcher(limits=_limits(debug_report_bytes=100))
    b = make_dispatcher(limits=_limits(debug_report_bytes=100))
    p = raw_pilot(a.address, pilot_id="raw-dbg")
    with Client(b.address, identity="carol") as carol, ThreadPoolExecutor(1) as pool:
        (pid,) = carol.submit([J.Job(transformation="/bin/true", computing_site="LOCAL")])
        p.request(1)
        epoch = p.expect("assignment").lease_epoch
        p.heartbeat(pid, epoch, J.JOB_STATUS_RUNNING)
        assert p.ack_for(pid).result == P.ACK_RESULT_OK
        with pytest.raises(errors.DeadlineExceeded):
            carol.debug(pid, timeout_s=1)  # a pilot that does not answer
        unanswered = p.expect("command")
        assert unanswered.type == P.COMMAND_TYPE_DEBUG and unanswered.command_id > 0
        asked = pool.submit(carol.debug, pid, timeout_s=20)
        cmd = p.expect("command")
        assert (cmd.panda_id, cmd.type) == (pid, P.COMMAND_TYPE_DEBUG) and cmd.command_id != unanswered.command_id

        def report(command_id: int, snapshot: str, panda_id: int = pid) -> None:
            r = P.DebugReport(panda_id=panda_id, lease_epoch=epoch, command_id=command_id, snapshot=snapshot)
            p.send(P.PilotMessage(debug_report=r))

        report(cmd.command_id, "x" * 101)  # over debug_report_bytes: dropped
        report(cmd.command_id, "not this job", panda_id=pid + 1)  # answers nothing: dropped
        report(cmd.command_id, "the real snapshot")
        answer = asked.result(timeout=30)
        p.heartbeat(pid, epoch, J.JOB_STATUS_RUNNING)  # the stream outlived the bad reports
        assert p.ack_for(pid).result == P.ACK_RESULT_OK
    assert answer.snapshot == "the real snapshot" and answer.pilot_id == "raw-dbg"
    engine = create_engine(a.config.db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(audit_table).where(audit_table.c.action == "jobs.debug")).mappings().all()
    finally:
        engine.dispose()
    assert [(r["actor"], r["target"]) for r in rows] == [("carol", str(pid))] * 2  # both asks are audited
