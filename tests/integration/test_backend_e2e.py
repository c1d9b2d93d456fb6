"""End to end per backend: jobs submitted to a queue on Slurm, HTCondor or the LSF emulator
finish through pilots that the factory submitted there (real dispatcher on port 0, SQLite).

The Slurm and HTCondor cases get their pilot as a bundle downloaded from the dispatcher's bundle
server and checked by version and sha256; LSF runs the installed pilot. HTCondor pilots run inside
the pool's chroot as an ordinary user (``panda``), so the factory's work dir is in the pool's
shared dir, and the bundle runs on a Python the chroot sees (:meth:`CondorPool.python`).

Authentication is on (token mode, the default) everywhere: the factory holds only its ``factory``
token and gives each worker a ``pilot`` token of its own, bound to the queue, as a 0600 file in
the worker's directory: signed by the dispatcher (``IssuePilotTokens``; Slurm, HTCondor) or
minted offline with the dispatcher's key (``--auth-dir``; LSF). Slurm and LSF pilots read it
there (shared file system); HTCondor ships it with its file transfer into the job's scratch dir,
owned by ``panda``, so the pilot never needs to read a file of root's.
"""

# ruff: noqa: F811  (the batch-system fixtures are imported by name, then requested as arguments)
from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from infra.services import condor_pool, lsf_emulator, slurm_cluster  # noqa: F401  (fixtures)

from ailuro.client import Client
from ailuro.credentials import bearer_metadata, write_token_file
from ailuro.queues import FactoryLimits, QueueConfig
from ailuro.v1 import admin_pb2, admin_pb2_grpc, factory_pb2, factory_pb2_grpc, job_pb2
from ailuro_cli.factory_auth import minted_source
from backends.factory import Factory, FactoryConfig
from backends.pilot_tokens import WORKER_TOKEN_FILE
from dispatcher.auth.config import AuthConfig
from dispatcher.auth.minting import Minter

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

LIMITS = FactoryLimits(max_queued=2, max_total=2, max_per_cycle=2, idle_timeout_s=4)


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """SQLite only: these tests exercise the batch systems, not the database."""
    return f"sqlite:///{tmp_path / 'e2e.db'}"


