"""Tasks operators can steer (issue #19, item 10), through the CLI against a dispatcher: ``task
retry`` resubmits only failed jobs, ``task abort`` kills the jobs and no new one is created, only
the owner/admin/production may do either, both are audited, and ``task submit`` refuses a script
path that does not exist before anything is stored. SQLite and PostgreSQL."""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from ailuro.client import Client
from ailuro.errors import PermissionDenied
from ailuro.queues import QueueConfig, StorageElementConfig
from ailuro_cli.main import app
from dispatcher.store import audit
from dispatcher.store.engine import open_database

pytestmark = pytest.mark.timeout(180)
_NO_DB = {"AILURO_DB_URL": None, "AILURO_DB": None, "AILURO_QUEUES": None, "AILURO_SERVER": None, "AILURO_USER": None}


def _run(d: Any, *args: str, user: str = "prod") -> Result:
    env = {"COLUMNS": "200", **_NO_DB}
    return CliRunner(env=env).invoke(app, ["--server", d.address, "--user", user, *args])


def _ok(result: Result) -> str:
    assert result.exit_code == 0, f"exit {result.exit_code}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result.stdout


@pytest.fixture
def task_setup(make_dispatcher: Callable[..., Any], tmp_path: Path) -> tuple[Any, Path]:
    """A dispatcher (no DDM agent) with two registered input files on disk and a task file."""
    root = tmp_path / "se"
    storage = (
        StorageElementConfig(name="DISK", endpoints=((root / "DISK").as_uri(),)),
        StorageElementConfig(name="TAPE", kind="tape", endpoints=((root / "TAPE").as_uri(),)),
    )
    d = make_dispatcher(storage=storage, queues=(QueueConfig(name="SITE", input_se=("DISK",)),), ddm_workers=0)
    for lfn in ("x1.raw", "x2.raw"):
        path = root / "DISK" / "compass" / lfn
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(lfn.encode())
        assert zlib.adler32(lfn.encode())
    _ok(_run(d, "ddm", "register", "compass:raw.X", "--se", "DISK", "x1.raw", "x2.raw"))
    (tmp_path / "process.py").write_text("print('p')\n")
    (tmp_path / "task.yaml").write_text(
        "name: S1\nvo: compass\ninput_dataset: compass:raw.X\narchive_se: TAPE\nlost_inputs: partial\n"
        "process: {transformation: process.py, output: '{stem}.mdst', output_dataset: 'compass:mdst.X'}\n"
        "merge: {transformation: /bin/cat, output: X.merged, output_dataset: 'compass:merged.X'}\n"
    )
    return d, tmp_path


def _audit_rows(db_url: str, action: str) -> list[audit.AuditRow]:
    db = open_database(db_url)
    try:
        with db.read() as conn:
            return audit.list_audit(conn, action=action)
    finally:
        db.dispose()


def test_retry_resubmits_only_failed_jobs_and_abort_stops_the_task(task_setup: tuple[Any, Path], db_url: str) -> None:
    d, tmp = task_setup
    sub = json.loads(_ok(_run(d, "task", "submit", str(tmp / "task.yaml"), "--json")))
    tid, (p1, p2) = sub["task_id"], sub["panda_ids"]
    info = json.loads(_ok(_run(d, "task", "show", str(tid), "--json")))
    assert info["lost_inputs"] == "partial" and info["lost_files"] == []
    # nothing failed yet: nothing to retry
    bad = _run(d, "task", "retry", str(tid))
    assert bad.exit_code == 1 and "FAILED_PRECONDITION task_id" in bad.stderr, bad.stderr
    with Client(d.address, identity="prod") as c:
        c.kill([p1], reason="operator test")
    out = json.loads(_ok(_run(d, "task", "retry", str(tid), "--json")))
    assert out["retried"] == [p1] and len(out["new_panda_ids"]) == 1
    new = out["new_panda_ids"][0]
    jobs = {j["panda_id"]: j["status"] for j in json.loads(_ok(_run(d, "task", "show", str(tid), "--json")))["jobs"]}
    assert jobs[p1] == "cancelled" and jobs[p2] in ("activated", "assigned") and jobs[new] in ("activated", "assigned")
    shown = json.loads(_ok(_run(d, "job", "show", str(new), "--json")))
    assert shown["parent_panda_id"] == p1
    # someone else may not steer it; the production role of another VO neither
    bad = _run(d, "task", "abort", str(tid), user="eve")
    assert bad.exit_code != 0 and "PERMISSION_DENIED task_id" in bad.stderr, bad.stderr
    # abort: every job that had not ended is killed, the task ends aborted, no retry afterwards
    out = json.loads(_ok(_run(d, "task", "abort", str(tid), "--reason", "wrong calibration", "--json")))
    assert out["killed_jobs"] == 2
    info = json.loads(_ok(_run(d, "task", "show", str(tid), "--json")))
    assert info["state"] == "aborted" and "wrong calibration" in info["diag"]
    assert {j["status"] for j in info["jobs"]} == {"cancelled"}
    assert "aborted" in _ok(_run(d, "task", "list"))
    bad = _run(d, "task", "retry", str(tid))
    assert bad.exit_code == 1 and "is aborted" in bad.stderr
    bad = _run(d, "task", "abort", str(tid))
    assert bad.exit_code == 1 and "FAILED_PRECONDITION" in bad.stderr
    retried = _audit_rows(db_url, audit.TASK_RETRY)
    aborted = _audit_rows(db_url, audit.TASK_ABORT)
    assert [(r.actor, r.target) for r in retried] == [("prod", f"task {tid}")]
    assert [(r.actor, r.target) for r in aborted] == [("prod", f"task {tid}")]
    assert "wrong calibration" in aborted[0].detail


def test_admin_may_steer_anyones_task(task_setup: tuple[Any, Path]) -> None:
    d, tmp = task_setup
    tid = json.loads(_ok(_run(d, "task", "submit", str(tmp / "task.yaml"), "--json")))["task_id"]
    other_vo = Client(d.address, identity="ops", vo="other", roles=("production",))
    with other_vo as c, pytest.raises(PermissionDenied):
        c.tasks.abort(tid)
    with Client(d.address, identity="ops", roles=("admin",)) as c:
        assert c.tasks.abort(tid, reason="by admin").killed_jobs == 2


def test_submit_refuses_a_script_that_does_not_exist(task_setup: tuple[Any, Path]) -> None:
    d, tmp = task_setup
    spec = tmp / "task.yaml"
    spec.write_text(spec.read_text().replace("process.py", "scripts/missing.py"))
    bad = _run(d, "task", "submit", str(spec))
    assert bad.exit_code == 2, bad.stderr
    assert "INVALID_ARGUMENT task.process.transformation: script 'scripts/missing.py' does not exist" in bad.stderr
    spec.write_text(spec.read_text().replace("/bin/cat", "/nonexistent/merge.sh"))
    bad = _run(d, "task", "submit", str(spec))
    assert bad.exit_code == 2 and "task.process.transformation" in bad.stderr
    assert json.loads(_ok(_run(d, "task", "list", "--json"))) == []  # nothing was stored
    bad = _run(d, "task", "submit", str(spec).replace("task.yaml", "nope.yaml"))
    assert bad.exit_code != 0
    spec.write_text(spec.read_text().replace("lost_inputs: partial", "lost_inputs: sometimes"))
    spec.write_text(
        spec.read_text().replace("scripts/missing.py", "process.py").replace("/nonexistent/merge.sh", "cat")
    )
    bad = _run(d, "task", "submit", str(spec))
    assert bad.exit_code == 2 and "task.lost_inputs" in bad.stderr, bad.stderr
