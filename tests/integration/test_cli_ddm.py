"""``ailuro ddm ...`` and ``ailuro task ...`` against a dispatcher, with no database URL and no queue
file on the client: output formats, exit codes, error lines, and no ``ailuro.db`` appearing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from ailuro.queues import QueueConfig, StorageElementConfig
from ailuro_cli.main import app

pytestmark = pytest.mark.timeout(180)
_NO_DB = {"AILURO_DB_URL": None, "AILURO_DB": None, "AILURO_QUEUES": None, "AILURO_SERVER": None, "AILURO_USER": None}


@pytest.fixture
def setup(make_dispatcher: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Path]:
    """A dispatcher with a disk and a tape SE (no agent: requests stay as made); the client runs in an empty dir."""
    root = tmp_path / "se"
    storage = (
        StorageElementConfig(name="DISK", site="S", endpoints=((root / "DISK").as_uri(),)),
        StorageElementConfig(name="TAPE", kind="tape", endpoints=((root / "TAPE").as_uri(),), staging_latency_s=5),
    )
    d = make_dispatcher(storage=storage, queues=(QueueConfig(name="SITE", input_se=("DISK",)),), ddm_workers=0)
    client_dir = tmp_path / "client"
    client_dir.mkdir()
    monkeypatch.chdir(client_dir)
    return d, root


def _run(d: Any, *args: str) -> Result:
    return CliRunner(env={"COLUMNS": "200", **_NO_DB}).invoke(app, ["--server", d.address, "--user", "prod", *args])


def _ok(result: Result) -> str:
    assert result.exit_code == 0, f"exit {result.exit_code}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result.stdout


def _put(root: Path, se: str, scope: str, lfn: str, data: bytes) -> str:
    path = root / se / scope / lfn
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return f"{zlib.adler32(data) & 0xFFFFFFFF:08x}"


def test_ddm_commands_through_the_dispatcher(setup: tuple[Any, Path]) -> None:
    d, root = setup
    assert _ok(_run(d, "ddm", "dataset")).strip() == "no datasets"  # an empty catalog is no crash
    assert json.loads(_ok(_run(d, "ddm", "dataset", "--json"))) == []
    ses = json.loads(_ok(_run(d, "ddm", "se", "--json")))
    assert [(s["name"], s["kind"]) for s in ses] == [("DISK", "disk"), ("TAPE", "tape")]
    assert "TAPE" in _ok(_run(d, "ddm", "se"))
    sums = {lfn: _put(root, "TAPE", "compass", lfn, lfn.encode() * 10) for lfn in ("a.raw", "b.raw")}
    assert _ok(_run(d, "ddm", "register", "compass:raw.P01", "--se", "TAPE", "a.raw", "b.raw")).strip() == (
        "registered 2 file(s) in compass:raw.P01 on TAPE"
    )
    files = json.loads(_ok(_run(d, "ddm", "dataset", "compass:raw.P01", "--json")))
    assert [(f["lfn"], f["adler32"]) for f in files] == [(k, v) for k, v in sorted(sums.items())]
    listed = json.loads(_ok(_run(d, "ddm", "dataset", "--json")))
    assert listed == [{"scope": "compass", "name": "raw.P01", "files": 2}]
    reps = json.loads(_ok(_run(d, "ddm", "replicas", "compass:raw.P01", "--json")))
    assert [(r["lfn"], r["se"], r["state"]) for r in reps] == [
        ("a.raw", "TAPE", "available"),
        ("b.raw", "TAPE", "available"),
    ]
    out = _ok(_run(d, "ddm", "replicate", "compass:raw.P01", "--to", "DISK"))
    assert out.startswith("2 transfer request(s): [")
    staged = json.loads(_ok(_run(d, "ddm", "stage", "compass:a.raw", "--se", "TAPE", "--json")))
    assert len(staged) == 1
    rows = json.loads(_ok(_run(d, "ddm", "transfers", "--state", "queued,active", "--json")))
    assert sorted(r["kind"] for r in rows) == ["stage", "transfer", "transfer"]
    assert set(rows[0]) >= {"request_id", "kind", "scope", "lfn", "dest_se", "state", "attempts", "last_error"}
    assert json.loads(_ok(_run(d, "ddm", "transfers", "--state", "failed", "--state", "done", "--json"))) == []
    assert "compass:a.raw" in _ok(_run(d, "ddm", "transfers"))
    assert len(json.loads(_ok(_run(d, "ddm", "transfers", "--limit", "1", "--json")))) == 1
    assert json.loads(_ok(_run(d, "ddm", "replicas", "compass:raw.P01", "--se", "DISK", "--json"))) == []
    made = json.loads(_ok(_run(d, "ddm", "dataset", "user:new.ds", "--create", "--json")))
    assert made == {"scope": "user", "name": "new.ds", "files": 0, "created": True}
    assert _ok(_run(d, "ddm", "dataset", "user:new.ds", "--create")).strip() == "dataset user:new.ds exists"
    assert _ok(_run(d, "ddm", "transfers", "--cancel", str(staged[0]))).strip() == "withdrew 1 request(s)"
    # refused at once, with the field named and exit code 2 for bad input
    bad = _run(d, "ddm", "replicate", "compass:raw.P01", "--to", "NOPE_SE")
    assert bad.exit_code == 2 and "INVALID_ARGUMENT dest_se: unknown storage element 'NOPE_SE'" in bad.stderr
    bad = _run(d, "ddm", "transfers", "--state", "queued,sleeping")
    assert bad.exit_code == 2 and "states[1]" in bad.stderr
    bad = _run(d, "ddm", "register", "compass:raw.P01", "--se", "TAPE", "gone.raw")
    assert bad.exit_code == 1 and "NOT_FOUND files[0].lfn" in bad.stderr
    bad = _run(d, "ddm", "dataset", "compass:nope")
    assert bad.exit_code == 1 and "NOT_FOUND" in bad.stderr
    assert not list(Path.cwd().iterdir()), "the client created files (a database?)"


def test_task_commands_through_the_dispatcher(setup: tuple[Any, Path], tmp_path: Path) -> None:
    d, root = setup
    for lfn in ("x1.raw", "x2.raw"):
        _put(root, "DISK", "compass", lfn, lfn.encode())
    _ok(_run(d, "ddm", "register", "compass:raw.X", "--se", "DISK", "x1.raw", "x2.raw"))
    spec = tmp_path / "task.yaml"
    (tmp_path / "process.py").write_text("print('p')\n")
    text = (
        "name: X1\nvo: compass\ninput_dataset: compass:raw.X\narchive_se: TAPE\n"
        "process: {transformation: process.py, output: '{stem}.mdst', output_dataset: 'compass:mdst.X'}\n"
        "merge: {transformation: /bin/cat, output: X.merged, output_dataset: 'compass:merged.X'}\n"
    )
    spec.write_text(text)
    sub = json.loads(_ok(_run(d, "task", "submit", str(spec), "--json")))
    assert len(sub["panda_ids"]) == 2
    info = json.loads(_ok(_run(d, "task", "show", str(sub["task_id"]), "--json")))
    assert (info["name"], info["owner"], info["state"]) == ("X1", "prod", "processing")
    assert [j["job_name"] for j in info["jobs"]] == ["X1.process.x1", "X1.process.x2"]
    assert {j["status"] for j in info["jobs"]} <= {"activated", "assigned"}
    jobs = json.loads(_ok(_run(d, "job", "show", str(sub["panda_ids"][0]), "--json")))
    assert jobs["transformation"] == str((tmp_path / "process.py").resolve())  # relative to the task file
    assert f"task {sub['task_id']} X1:" in _ok(_run(d, "task", "show", str(sub["task_id"])))
    assert [t["task_id"] for t in json.loads(_ok(_run(d, "task", "list", "--state", "processing", "--json")))] == [
        sub["task_id"]
    ]
    assert _ok(_run(d, "task", "submit", str(spec))).startswith("task ")
    assert len(json.loads(_ok(_run(d, "task", "list", "--owner", "prod", "--json")))) == 2
    assert json.loads(_ok(_run(d, "task", "list", "--owner", "nobody", "--json"))) == []
    assert "X1" in _ok(_run(d, "task", "list"))
    # an empty script path is refused at submit, like SubmitJobs refuses an empty transformation
    spec.write_text(text.replace("transformation: process.py", "transformation: ''"))
    bad = _run(d, "task", "submit", str(spec))
    assert bad.exit_code == 2 and "INVALID_ARGUMENT task.process.transformation: must not be empty" in bad.stderr
    bad = _run(d, "task", "show", "99999")
    assert bad.exit_code == 1 and "NOT_FOUND" in bad.stderr
    bad = _run(d, "task", "list", "--state", "bogus")
    assert bad.exit_code == 2
    assert not list(Path.cwd().iterdir())


def test_real_subprocess_needs_no_database(setup: tuple[Any, Path]) -> None:
    d, _ = setup
    exe = Path(sys.executable).with_name("ailuro")
    env = {k: v for k, v in os.environ.items() if k not in _NO_DB}
    env["AILURO_SERVER"] = d.address
    proc = subprocess.run(
        [str(exe), "ddm", "se", "--json"], capture_output=True, text=True, timeout=60, env=env, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert [s["name"] for s in json.loads(proc.stdout)] == ["DISK", "TAPE"]
    assert not list(Path.cwd().iterdir())


def test_remote_dispatcher_process_runs_the_agent(db_url: str, tmp_path: Path) -> None:
    """``python -m dispatcher --queues FILE`` serves DDMService and runs the DDM agent; the CLI, a
    separate process with no database URL, registers files and has them copied tape -> disk."""
    from dispatcher_procs import DispatcherProcess

    root = tmp_path / "se"
    queues = tmp_path / "queues.toml"
    queues.write_text(
        f'[[storage]]\nname = "DISK"\nendpoints = ["{(root / "DISK").as_uri()}"]\n\n'
        f'[[storage]]\nname = "TAPE"\nkind = "tape"\nendpoints = ["{(root / "TAPE").as_uri()}"]\n'
        'staging_latency_s = 0.2\n\n[[queue]]\nname = "SITE"\ninput_se = ["DISK"]\n'
    )
    data = {lfn: os.urandom(3000) for lfn in ("r1.raw", "r2.raw")}
    for lfn, blob in data.items():
        _put(root, "TAPE", "compass", lfn, blob)
    proc = DispatcherProcess(db_url, tmp_path, "remote", extra_args=("--queues", str(queues), "--ddm-workers", "2"))
    client_dir = tmp_path / "client"
    client_dir.mkdir()
    exe = Path(sys.executable).with_name("ailuro")
    env = {k: v for k, v in os.environ.items() if k not in _NO_DB}

    def cli(*args: str) -> str:
        done = subprocess.run(
            [str(exe), "--server", proc.address, *args],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            cwd=client_dir,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    try:
        proc.wait_ready()
        cli("ddm", "register", "compass:raw.R", "--se", "TAPE", *sorted(data))
        ids = json.loads(cli("ddm", "replicate", "compass:raw.R", "--to", "DISK", "--json"))
        assert len(ids) == 2
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            reps = json.loads(cli("ddm", "replicas", "compass:raw.R", "--se", "DISK", "--json"))
            if [r["state"] for r in reps] == ["available", "available"]:
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"files not copied to DISK: {cli('ddm', 'transfers')}\n{proc.log()}")
        kinds = {(r["kind"], r["state"]) for r in json.loads(cli("ddm", "transfers", "--json"))}
        assert {("stage", "done"), ("transfer", "done")} <= kinds
        for lfn, blob in data.items():
            assert (root / "DISK" / "compass" / lfn).read_bytes() == blob
    finally:
        assert proc.stop() == 0, proc.log()
    assert not list(client_dir.iterdir())
