"""``ailuro demo`` end to end, as a user runs it (smaller: 40 jobs), in a subprocess."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import jwt
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

DEMO = [sys.executable, "-m", "ailuro_cli.main", "demo"]
"""What a user types as ``ailuro demo``."""
QUEUES = ("CERN_LOCAL", "JINR_LOCAL")


def _default_sigint() -> None:
    """In the child before exec: SIGINT handled as at a terminal (Python then raises KeyboardInterrupt)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _pilot_processes(workdir: Path) -> list[str]:
    """Processes still running a wrapper from the demo's work dir."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(workdir) in cmdline:
            found.append(f"{proc.name}: {cmdline}")
    return found


def test_demo_runs_the_workload_and_stops_everything(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    env = {**os.environ, "COLUMNS": "160"}
    proc = subprocess.run(
        [
            *DEMO,
            "--jobs",
            "40",
            "--workdir",
            str(workdir),
            "--no-live",
            "--timeout-s",
            "300",
        ],
        capture_output=True,
        text=True,
        timeout=380,
        env=env,
        start_new_session=True,
    )
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "demo OK" in out
    # 40 jobs: #7 and #28 fail on purpose, #3 is killed while running
    for state, n in (("finished", 37), ("failed", 2), ("cancelled", 1)):
        assert re.search(rf"│ {state}\s+│\s+{n} │\s+{n}\s+│", out), (state, out)
    assert "1144" in out  # the killed job carries PanDA's kill code
    assert "Outputs: 37 files" in out
    outputs = sorted((workdir / "storage").glob("*/compass/*.hist.json"))
    assert len(outputs) == 37
    assert len(list((workdir / "storage").glob("*/compass/*.job.log.tgz"))) == 40
    pilot_logs = list((workdir / "factory" / "logs").glob("*/*.log"))
    assert {p.parent.name for p in pilot_logs} == {"CERN_LOCAL", "JINR_LOCAL"}
    assert _pilot_processes(workdir) == []  # every pilot was stopped
    # authentication was on: the demo issued itself least-privilege tokens, each only its own to read
    assert "tokens required" in out
    tokens = workdir / "factory" / "tokens"
    for path in (workdir / "auth" / "admin.token", tokens / "factory.token"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    # each pilot got its own token from the dispatcher (IssuePilotTokens, audited once per call); the
    # files of workers that ended are gone, any left are the worker's own, bound to its queue
    for path in tokens.glob("*/*/ailuro-pilot.token"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        claims = jwt.decode(path.read_text().strip(), options={"verify_signature": False})
        assert claims["sub"] == f"pilot:demo-factory:{path.parent.name}"
        assert (claims["wlcg.groups"], claims["ailuro.queues"]) == (
            ["/compass", "/compass/pilot"],
            [path.parent.parent.name],
        )
    with sqlite3.connect(workdir / "ailuro.db") as db:
        rows = db.execute("SELECT actor, target, detail FROM audit WHERE action = 'token.pilot'").fetchall()
    assert {target for _, target, _ in rows} == {f"queue {q}" for q in QUEUES}
    assert {actor for actor, _, _ in rows} == {"demo-factory"}
    assert sum(json.loads(detail)["tokens"] for _, _, detail in rows) == len(pilot_logs)
    factory = jwt.decode((tokens / "factory.token").read_text().strip(), options={"verify_signature": False})
    assert (factory["wlcg.groups"], factory["ailuro.queues"]) == (["/compass", "/compass/factory"], list(QUEUES))


def test_demo_refuses_a_foreign_directory(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    proc = subprocess.run(
        [*DEMO, "--jobs", "4", "--workdir", str(tmp_path), "--no-live"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "not an ailuro demo directory" in proc.stdout + proc.stderr
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_demo_stops_everything_on_ctrl_c(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    proc = subprocess.Popen(
        [*DEMO, "--jobs", "200", "--workdir", str(workdir), "--no-live"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        # Ctrl-C at a terminal: SIGINT at its default disposition, whatever this suite inherited
        # (a suite started in the background, e.g. `nohup ... &`, ignores SIGINT, and so would
        # the demo, which then ran to its end and exited 0 in two CI runs)
        preexec_fn=_default_sigint,
    )
    try:
        assert proc.stdout is not None
        seen = []
        for line in proc.stdout:
            seen.append(line)
            if "ailuro demo:" in line:  # the first progress table: pilots are being started
                break
        assert "ailuro demo:" in seen[-1], "".join(seen)
        start = time.monotonic()
        while time.monotonic() - start < 60 and not list((workdir / "factory" / "logs").glob("*/*.log")):
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGINT)
        rest, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, rest
    assert _pilot_processes(workdir) == []
