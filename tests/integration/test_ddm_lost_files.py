"""A file missing on tape is declared LOST (error 110) instead of retried, and a task's
``lost_inputs`` policy decides what that does (issue #19, items 9 and 10): ``partial`` merges and
archives the other files and ends ``partial`` naming the lost one; ``fail`` fails the task naming
it. Real XRootD tape endpoint, a real pilot, the DDM agent inside the dispatcher; SQLite and
PostgreSQL."""

# ruff: noqa: F811  (pytest fixtures imported from ddm_support are used as parameters)
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from ddm_support import ROOT, XRootDServers, put, random_file, se, wait_until, xrootd  # noqa: F401
from typer.testing import CliRunner

from ailuro import errorcodes
from ailuro.client import Client
from ailuro.ddm import word
from ailuro.queues import QueueConfig
from ailuro.v1 import ddm_pb2
from ailuro_cli.main import app

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def _cli(address: str, *args: str) -> str:
    env = {"COLUMNS": "200", "AILURO_DB_URL": None, "AILURO_DB": None, "AILURO_QUEUES": None}
    result = CliRunner(env=env).invoke(app, ["--server", address, "--user", "prod", *args])
    assert result.exit_code == 0, f"exit {result.exit_code}: {result.stdout} {result.stderr}"
    return result.stdout


def _raw_on_tape(xrootd: XRootDServers, tmp_path: Path, address: str, dataset: str, names: list[str]) -> None:
    for name in names:
        local = tmp_path / name
        random_file(local, 20_000)
        put(xrootd.tape, "compass", name, local)
    _cli(address, "ddm", "register", dataset, "--se", "CASTOR", *names)


def _task_file(tmp_path: Path, name: str, dataset: str, policy: str) -> Path:
    spec_file = ROOT / "examples" / "compass_chain" / "task.yaml"
    task = yaml.safe_load(spec_file.read_text())
    task.update(name=name, input_dataset=dataset, archive_se="CASTOR", lost_inputs=policy)
    for step in ("process", "merge"):
        task[step]["transformation"] = str(spec_file.parent / task[step]["transformation"])
        task[step]["output_dataset"] += f".{name}"
    task["merge"]["output"] = f"{name}.merged.mdst"
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(task))
    return path


def _pilot(address: str, tmp_path: Path) -> subprocess.Popen[bytes]:
    log = open(tmp_path / "pilot.log", "wb")  # noqa: SIM115 (the child keeps it; closed with the test's tmp dir)
    env = dict(os.environ, AILURO_STORAGE_ROOT=str(tmp_path / "logs"))
    args = ["--server", address, "--queue", "CERN", "--pilot-id", "p1", "--workdir", str(tmp_path / "work")]
    args += ["--heartbeat-s", "0.5", "--idle-timeout-s", "60"]
    return subprocess.Popen([sys.executable, "-m", "pilot", *args], env=env, stdout=log, stderr=subprocess.STDOUT)


def test_a_file_missing_on_tape_is_lost_and_tasks_follow_their_policy(
    xrootd: XRootDServers, tmp_path: Path, make_dispatcher: Any
) -> None:
    storage = (
        se("EOS", xrootd.disk, site="CERN"),
        se("CASTOR", xrootd.tape, site="CERN", kind="tape", staging_latency_s=0.5),
    )
    queues = (QueueConfig(name="CERN", vos=("compass",), input_se=("EOS",), output_se=("EOS",)),)
    d = make_dispatcher(
        queues=queues,
        storage=storage,
        ddm_workers=4,
        ddm_poll_s=0.2,
        ddm_backoff_base_s=0.2,
        ddm_scratch_dir=str(tmp_path / "scratch"),
    )
    _raw_on_tape(xrootd, tmp_path, d.address, "compass:raw.PART", ["p1.raw", "p2.raw", "p3.raw"])
    _raw_on_tape(xrootd, tmp_path, d.address, "compass:raw.FAIL", ["f1.raw", "f2.raw"])
    # the tape loses two files behind the catalog's back
    prefix = xrootd.tape.split("//", 2)[2]
    for lost in ("p2.raw", "f2.raw"):
        xrootd.data_path("tape", f"{prefix}/compass/{lost}").unlink()
    partial = json.loads(
        _cli(d.address, "task", "submit", str(_task_file(tmp_path, "TP", "compass:raw.PART", "partial")), "--json")
    )
    failing = json.loads(
        _cli(d.address, "task", "submit", str(_task_file(tmp_path, "TF", "compass:raw.FAIL", "fail")), "--json")
    )
    client = Client(d.address, identity="prod")
    pilot = _pilot(d.address, tmp_path)
    try:

        def state(tid: int) -> str:
            return word(ddm_pb2.TaskState, client.tasks.get(tid).task.state)

        wait_until(lambda: state(failing["task_id"]) == "failed", 120, "the fail-policy task to fail", interval=0.3)
        wait_until(lambda: state(partial["task_id"]) in ("partial", "done", "failed"), 180, "the partial task to end")
    finally:
        pilot.kill()
        pilot.wait(10)
    info = json.loads(_cli(d.address, "task", "show", str(partial["task_id"]), "--json"))
    assert info["state"] == "partial", info
    assert info["lost_files"] == ["compass:p2.raw"] and "compass:p2.raw" in info["diag"]
    assert "lost input(s) (partial): compass:p2.raw" in _cli(d.address, "task", "show", str(partial["task_id"]))
    failed = client.tasks.get(failing["task_id"]).task
    assert "compass:f2.raw" in failed.diag and list(failed.lost_files) == ["compass:f2.raw"]
    # the recall was tried once and declared lost (not retried); the replica is bad; the job says 110
    stages = [r for r in client.ddm.transfers(kind="stage", limit=100) if r.lfn in ("p2.raw", "f2.raw")]
    assert {r.lfn for r in stages} == {"p2.raw", "f2.raw"}
    assert all(
        (word(ddm_pb2.RequestState, r.state), r.attempts, r.error_code) == ("failed", 1, errorcodes.FILE_LOST)
        for r in stages
    ), stages
    reps = json.loads(_cli(d.address, "ddm", "replicas", "compass:p2.raw", "--json"))
    assert [(r["se"], r["state"]) for r in reps] == [("CASTOR", "bad")]
    lost_job = next(j for j in client.tasks.get(partial["task_id"]).jobs if j.job_name.endswith(".process.p2"))
    (job,) = client.get([lost_job.panda_id])
    assert [e.code for e in job.errors] == [errorcodes.FILE_LOST]
    # the merged file of the partial task holds the two surviving inputs and is on tape
    merged = json.loads(_cli(d.address, "ddm", "replicas", "compass:TP.merged.mdst", "--json"))
    assert {r["se"]: r["state"] for r in merged} == {"EOS": "available", "CASTOR": "available"}
    client.close()
