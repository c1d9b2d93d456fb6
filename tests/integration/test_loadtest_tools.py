"""The load-test tools run end to end at a small scale: locust scenario, lifecycle bench, memory.

They assert what the tools themselves check (no failed call, consistent database), never a speed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

REPO = Path(__file__).parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    pg = os.environ.get("AILURO_TEST_PG_URL")
    if pg:
        env["AILURO_BENCH_PG_URL"] = pg
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.mark.timeout(240)
def test_locust_compass_x10_short_run_is_clean() -> None:
    """COMPASS x10 (35 jobs/s) for 45 s on PostgreSQL: no failure, every job accounted for."""
    res = _run(["loadtests.run", "--scenario", "compass-x10", "--minutes", "0.75", "--db", "postgres"], timeout=220)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-6000:]
    assert "== Ailuro load test report" in out, out[-6000:]
    assert "failures: 0" in out
    assert "consistency: OK" in out
    assert "grpc SubmitJobs" in out and "stream JobFinal" in out and "stream Heartbeat" in out


@pytest.mark.timeout(960)
def test_lifecycle_bench_small_run_is_consistent() -> None:
    """The lifecycle benchmark on both databases, one and two dispatchers, prints its table and passes its check.

    Four runs of 1,500 jobs: within the former 280 s bound on a quiet machine, not beside
    ``stress-ng --cpu 2`` (26 jobs/s on SQLite there), hence a bound of 900 s on the wait.
    """
    args = ["loadtests.bench", "--db", "both", "--dispatchers", "1,2", "--jobs", "1500", "--pilots", "20"]
    res = _run([*args, "--slots", "20", "--echo-seconds", "1", "--kill-every", "50"], timeout=900)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-6000:]
    for row in ("sqlite       1", "sqlite       2", "postgres     1", "postgres     2"):
        assert row in out, out[-4000:]
    assert out.count("consistency: OK") == 4
    assert "raw gRPC echo ceiling" in out
    # the loop lag of every dispatcher process (1 + 2 per database) during its run
    assert out.count("event loop lag, dispatcher process") == 6, out[-4000:]
    assert out.count("loop callbacks: ") == 6 and "garbage collections: gen 0:" in out


@pytest.mark.timeout(600)
def test_saturation_mode_prints_three_rows_with_submission_alongside() -> None:
    """``--saturation``: the closed loop with submission bounded ahead of completions, then 50 %
    and 80 % of its steady rate; three consistent rows."""
    args = ["loadtests.bench", "--db", "postgres", "--dispatchers", "1", "--saturation", "--jobs", "800"]
    res = _run([*args, "--pilots", "8", "--slots", "10", "--submit-ahead", "40", "--echo-seconds", "1"], timeout=580)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-6000:]
    assert "800 jobs submitted at most 40 ahead of completions" in out, out[-4000:]
    for row in ("closed+submit", "50% = ", "80% = "):
        assert row in out, out[-4000:]
    assert out.count("consistency: OK") == 3


@pytest.mark.timeout(180)
def test_memory_tool_small_run() -> None:
    """RSS is printed with every stream connected and after a claim burst against the queue."""
    res = _run(["loadtests.memory", "--streams", "300", "--queued", "20000", "--processes", "2"], timeout=170)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-4000:]
    assert "RSS with 300 connected pilot streams" in out
    assert "20,000 queued jobs" in out


def test_cli_registers_loadtest_commands() -> None:
    """``register(app)`` adds ``loadtest run|bench|memory``; bad input is refused before any work."""
    from ailuro_cli import loadtest

    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """Test root."""

    loadtest.register(app)
    runner = CliRunner()
    res = runner.invoke(app, ["loadtest", "--help"])
    assert res.exit_code == 0
    for name in ("run", "bench", "memory"):
        assert name in res.output
    res = runner.invoke(app, ["loadtest", "run", "--scenario", "nope"])
    assert res.exit_code == 2
    # bench passes further options to loadtests.bench, whose parser refuses what it does not know
    res = runner.invoke(app, ["loadtest", "bench", "--saturation", "--auth", "nope"])
    assert res.exit_code == 2 and "--auth" in res.output
    res = runner.invoke(app, ["loadtest", "bench", "--no-such-option"])
    assert res.exit_code == 2 and "--no-such-option" in res.output


def test_consistency_accounts_for_submissions_whose_reply_was_cut(pg_url: str, tmp_path: Path) -> None:
    """A SubmitJobs that committed but whose reply never reached the client (a locust user killed at
    the end of a run) is found by its request_id; jobs no request explains stay a violation."""
    from ailuro import Client
    from dispatcher.auth.config import AuthConfig
    from dispatcher.auth.minting import Minter
    from dispatcher.config import DispatcherConfig
    from dispatcher.server import run_in_thread
    from loadtests import consistency

    auth = AuthConfig(state_dir=tmp_path / "auth")  # token mode, as the load tools run it
    token = Minter.from_state_dir(tmp_path / "auth", create=True).user("lt", "compass")
    with run_in_thread(DispatcherConfig(db_url=pg_url, port=0, auth=auth)) as d, Client(d.address, token=token) as c:
        answered = c.submit([{"transformation": "/bin/true"}] * 2, request_id="answered")
        cut = c.submit([{"transformation": "/bin/true"}] * 3, request_id="cut")  # reply "lost"
    blind = consistency.check(pg_url, submitted=answered)
    assert not blind.ok and "never handed to a client" in blind.summary()
    res = consistency.check(pg_url, submitted=answered, unanswered=[("lt", "cut")])
    assert res.ok, res.summary()
    assert res.unanswered_jobs == len(cut) and "reply was cut" in res.summary()
    other = consistency.check(pg_url, submitted=answered, unanswered=[("someone-else", "cut")])
    assert not other.ok
