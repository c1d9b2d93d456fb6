"""Clients carry a bearer token (SDK, CLI, the real pilot); ``ailuro token`` issues and inspects them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ailuro.client import Client
from ailuro.errors import Unauthenticated
from ailuro.v1 import job_pb2
from ailuro_cli.main import app
from dispatcher.auth.config import AuthConfig
from dispatcher.server import RunningDispatcher

RUNNER = CliRunner(env={"COLUMNS": "200", "AILURO_SERVER": None, "AILURO_USER": None, "AILURO_TOKEN": None})


@pytest.fixture
def secured(make_dispatcher: Callable[..., RunningDispatcher], tmp_path: Path) -> RunningDispatcher:
    return make_dispatcher(auth=AuthConfig(mode="token", state_dir=tmp_path / "auth"))


def issue(secured: RunningDispatcher, *args: str) -> str:
    result = RUNNER.invoke(app, ["token", "issue", "--auth-dir", str(secured.config.auth.state_dir), *args])
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


def test_token_issue_and_inspect(secured: RunningDispatcher) -> None:
    tok = issue(
        secured, "--user", "alice", "--vo", "compass", "--role", "pilot", "--queue", "LOCAL", "--lifetime", "1h"
    )
    result = RUNNER.invoke(app, ["token", "inspect", tok, "--auth-dir", str(secured.config.auth.state_dir)])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["principal"]["user"] == "alice" and shown["principal"]["queues"] == ["LOCAL"]
    assert shown["claims"]["wlcg.groups"] == ["/compass", "/compass/pilot"]
    assert shown["claims"]["exp"] - shown["claims"]["iat"] == 3600
    bad = RUNNER.invoke(app, ["token", "inspect", tok[:-4] + "AAAA", "--auth-dir", str(secured.config.auth.state_dir)])
    assert bad.exit_code == 1 and "token refused" in bad.stderr
    wrong = RUNNER.invoke(app, ["token", "issue", "--user", "u", "--vo", "v", "--auth-dir", "/nonexistent"])
    assert wrong.exit_code == 2 and "signing key" in wrong.stderr
    weird = RUNNER.invoke(
        app,
        [
            "token",
            "issue",
            "--user",
            "u",
            "--vo",
            "v",
            "--role",
            "god",
            "--auth-dir",
            str(secured.config.auth.state_dir),
        ],
    )
    assert weird.exit_code == 2 and "unknown" in weird.stderr


def test_sdk_token_argument_env_and_file(
    secured: RunningDispatcher, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tok = issue(secured, "--user", "alice", "--vo", "compass")
    monkeypatch.delenv("AILURO_TOKEN", raising=False)
    monkeypatch.delenv("AILURO_TOKEN_FILE", raising=False)
    with Client(secured.address, retries=0) as anonymous, pytest.raises(Unauthenticated):
        anonymous.submit([{"transformation": "/bin/true"}])
    with Client(secured.address, token=tok, identity="mallory") as client:
        (pid,) = client.submit([{"transformation": "/bin/true"}])
        assert client.get([pid])[0].owner == "alice"
    path = tmp_path / "token"
    path.write_text(tok + "\n")
    monkeypatch.setenv("AILURO_TOKEN_FILE", str(path))
    with Client(secured.address) as client:
        assert client.get([pid])[0].vo == "compass"
    monkeypatch.delenv("AILURO_TOKEN_FILE")
    monkeypatch.setenv("AILURO_TOKEN", tok)
    with Client(secured.address) as client:
        assert client.get([pid])[0].owner == "alice"


def test_cli_global_token_option(secured: RunningDispatcher) -> None:
    tok = issue(secured, "--user", "carol", "--vo", "amber")
    refused = RUNNER.invoke(app, ["--server", secured.address, "jobs"])
    assert refused.exit_code == 1 and "UNAUTHENTICATED" in refused.stderr
    with Client(secured.address, token=tok) as client:
        (pid,) = client.submit([{"transformation": "/bin/true", "job_name": "by-carol"}])
    listed = RUNNER.invoke(app, ["--server", secured.address, "--token", tok, "jobs"])
    assert listed.exit_code == 0, listed.output
    assert str(pid) in listed.stdout and "carol" in listed.stdout


def _pilot(address: str, tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    argv = [sys.executable, "-m", "pilot", "--server", address, "--queue", "LOCAL", "--pilot-id", "pilot-auth"]
    argv += ["--workdir", str(tmp_path / "pilot"), "--heartbeat-s", "0.5", "--idle-timeout-s", "3", "--max-jobs", "1"]
    environ = {k: v for k, v in os.environ.items() if not k.startswith("AILURO_")}
    environ.update(env, AILURO_STORAGE_ROOT=str(tmp_path / "storage"))
    return subprocess.run(argv, env=environ, capture_output=True, timeout=120)


@pytest.mark.parametrize("unary", ["0", "1"], ids=["stream", "unary"])
def test_real_pilot_sends_its_token_file(secured: RunningDispatcher, tmp_path: Path, unary: str) -> None:
    user = issue(secured, "--user", "alice", "--vo", "compass")
    with Client(secured.address, token=user) as client:
        (pid,) = client.submit([{"transformation": "/bin/true", "computing_site": "LOCAL"}])
        refused = _pilot(secured.address, tmp_path, {"AILURO_PILOT_UNARY": unary})
        assert refused.returncode != 0
        assert b"UNAUTHENTICATED" in refused.stderr, refused.stderr[-2000:]
        path = tmp_path / "pilot.token"
        path.write_text(
            issue(secured, "--user", "pilot-auth", "--vo", "compass", "--role", "pilot", "--queue", "LOCAL")
        )
        run = _pilot(secured.address, tmp_path, {"AILURO_TOKEN_FILE": str(path), "AILURO_PILOT_UNARY": unary})
        assert run.returncode == 0, run.stderr.decode(errors="replace")[-3000:]
        (done,) = client.get([pid])
    assert done.status == job_pb2.JOB_STATUS_FINISHED


AILURO = str(Path(sys.executable).with_name("ailuro"))
DEV = ("--auth", "trusted-metadata")


def test_server_command_in_token_mode_prints_the_admin_token_path(db_url: str, tmp_path: Path) -> None:
    auth_dir = tmp_path / "auth"
    argv = [AILURO, "server", "--db", db_url, "--port", "0", "--auth", "token", "--auth-dir", str(auth_dir)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        seen: list[str] = []
        address = ""
        assert proc.stderr is not None
        for line in proc.stderr:  # bounded by the test timeout; the server logs at info
            seen.append(line)
            if "listening on" in line and line.startswith("ailuro dispatcher"):
                address = line.split("listening on ", 1)[1].split()[0]
                break
        assert address, "".join(seen)[-3000:]
        assert any(str(auth_dir / "admin.token") in line for line in seen), "".join(seen)[-3000:]
        with Client(address, token=(auth_dir / "admin.token").read_text().strip()) as client:
            assert client.queues()
        with Client(address, retries=0) as client, pytest.raises(Unauthenticated):
            client.queues()
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def test_server_command_refuses_trusted_metadata_off_loopback(tmp_path: Path) -> None:
    run = subprocess.run(
        [AILURO, "server", "--db", f"sqlite:///{tmp_path}/x.db", "--host", "0.0.0.0", "--port", "0", *DEV],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2 and "loopback" in run.stderr, run.stderr
