"""A factory that holds only its own ``factory`` token gives every pilot a token of its own, signed
by the dispatcher (``IssuePilotTokens``): a token-mode dispatcher, the local backend, real pilots.

Each worker's token is a 0600 file in its own directory, bound to the queue, with the subject
``pilot:<factory>:<worker id>``; no token is ever on a process's command line; the file is removed
once the worker ended; a factory cannot get tokens for a queue its token does not name.
"""

from __future__ import annotations

import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest

from ailuro.client import Client
from ailuro.credentials import bearer_metadata, write_token_file
from ailuro.queues import FactoryLimits, QueueConfig
from ailuro.v1 import admin_pb2, admin_pb2_grpc, factory_pb2, factory_pb2_grpc, job_pb2
from backends.factory import Factory, FactoryConfig
from backends.pilot_tokens import WORKER_TOKEN_FILE
from dispatcher.auth.config import AuthConfig
from dispatcher.auth.minting import Minter

pytestmark = pytest.mark.timeout(240)

LIMITS = FactoryLimits(max_queued=2, max_total=2, max_per_cycle=2, idle_timeout_s=3)
QA = QueueConfig(name="TQ_A", backend="local", factory=LIMITS, backend_options={"kill_grace_s": 5})
QB = QueueConfig(name="TQ_B", backend="local", factory=LIMITS, backend_options={"kill_grace_s": 5})
BROKEN = QueueConfig(name="TQ_BROKEN", backend="local", factory=LIMITS, backend_options={"no_such_option": 1})


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.3)


def _cmdlines() -> list[str]:
    out = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                out.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
            except OSError:
                continue
    return out


def _jobs(queue: str, n: int) -> list[job_pb2.Job]:
    return [
        job_pb2.Job(
            job_name=f"tok-{queue}-{i}",
            transformation="/bin/sh",
            job_parameters="-c 'sleep 2'",
            computing_site=queue,
            max_attempt=1,
        )
        for i in range(n)
    ]


def test_each_worker_gets_its_own_token_from_the_dispatcher(
    make_dispatcher: Callable[..., Any], tmp_path: Path
) -> None:
    auth_dir = tmp_path / "auth"
    minter = Minter.from_state_dir(auth_dir, create=True)
    d = make_dispatcher(
        queues=(QA, QB, BROKEN), auth=AuthConfig(state_dir=auth_dir), no_job_retry_s=0.5, heartbeat_flush_s=0.2
    )
    server = str(d.address)
    workdir = tmp_path / "factory"
    # only the factory's own token, bound to TQ_A (its queue file also names TQ_B, which it may not serve)
    token_file = write_token_file(tmp_path / "f.token", minter.factory("fac-far", "compass", ["TQ_A", "TQ_BROKEN"]))
    factory = Factory(
        FactoryConfig(
            server=server,
            queues=(QA, QB, BROKEN),
            workdir=workdir,
            factory_id="fac-far",
            cycle_s=0.5,
            pilot_args=("--heartbeat-s", "2"),
            pilot_environment={"AILURO_STORAGE_ROOT": str(tmp_path / "storage")},
            cancel_queued_after_s=0,
            token_file=token_file,
        )
    )
    stop = threading.Event()
    thread = threading.Thread(target=factory.run, args=(stop,), daemon=True)
    seen: dict[str, str] = {}
    try:
        with Client(server, token=minter.user("alice", "compass")) as client:
            ids = client.submit(_jobs("TQ_A", 2))
            client.submit(_jobs("TQ_B", 1))
            client.submit(_jobs("TQ_BROKEN", 1))
            thread.start()

            def tokens_written() -> bool:
                for path in (workdir / "tokens" / "TQ_A").glob(f"*/{WORKER_TOKEN_FILE}"):
                    seen.setdefault(path.parent.name, path.read_text().strip())
                    assert stat.S_IMODE(path.stat().st_mode) == 0o600
                    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
                return len(seen) >= 2

            _wait(tokens_written, 60, "two workers' token files")
            # the pilots are starting or running: no process shows a token on its command line
            for line in _cmdlines():
                assert not any(t in line for t in seen.values()), line
            _wait(lambda: all(j.status >= job_pb2.JOB_STATUS_FINISHED for j in client.get(ids)), 120, "jobs to end")
            jobs = client.get(ids)
    finally:
        stop.set()
        thread.join(30)
    assert [j.status for j in jobs] == [job_pb2.JOB_STATUS_FINISHED] * 2, [j.errors for j in jobs]
    assert {j.pilot_id for j in jobs} <= set(seen)
    assert len(set(seen.values())) == len(seen)  # one token per worker, none shared
    for worker, token in seen.items():
        claims = jwt.decode(token, options={"verify_signature": False})
        assert claims["sub"] == f"pilot:fac-far:{worker}" and claims["ailuro.queues"] == ["TQ_A"]
    # TQ_B is not in the factory's token: no pilot, the refusal is the queue's last error
    assert not (workdir / "tokens" / "TQ_B").exists() or not list((workdir / "tokens" / "TQ_B").iterdir())
    assert "PERMISSION_DENIED" in factory.reports["TQ_B"].last_error, factory.reports["TQ_B"]
    # a submission that fails after its tokens were issued leaves no token file behind
    assert "no_such_option" in factory.reports["TQ_BROKEN"].last_error, factory.reports["TQ_BROKEN"]
    assert (workdir / "tokens" / "TQ_BROKEN").is_dir()
    assert not list((workdir / "tokens" / "TQ_BROKEN").glob(f"*/{WORKER_TOKEN_FILE}"))
    # ended workers' token files are removed (the pilots read them once, at start)
    with grpc.insecure_channel(server) as ch:
        fmeta = bearer_metadata(token_file.read_text().strip())
        stub = factory_pb2_grpc.FactoryServiceStub(ch)

        def all_final() -> bool:
            factory.run_cycle()
            req = factory_pb2.ListWorkersRequest(queue="TQ_A", include_final=True)
            workers = stub.ListWorkers(req, timeout=10, metadata=fmeta).workers
            return all(w.state == factory_pb2.WORKER_STATE_FINISHED for w in workers)

        _wait(all_final, 60, "workers to end")
        admin = (auth_dir / "admin.token").read_text().strip()
        rows = admin_pb2_grpc.AdminServiceStub(ch).ListAudit(
            admin_pb2.ListAuditRequest(action="token.pilot"), timeout=10, metadata=bearer_metadata(admin)
        )
    factory.cancel_all()
    factory.close()
    assert not list((workdir / "tokens" / "TQ_A").glob(f"*/{WORKER_TOKEN_FILE}"))
    assert all(e.actor == "fac-far" for e in rows.entries)
    assert "queue TQ_A" in {e.target for e in rows.entries} <= {"queue TQ_A", "queue TQ_BROKEN"}  # never TQ_B
