"""The factory against a real dispatcher (SQLite, port 0) with real local pilots.

Jobs submitted to a queue make the factory start pilots; the pilots run the jobs; every worker is
registered with its batch id, and each job names the pilot and batch id that ran it. No pilot is
started for an empty queue, a broken backend is backed off, two factories do not over-submit,
and ``ailuro factory status`` reports it all.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import typer
from typer.testing import CliRunner

from ailuro.client import Client
from ailuro.queues import FactoryLimits, QueueConfig
from ailuro.v1 import factory_pb2, factory_pb2_grpc, job_pb2
from backends.base import WorkerState
from backends.factory import Backoff, Factory, FactoryConfig

pytestmark = pytest.mark.timeout(240)

BUSY = QueueConfig(
    name="FQ_BUSY",
    backend="local",
    factory=FactoryLimits(max_queued=2, max_total=2, max_per_cycle=2, idle_timeout_s=3),
    backend_options={"kill_grace_s": 5},
)
EMPTY = QueueConfig(name="FQ_EMPTY", backend="local", factory=FactoryLimits(idle_timeout_s=3))
BROKEN = QueueConfig(name="FQ_BROKEN", backend="local", backend_options={"no_such_option": 1})
CROWDED = QueueConfig(
    name="FQ_CROWDED", backend="local", factory=FactoryLimits(max_queued=10, max_total=3, max_per_cycle=3)
)

# A pilot that never connects: it keeps its worker "running" so the counting can be checked exactly.
SILENT_PILOT = (sys.executable, "-c", "import time; time.sleep(60)")


@pytest.fixture
def server(make_dispatcher: Callable[..., Any]) -> str:
    """A dispatcher (SQLite, and PostgreSQL when available) that knows the test queues."""
    running = make_dispatcher(
        queues=(BUSY, EMPTY, BROKEN, CROWDED), no_job_retry_s=0.5, heartbeat_flush_s=0.2, watchdog_interval_s=0.5
    )
    return str(running.address)


@pytest.fixture
def make_factory(server: str, tmp_path: Path) -> Iterator[Callable[..., Factory]]:
    made: list[Factory] = []

    def make(queues: tuple[QueueConfig, ...], **kw: Any) -> Factory:
        cfg: dict[str, Any] = {
            "server": server,
            "queues": queues,
            "workdir": tmp_path / f"factory{len(made)}",
            "cycle_s": 0.5,
            "pilot_args": ("--heartbeat-s", "2"),
            "pilot_environment": {"AILURO_STORAGE_ROOT": str(tmp_path / "storage")},
            "cancel_queued_after_s": 0,
        }
        cfg.update(kw)
        factory = Factory(FactoryConfig(**cfg))
        made.append(factory)
        return factory

    yield make
    for factory in made:
        try:
            factory.cancel_all()
        finally:
            factory.close()


def _jobs(queue: str, n: int) -> list[job_pb2.Job]:
    return [
        job_pb2.Job(
            job_name=f"fq-{queue}-{i}",
            transformation=sys.executable,
            job_parameters=f"-c 'import time; time.sleep(0.2); print({i})'",
            computing_site=queue,
            max_attempt=1,
        )
        for i in range(n)
    ]


def _workers(server: str, queue: str) -> list[factory_pb2.Worker]:
    with grpc.insecure_channel(server) as ch:
        stub = factory_pb2_grpc.FactoryServiceStub(ch)
        return list(
            stub.ListWorkers(factory_pb2.ListWorkersRequest(queue=queue, include_final=True), timeout=10).workers
        )


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.3)


def test_factory_runs_jobs_through_local_pilots(server: str, make_factory: Callable[..., Factory]) -> None:
    factory = make_factory((BUSY, EMPTY))
    stop = threading.Event()
    thread = threading.Thread(target=factory.run, args=(stop,), daemon=True)
    with Client(server, identity="tester") as client:
        ids = client.submit(_jobs(BUSY.name, 6))
        thread.start()
        try:
            _wait(lambda: all(j.status >= job_pb2.JOB_STATUS_FINISHED for j in client.get(ids)), 150, "jobs to end")
            jobs = client.get(ids)
            assert [j.status for j in jobs] == [job_pb2.JOB_STATUS_FINISHED] * 6, [j.errors for j in jobs]
            workers = {w.worker_id: w for w in _workers(server, BUSY.name)}
            # max_total=2: two multi-job pilots did all the work
            assert len(workers) == 2
            for job in jobs:
                assert job.pilot_id in workers, job.pilot_id
                assert job.batch_id == workers[job.pilot_id].batch_id != ""
            for w in workers.values():
                assert w.factory_id == factory.factory_id and w.backend == "local"
                assert Path(w.log_path).is_file()
            # the pilots exit after their idle timeout; the factory reports them finished
            _wait(
                lambda: all(w.state == factory_pb2.WORKER_STATE_FINISHED for w in _workers(server, BUSY.name)),
                60,
                "workers to be reported finished",
            )
        finally:
            stop.set()
            thread.join(timeout=30)
    assert _workers(server, EMPTY.name) == []  # never a pilot for an empty queue
    assert factory.reports[EMPTY.name].submitted == 0 and not factory.reports[EMPTY.name].last_error


def test_no_pilots_for_an_empty_queue(server: str, make_factory: Callable[..., Factory]) -> None:
    factory = make_factory((BUSY, EMPTY))
    for _ in range(3):
        reports = factory.run_cycle()
    assert reports[BUSY.name].submitted == 0 and reports[EMPTY.name].submitted == 0
    assert _workers(server, BUSY.name) == [] and _workers(server, EMPTY.name) == []


def test_failing_submissions_are_backed_off_and_recorded(server: str, make_factory: Callable[..., Factory]) -> None:
    factory = make_factory((BROKEN,))
    now = [100.0]
    factory.backoff = Backoff(base_s=30, max_s=300, clock=lambda: now[0])
    with Client(server) as client:
        client.submit(_jobs(BROKEN.name, 2))
    report = factory.run_cycle()[BROKEN.name]
    assert "no_such_option" in report.last_error and report.backoff_s == 30
    first_error_time = report.last_error_time
    now[0] += 10  # still backed off: no new attempt, no new error
    report = factory.run_cycle()[BROKEN.name]
    assert report.last_error_time == first_error_time and report.backoff_s == pytest.approx(20)
    now[0] += 25  # the backoff has passed: it tries again, fails again, waits twice as long
    report = factory.run_cycle()[BROKEN.name]
    assert report.last_error_time > first_error_time and report.backoff_s == 60
    assert _workers(server, BROKEN.name) == []
    saved = json.loads(factory.status_file.read_text())["queues"][BROKEN.name]
    assert "no_such_option" in saved["last_error"]


def test_two_factories_do_not_over_submit(server: str, make_factory: Callable[..., Factory]) -> None:
    first = make_factory((CROWDED,), pilot_command=SILENT_PILOT)
    second = make_factory((CROWDED,), pilot_command=SILENT_PILOT)
    assert first.factory_id != second.factory_id
    with Client(server) as client:
        client.submit(_jobs(CROWDED.name, 10))
    assert first.run_cycle()[CROWDED.name].submitted == 3  # max_per_cycle and max_total
    for _ in range(2):
        assert second.run_cycle()[CROWDED.name].submitted == 0  # counts the first factory's workers
        assert first.run_cycle()[CROWDED.name].submitted == 0
    workers = _workers(server, CROWDED.name)
    assert len(workers) == 3 and {w.factory_id for w in workers} == {first.factory_id}
    # polling reported the silent pilots running
    assert {WorkerState.from_proto(w.state) for w in workers} == {WorkerState.RUNNING}

    # cancelling one frees one slot, which exactly one of the factories fills
    victim = workers[0]
    backend = first.backend_for(CROWDED)
    backend.cancel([victim.batch_id])
    time.sleep(backend.poll_interval)  # the factory polls a backend at most this often
    first.run_cycle()
    second.run_cycle()
    workers = _workers(server, CROWDED.name)
    states = {w.worker_id: WorkerState.from_proto(w.state) for w in workers}
    assert states[victim.worker_id] is WorkerState.CANCELLED
    assert sum(1 for s in states.values() if not s.is_final) == 3


def test_factory_status_command(server: str, make_factory: Callable[..., Factory], tmp_path: Path) -> None:
    from ailuro_cli import factory as factory_cli

    factory = make_factory((CROWDED, BROKEN), pilot_command=SILENT_PILOT)
    with Client(server) as client:
        client.submit(_jobs(CROWDED.name, 2))
        client.submit(_jobs(BROKEN.name, 1))
    factory.run_cycle()
    factory.run_cycle()

    app = typer.Typer()
    factory_cli.register(app)

    @app.callback()
    def _root() -> None:
        """Test root."""

    result = CliRunner().invoke(
        app, ["factory", "status", "--server", server, "--workdir", str(factory.workdir), "--json"]
    )
    assert result.exit_code == 0, result.output
    rows = {r["queue"]: r for r in json.loads(result.output)}
    assert rows[CROWDED.name]["activated_jobs"] == 2
    assert rows[CROWDED.name]["running_workers"] + rows[CROWDED.name]["queued_workers"] == 2
    assert rows[CROWDED.name]["last_submission"] > 0
    assert "no_such_option" in rows[BROKEN.name]["last_error"]
    assert rows[EMPTY.name]["last_submission"] == 0

    table = CliRunner().invoke(
        app, ["factory", "status", "--server", server, "--workdir", str(factory.workdir)], env={"COLUMNS": "250"}
    )
    assert table.exit_code == 0 and "FQ_CROWDED" in table.output and "no_such_option" in table.output


def test_factory_command_once(server: str, tmp_path: Path) -> None:
    from ailuro_cli import factory as factory_cli
    from backends.local import LocalBackend

    config = tmp_path / "queues.toml"
    config.write_text(
        '[[queue]]\nname = "FQ_BUSY"\nbackend = "local"\n\n'
        "[queue.factory]\nmax_queued = 1\nmax_total = 1\nmax_per_cycle = 1\nidle_timeout_s = 2\n"
    )
    app = typer.Typer()
    factory_cli.register(app)

    @app.callback()
    def _root() -> None:
        """Test root."""

    workdir = tmp_path / "fw"
    with Client(server) as client:
        (job_id,) = client.submit(_jobs(BUSY.name, 1))
        args = ["factory", "--config", str(config), "--server", server, "--once", "--workdir", str(workdir)]
        args += ["--factory-id", "cli-factory"]
        result = CliRunner().invoke(app, args, env={"AILURO_STORAGE_ROOT": str(tmp_path / "storage")})
        assert result.exit_code == 0, result.output
        assert "FQ_BUSY: activated 1, idle pilots 0, queued 0, running 0, submitted 1" in result.output
        backend = LocalBackend(workdir=workdir / "backends" / "FQ_BUSY")
        try:
            (worker,) = _workers(server, BUSY.name)
            assert worker.factory_id == "cli-factory" and worker.batch_id in backend.known_batch_ids()
            _wait(lambda: client.get([job_id])[0].status == job_pb2.JOB_STATUS_FINISHED, 120, "the job to finish")
            assert client.get([job_id])[0].pilot_id == worker.worker_id
        finally:
            backend.cancel(backend.known_batch_ids())
    bad = CliRunner().invoke(app, ["factory", "--config", str(tmp_path / "nope.toml"), "--server", server, "--once"])
    assert bad.exit_code == 2 and "no such file" in bad.output