class BundleServer:
    """The dispatcher's pilot bundle server on its own event loop in a thread."""

    def __init__(self, bundle_dir: Path) -> None:
        from dispatcher.bundle import start_bundle_server

        self.loop = asyncio.new_event_loop()
        self.server, self.port = self.loop.run_until_complete(
            start_bundle_server("127.0.0.1", 0, bundle_dir=bundle_dir)
        )
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        async def _close() -> None:
            self.server.close()
            await self.server.wait_closed()

        asyncio.run_coroutine_threadsafe(_close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def bundle_server(tmp_path: Path) -> Iterator[BundleServer]:
    server = BundleServer(tmp_path / "bundle")
    yield server
    server.close()


def jobs_for(queue: str, n: int) -> list[job_pb2.Job]:
    """Short payloads that print which pilot ran them."""
    return [
        job_pb2.Job(
            job_name=f"e2e-{queue}-{i}",
            transformation="/bin/sh",
            job_parameters=f"-c 'echo job {i} on $AILURO_PILOT_ID; sleep 0.5'",
            computing_site=queue,
            max_attempt=1,
        )
        for i in range(n)
    ]


def list_workers(server: str, queue: str, metadata: tuple[tuple[str, str], ...] = ()) -> list[factory_pb2.Worker]:
    """Every worker the dispatcher has for ``queue``."""
    with grpc.insecure_channel(server) as ch:
        stub = factory_pb2_grpc.FactoryServiceStub(ch)
        req = factory_pb2.ListWorkersRequest(queue=queue, include_final=True)
        return list(stub.ListWorkers(req, timeout=10, metadata=metadata).workers)


def wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``predicate`` until true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


def run_jobs_through_factory(
    make_dispatcher: Callable[..., Any],
    queue: QueueConfig,
    workdir: Path,
    *,
    auth_dir: Path | None = None,
    offline_pilot_tokens: bool = False,
    **factory_kw: Any,
) -> tuple[list[job_pb2.Job], dict[str, factory_pb2.Worker], Factory]:
    """Start a dispatcher for ``queue``, submit 4 jobs, run a factory until they all ended.

    With ``auth_dir`` the dispatcher runs in token mode with its embedded issuer there; the test
    submits with a ``user`` token, the factory uses a ``factory`` token and gives each pilot a
    ``pilot`` token of its own, from the dispatcher or (``offline_pilot_tokens``) minted with the
    issuer's key (else the explicit development mode of ``make_dispatcher``)."""
    metadata: tuple[tuple[str, str], ...] = ()
    client_auth: dict[str, Any] = {"identity": "e2e"}
    extra: dict[str, Any] = {}
    if auth_dir is not None:
        minter = Minter.from_state_dir(auth_dir, create=True)
        extra["auth"] = AuthConfig(state_dir=auth_dir)
        factory_token = minter.factory("e2e-factory", "compass", [queue.name])
        metadata = bearer_metadata(factory_token)
        client_auth = {"token": minter.user("e2e", "compass")}
        factory_kw["token_file"] = write_token_file(workdir / "factory.token", factory_token)
        factory_kw["factory_id"] = "e2e-factory"  # a factory token's subject is the factory it acts as
        if offline_pilot_tokens:
            factory_kw["pilot_tokens"] = minted_source(minter, "e2e-factory")
    dispatcher = make_dispatcher(
        queues=(queue,), no_job_retry_s=0.5, heartbeat_flush_s=0.2, watchdog_interval_s=0.5, **extra
    )
    server = str(dispatcher.address)
    factory = Factory(
        FactoryConfig(
            server=server,
            queues=(queue,),
            workdir=workdir,
            cycle_s=1.0,
            pilot_args=("--heartbeat-s", "2"),
            pilot_environment={"AILURO_STORAGE_ROOT": str(workdir / "storage")},
            cancel_queued_after_s=0,
            **factory_kw,
        )
    )
    stop = threading.Event()
    thread = threading.Thread(target=factory.run, args=(stop,), daemon=True)
    try:
        with Client(server, **client_auth) as client:
            ids = client.submit(jobs_for(queue.name, 4))
            thread.start()
            wait(lambda: all(j.status >= job_pb2.JOB_STATUS_FINISHED for j in client.get(ids)), 200, "jobs to end")
            jobs = client.get(ids)
        # the pilots run out of work and exit; the factory reports their end from the batch system
        wait(
            lambda: all(
                w.state == factory_pb2.WORKER_STATE_FINISHED for w in list_workers(server, queue.name, metadata)
            ),
            90,
            "workers to be reported finished",
        )
        workers = {w.worker_id: w for w in list_workers(server, queue.name, metadata)}
    finally:
        stop.set()
        thread.join(30)
        factory.cancel_all()
        factory.close()
    return jobs, workers, factory


def check(jobs: list[job_pb2.Job], workers: dict[str, factory_pb2.Worker], backend: str) -> None:
    """Every job finished on a pilot the factory submitted to ``backend``, with its batch id."""
    assert [j.status for j in jobs] == [job_pb2.JOB_STATUS_FINISHED] * len(jobs), [j.errors for j in jobs]
    assert 1 <= len(workers) <= LIMITS.max_total
    for job in jobs:
        worker = workers[job.pilot_id]
        assert worker.backend == backend and job.batch_id == worker.batch_id != ""
    for w in workers.values():
        assert "exited with" in Path(w.log_path).read_text()


def check_pilot_tokens(workdir: Path, queue: str, workers: dict[str, factory_pb2.Worker], *, scratch: bool) -> None:
    """Each pilot read a token file of its own (HTCondor: the copy in its scratch dir), the wrapper
    names the file, never the token, and the factory removed the files once the workers ended."""
    token_dir = workdir / "tokens" / queue
    for w in workers.values():
        log = Path(w.log_path).read_text()
        own = f"ailuro-wrapper: pilot token file {token_dir}/{w.worker_id}/{WORKER_TOKEN_FILE}"
        if scratch:
            assert own not in log and f"/{WORKER_TOKEN_FILE}\n" in log and "pilot token file /" in log, log
        else:
            assert own in log, log
    wrappers = list(workdir.rglob("wrappers/*.sh"))
    assert wrappers
    for wrapper in wrappers:
        text = wrapper.read_text()
        assert f"pilot_token_dir={token_dir}" in text and "eyJ" not in text  # a JWT starts with eyJ
    assert not list(token_dir.glob(f"*/{WORKER_TOKEN_FILE}"))


def check_dispatcher_signed(server: str, auth_dir: Path, workers: dict[str, factory_pb2.Worker]) -> None:
    """The dispatcher signed one token per worker for the factory (audited, one row per call)."""
    admin = (auth_dir / "admin.token").read_text().strip()
    with grpc.insecure_channel(server) as ch:
        rows = admin_pb2_grpc.AdminServiceStub(ch).ListAudit(
            admin_pb2.ListAuditRequest(action="token.pilot"), timeout=10, metadata=bearer_metadata(admin)
        )
    assert sum(json.loads(r.detail)["tokens"] for r in rows.entries) == len(workers)
    assert all(r.actor == "e2e-factory" for r in rows.entries)


def test_slurm_pilots_from_the_dispatcher_bundle(
    make_dispatcher: Callable[..., Any], slurm_cluster: Any, bundle_server: BundleServer, tmp_path: Path
) -> None:
    queue = QueueConfig(name="JINR_SLURM", backend="slurm", factory=LIMITS, backend_options=slurm_cluster.options())
    jobs, workers, factory = run_jobs_through_factory(
        make_dispatcher,
        queue,
        tmp_path / "factory",
        auth_dir=tmp_path / "auth",
        pilot_bundle_url=bundle_server.url,
        pilot_python=sys.executable,
    )
    check(jobs, workers, "slurm")
    check_pilot_tokens(tmp_path / "factory", queue.name, workers, scratch=False)
    check_dispatcher_signed(factory.config.server, tmp_path / "auth", workers)
    for w in workers.values():
        log = Path(w.log_path).read_text()
        assert "ailuro-wrapper: pilot bundle 0.1.0+src." in log, log  # downloaded, checked, and run


def test_htcondor_pilots(
    make_dispatcher: Callable[..., Any], condor_pool: Any, bundle_server: BundleServer, tmp_path: Path
) -> None:
    """Token mode: the factory (root) gives each worker's token file to the jobs' account, HTCondor
    transfers it into the job's scratch dir, and the pilot (``panda``) reads it there."""
    options = condor_pool.options(token_owner=condor_pool.job_uid)
    queue = QueueConfig(name="CONDOR_POOL", backend="htcondor", factory=LIMITS, backend_options=options)
    workdir = condor_pool.workspace(f"e2e-{tmp_path.name}")
    jobs, workers, factory = run_jobs_through_factory(
        make_dispatcher,
        queue,
        workdir,
        auth_dir=tmp_path / "auth",
        pilot_bundle_url=bundle_server.url,
        pilot_python=condor_pool.python(),
    )
    check(jobs, workers, "htcondor")
    assert all(" as panda " in Path(w.log_path).read_text() for w in workers.values())  # never as root
    check_pilot_tokens(workdir, queue.name, workers, scratch=True)
    check_dispatcher_signed(factory.config.server, tmp_path / "auth", workers)


def test_lsf_emulator_pilots(make_dispatcher: Callable[..., Any], lsf_emulator: Any, tmp_path: Path) -> None:
    queue = QueueConfig(
        name="CERN_LSF", backend="lsf", factory=LIMITS, backend_options=lsf_emulator.options(queue="8nh")
    )
    jobs, workers, _ = run_jobs_through_factory(
        make_dispatcher, queue, tmp_path / "factory", auth_dir=tmp_path / "auth", offline_pilot_tokens=True
    )
    check(jobs, workers, "lsf")
    check_pilot_tokens(tmp_path / "factory", queue.name, workers, scratch=False)
