"""Secure by default: a dispatcher started with no auth flags wants tokens, even on loopback, and
everything that runs the system for you (the factory, the pilots it starts) brings its own.

The insecure development mode exists only when asked for (``--auth trusted-metadata``) and only
on loopback. The factory authenticates with a ``factory`` token and hands each pilot a ``pilot``
token bound to its queue, as a 0600 file named in the pilot's environment — never on a command line.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
import typer
from typer.testing import CliRunner

from ailuro.client import Client
from ailuro.credentials import bearer_metadata, write_token_file
from ailuro.queues import FactoryLimits, QueueConfig
from ailuro.v1 import job_pb2, submission_pb2, submission_pb2_grpc
from backends.factory import Factory, FactoryConfig
from dispatcher.auth.config import TOKEN_MODE, TRUSTED_METADATA_MODE, AuthConfig, default_auth_dir
from dispatcher.auth.minting import Minter
from dispatcher.config import DispatcherConfig
from dispatcher.server import run_in_thread

pytestmark = pytest.mark.timeout(240)

AILURO = str(Path(sys.executable).with_name("ailuro"))
QUEUE = QueueConfig(
    name="SEC_LOCAL",
    vos=("compass",),
    backend="local",
    factory=FactoryLimits(max_queued=1, max_total=1, max_per_cycle=1, idle_timeout_s=3),
)


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.3)


def _job(name: str) -> job_pb2.Job:
    return job_pb2.Job(
        job_name=name, transformation=sys.executable, job_parameters="-c 'print(42)'", computing_site=QUEUE.name
    )


def test_the_default_configuration_is_token_mode_with_a_per_user_issuer() -> None:
    auth = DispatcherConfig().auth
    assert auth.mode == TOKEN_MODE
    assert auth.state_dir == default_auth_dir() == Path(os.environ["AILURO_AUTH_DIR"]).absolute()


def test_server_with_no_auth_flags_refuses_an_unauthenticated_call_on_loopback(db_url: str, tmp_path: Path) -> None:
    auth_dir = tmp_path / "auth"
    env = {k: v for k, v in os.environ.items() if k not in ("AILURO_AUTH", "AILURO_TOKEN", "AILURO_TOKEN_FILE")}
    env["AILURO_AUTH_DIR"] = str(auth_dir)  # where, not whether: no auth flag on the command line
    argv = [AILURO, "server", "--db", db_url, "--port", "0", "--log-level", "warning"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    try:
        seen: list[str] = []
        assert proc.stderr is not None
        for line in proc.stderr:  # bounded by the test timeout
            seen.append(line)
            if line.startswith("ailuro dispatcher auth:"):
                break
        address = next(line.split("listening on ", 1)[1].split()[0] for line in seen if "listening on" in line)
        assert address.startswith("127.0.0.1:")
        admin = auth_dir / "admin.token"
        assert f"admin token in {admin}" in seen[-1], seen
        assert stat.S_IMODE(admin.stat().st_mode) == 0o600 and stat.S_IMODE(auth_dir.stat().st_mode) == 0o700
        with grpc.insecure_channel(address) as channel:
            stub = submission_pb2_grpc.SubmissionServiceStub(channel)
            with pytest.raises(grpc.RpcError) as refused:
                stub.ListJobs(submission_pb2.ListJobsRequest(), timeout=10)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
            # believing metadata is not the default: a claimed user is still no credential
            with pytest.raises(grpc.RpcError) as claimed:
                stub.ListJobs(submission_pb2.ListJobsRequest(), timeout=10, metadata=(("ailuro-user", "admin"),))
            assert claimed.value.code() == grpc.StatusCode.UNAUTHENTICATED
            token = admin.read_text().strip()
            stub.ListJobs(submission_pb2.ListJobsRequest(), timeout=10, metadata=bearer_metadata(token))
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def test_the_development_mode_refuses_a_non_loopback_address(tmp_path: Path) -> None:
    config = DispatcherConfig(
        db_url=f"sqlite:///{tmp_path / 'x.db'}", host="0.0.0.0", port=0, auth=AuthConfig(mode=TRUSTED_METADATA_MODE)
    )
    with pytest.raises(ValueError, match="loopback"):
        run_in_thread(config)
    run = subprocess.run(
        [AILURO, "server", "--db", f"sqlite:///{tmp_path}/y.db", "--host", "0.0.0.0", "--auth", "trusted-metadata"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2 and "loopback" in run.stderr, run.stderr


def _pilot(address: str, tmp_path: Path, name: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AILURO_TOKEN", "AILURO_SERVER"))}
    env["AILURO_STORAGE_ROOT"] = str(tmp_path / "storage")
    argv = [sys.executable, "-m", "pilot", "--server", address, "--queue", QUEUE.name, "--pilot-id", name]
    argv += ["--workdir", str(tmp_path / name), "--idle-timeout-s", "3", "--heartbeat-s", "0.5", *args]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)


def test_a_pilot_with_its_queue_token_runs_a_job_and_one_without_is_refused(
    make_dispatcher: Callable[..., Any], tmp_path: Path
) -> None:
    auth_dir = tmp_path / "auth"
    minter = Minter.from_state_dir(auth_dir, create=True)
    d = make_dispatcher(queues=(QUEUE,), auth=AuthConfig(state_dir=auth_dir))
    token_file = write_token_file(tmp_path / "pilot.token", minter.pilot(QUEUE.name, vos=QUEUE.vos))
    with Client(d.address, token=minter.user("alice", "compass")) as client:
        (panda_id,) = client.submit([_job("sec-pilot")])
        refused = _pilot(d.address, tmp_path, "no-token", "--max-jobs", "1")
        assert refused.returncode == 65, refused.stderr  # the dispatcher refused it: no credentials
        assert "UNAUTHENTICATED" in refused.stderr
        assert client.get([panda_id])[0].status == job_pb2.JOB_STATUS_ACTIVATED
        ran = _pilot(d.address, tmp_path, "with-token", "--max-jobs", "1", "--token-file", str(token_file))
        assert ran.returncode == 0, ran.stderr
        (job,) = client.get([panda_id])
    assert (job.status, job.pilot_id, job.owner) == (job_pb2.JOB_STATUS_FINISHED, "with-token", "alice")
    bad = _pilot(d.address, tmp_path, "bad-file", "--token-file", str(tmp_path / "missing.token"))
    assert bad.returncode == 2 and "--token-file" in bad.stderr


def _factory_app() -> typer.Typer:
    from ailuro_cli import factory as factory_cli

    app = typer.Typer()
    factory_cli.register(app)

    @app.callback()
    def _root() -> None:
        """Test root."""

    return app


def test_factory_with_auth_dir_gives_its_pilots_queue_bound_tokens(
    make_dispatcher: Callable[..., Any], tmp_path: Path
) -> None:
    auth_dir = tmp_path / "auth"
    minter = Minter.from_state_dir(auth_dir, create=True)
    d = make_dispatcher(queues=(QUEUE,), auth=AuthConfig(state_dir=auth_dir), no_job_retry_s=0.5)
    queues = tmp_path / "queues.toml"
    queues.write_text(
        f'[[queue]]\nname = "{QUEUE.name}"\nvos = ["compass"]\nbackend = "local"\n\n'
        "[queue.factory]\nmax_queued = 1\nmax_total = 1\nmax_per_cycle = 1\nidle_timeout_s = 3\n"
    )
    workdir = tmp_path / "fw"
    env = {"AILURO_STORAGE_ROOT": str(tmp_path / "storage"), "AILURO_TOKEN": "", "AILURO_TOKEN_FILE": ""}
    with Client(d.address, token=minter.user("bob", "compass")) as client:
        (panda_id,) = client.submit([_job("sec-factory")])
        args = ["factory", "--config", str(queues), "--server", d.address, "--once", "--workdir", str(workdir)]
        result = CliRunner().invoke(_factory_app(), [*args, "--auth-dir", str(auth_dir), "--vo", "compass"], env=env)
        assert result.exit_code == 0, result.output
        assert "submitted 1" in result.output and "error" not in result.output, result.output
        _wait(lambda: client.get([panda_id])[0].status == job_pb2.JOB_STATUS_FINISHED, 120, "the job to finish")
    # the operator's view sends the CLI's token too (here the local admin's, named by the variable)
    status_args = ["factory", "status", "--server", d.address, "--json"]
    admin_env = {"AILURO_TOKEN": "", "AILURO_TOKEN_FILE": str(auth_dir / "admin.token")}
    status = CliRunner().invoke(_factory_app(), status_args, env=admin_env)
    assert status.exit_code == 0 and QUEUE.name in status.output, status.output
    no_token = {"AILURO_TOKEN": "", "AILURO_TOKEN_FILE": "", "HOME": str(tmp_path)}  # no ~/.ailuro/token either
    refused = CliRunner().invoke(_factory_app(), status_args, env=no_token)
    assert refused.exit_code == 1 and "UNAUTHENTICATED" in refused.output, refused.output
    factory_claims = jwt.decode(
        (workdir / "tokens" / "factory.token").read_text().strip(), options={"verify_signature": False}
    )
    assert factory_claims["wlcg.groups"] == ["/compass", "/compass/factory"]
    assert factory_claims["ailuro.queues"] == [QUEUE.name]
    # the one pilot's own token, minted offline per worker, in the worker's directory
    (pilot_token,) = (workdir / "tokens" / QUEUE.name).glob("*/ailuro-pilot.token")
    assert stat.S_IMODE(pilot_token.stat().st_mode) == 0o600
    assert stat.S_IMODE((workdir / "tokens").stat().st_mode) == 0o700
    assert stat.S_IMODE(pilot_token.parent.stat().st_mode) == 0o700
    claims = jwt.decode(pilot_token.read_text().strip(), options={"verify_signature": False})
    assert claims["wlcg.groups"] == ["/compass", "/compass/pilot"] and claims["ailuro.queues"] == [QUEUE.name]
    # named after the factory it came from (the id the factory registers its workers under)
    assert claims["sub"] == f"pilot:{factory_claims['sub']}:{pilot_token.parent.name}"
    (wrapper,) = (workdir / "backends" / QUEUE.name).rglob("*.sh")
    text = wrapper.read_text()
    assert f"pilot_token_dir={pilot_token.parent.parent}" in text and pilot_token.read_text().strip() not in text


def test_a_factory_without_a_token_is_refused_by_a_token_mode_dispatcher(
    make_dispatcher: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AILURO_TOKEN", "AILURO_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    d = make_dispatcher(queues=(QUEUE,), auth=AuthConfig(state_dir=tmp_path / "auth"))
    factory = Factory(FactoryConfig(server=d.address, queues=(QUEUE,), workdir=tmp_path / "fw", cycle_s=0.5))
    try:
        stop = threading.Event()
        stop.set()
        reports = factory.run_cycle()
    finally:
        factory.close()
    assert "UNAUTHENTICATED" in reports[QUEUE.name].last_error
