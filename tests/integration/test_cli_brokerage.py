"""``ailuro queue set-status|history``, ``ailuro shares [set]`` and ``ailuro job why`` through typer's
CliRunner against a dispatcher in token mode: the admin uses the embedded issuer's admin token,
as the README says."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from ailuro.queues import QueueConfig, ShareEntry, SharesConfig
from ailuro_cli.main import app
from dispatcher.auth import issuer as embedded
from dispatcher.auth.config import AuthConfig
from dispatcher.server import RunningDispatcher

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def secured(make_dispatcher: Callable[..., RunningDispatcher], tmp_path: Path) -> RunningDispatcher:
    shares = SharesConfig(
        entries=(
            ShareEntry(path="compass/production", weight=70, labels=("managed",)),
            ShareEntry(path="compass/analysis", weight=30, labels=("user",)),
        )
    )
    return make_dispatcher(
        queues=(QueueConfig(name="CERN"), QueueConfig(name="DUBNA")),
        shares=shares,
        auth=AuthConfig(mode="token", state_dir=tmp_path / "auth"),
    )


def _tokens(d: RunningDispatcher, tmp_path: Path) -> tuple[Path, Path]:
    files = embedded.IssuerFiles(state_dir=d.config.auth.state_dir)
    user = embedded.issue(
        embedded.load_key(files), issuer="ailuro-embedded", audience="ailuro", user="alice", vo="compass"
    )
    user_file = tmp_path / "alice.token"
    user_file.write_text(user + "\n")
    return files.admin_token, user_file


def _run(d: RunningDispatcher, token_file: Path, *args: str) -> Result:
    runner = CliRunner(env={"COLUMNS": "200", "AILURO_SERVER": None, "AILURO_TOKEN": None})
    return runner.invoke(app, ["--server", d.address, "--token-file", str(token_file), *args])


def _ok(result: Result) -> str:
    assert result.exit_code == 0, f"exit {result.exit_code}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result.stdout


def test_drain_a_site_and_ask_why(secured: RunningDispatcher, tmp_path: Path) -> None:
    admin, alice = _tokens(secured, tmp_path)
    denied = _run(secured, alice, "queue", "set-status", "CERN", "offline", "--reason", "x")
    assert denied.exit_code != 0 and "admin role" in denied.stderr
    out = _ok(_run(secured, admin, "queue", "set-status", "CERN", "offline", "--reason", "EOS upgrade"))
    assert "CERN is now offline (EOS upgrade)" in out
    bad = _run(secured, admin, "queue", "set-status", "CERN", "down", "--reason", "x")
    assert bad.exit_code == 2 and "online, offline, test, brokeroff" in bad.stderr
    listed = _ok(_run(secured, alice, "queue", "list"))
    assert "offline" in listed
    history = json.loads(_ok(_run(secured, alice, "queue", "history", "CERN", "--json")))
    assert [(h["status"], h["reason"]) for h in history] == [("offline", "EOS upgrade")]
    (pid,) = (int(x) for x in _ok(_run(secured, alice, "submit", "-t", "/bin/true", "--site", "CERN")).split())
    why = _ok(_run(secured, alice, "job", "why", str(pid)))
    assert "queue is offline: no new jobs are handed out" in why
    assert "ailuro queue set-status CERN online" in why
    answer = json.loads(_ok(_run(secured, alice, "job", "why", str(pid), "--json")))
    assert answer["share_leaf"] == "compass/analysis/alice"
    assert {q["queue"]: q["can_run"] for q in answer["queues"]} == {"CERN": False, "DUBNA": False}
    assert answer["claim_position"] == 0  # offline: nothing on CERN is in a claim order


def test_shares_show_and_set(secured: RunningDispatcher, tmp_path: Path) -> None:
    admin, alice = _tokens(secured, tmp_path)
    nodes = {n["path"]: n for n in json.loads(_ok(_run(secured, alice, "shares", "--json")))["nodes"]}
    assert nodes["compass/production"]["target"] == pytest.approx(0.7)
    assert nodes["compass/analysis"]["target"] == pytest.approx(0.3)
    table = _ok(_run(secured, alice, "shares"))
    assert "compass/production" in table and "70.0%" in table and "usage halves every 24 h" in table
    denied = _run(secured, alice, "shares", "set", "compass/production", "50")
    assert denied.exit_code != 0 and "admin role" in denied.stderr
    _ok(_run(secured, admin, "shares", "set", "compass/production", "50"))
    nodes = {n["path"]: n for n in json.loads(_ok(_run(secured, alice, "shares", "--json")))["nodes"]}
    assert nodes["compass/production"]["target"] == pytest.approx(50 / 80)
    bad = _run(secured, admin, "shares", "set", "a/b/c/d", "1")
    assert bad.exit_code != 0 and "path" in bad.stderr
