"""The COMPASS chain end to end on real XRootD, driven only through the dispatcher's API (the SDK and
the ``ailuro`` CLI with ``--server``, no database URL on the client): raw files on tape -> staged and
copied to disk -> N processing jobs -> one merge job on disk -> merged file archived to tape, every
checksum consistent. The DDM agent is the one inside the dispatcher. The tape is recalled both ways:
through XRootD's prepare protocol (the staging server; raw files evicted to tape after
registration) and by the modelled delay (a plain server)."""

# ruff: noqa: F811  (pytest fixtures imported from ddm_support are used as parameters)
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
import zlib
from pathlib import Path

import pytest
import yaml
from ddm_support import ROOT, XRootDServers, evict, put, random_file, se, wait_until, xrootd  # noqa: F401
from typer.testing import CliRunner

from ailuro.client import Client
from ailuro.ddm import word
from ailuro.queues import QueueConfig
from ailuro.v1 import ddm_pb2, job_pb2
from ailuro_cli.main import app

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
N_FILES = 3
JS = job_pb2.JobStatus


def _cli(address: str, *args: str) -> str:
    env = {"COLUMNS": "200", "AILURO_DB_URL": None, "AILURO_DB": None, "AILURO_QUEUES": None}
    result = CliRunner(env=env).invoke(app, ["--server", address, "--user", "prod", *args])
    assert result.exit_code == 0, f"exit {result.exit_code}: {result.stdout} {result.stderr}"
    return result.stdout


@pytest.mark.parametrize("staging", ["prepare", "delay"])
def test_compass_chain_end_to_end(xrootd: XRootDServers, tmp_path: Path, make_dispatcher, staging: str) -> None:
    disk_base = xrootd.disk
    if staging == "prepare":
        tape_base = f"{xrootd.stage}/{uuid.uuid4().hex[:8]}"
        castor = se("CASTOR", tape_base, site="CERN", kind="tape", staging="prepare", staging_poll_s=0.3)
    else:
        tape_base = xrootd.tape
        castor = se("CASTOR", tape_base, site="CERN", kind="tape", staging_latency_s=1.5)
    storage = (se("EOS", disk_base, site="CERN"), castor)
    queues = (QueueConfig(name="CERN", vos=("compass",), input_se=("EOS",), output_se=("EOS",)),)
    d = make_dispatcher(
        queues=queues,
        storage=storage,
        ddm_workers=8,
        ddm_poll_s=0.2,
        ddm_backoff_base_s=0.5,
        ddm_scratch_dir=str(tmp_path / "scratch"),
    )
    client = Client(d.address, identity="prod")
    # raw data on tape, registered as dataset compass:raw.T1 (size and adler32 measured by the dispatcher)
    raws: dict[str, bytes] = {}
    for i in range(N_FILES):
        local = tmp_path / f"cdr{i:03d}.raw"
        random_file(local, 100_000 + i)
        raws[local.name] = local.read_bytes()
        put(tape_base, "compass", local.name, local)
    out = _cli(d.address, "ddm", "register", "compass:raw.T1", "--se", "CASTOR", *sorted(raws))
    assert out.strip() == f"registered {N_FILES} file(s) in compass:raw.T1 on CASTOR"
    if staging == "prepare":  # migrated to tape and gone from the disk buffer: offline until recalled
        for name in raws:
            evict(f"{tape_base}/compass/{name}")
    spec_file = ROOT / "examples" / "compass_chain" / "task.yaml"
    task = yaml.safe_load(spec_file.read_text())
    task.update(name="T1", input_dataset="compass:raw.T1", archive_se="CASTOR")
    for step in ("process", "merge"):
        task[step]["transformation"] = str(spec_file.parent / task[step]["transformation"])
    (tmp_path / "task.yaml").write_text(yaml.safe_dump(task))
    submitted = json.loads(_cli(d.address, "task", "submit", str(tmp_path / "task.yaml"), "--json"))
    task_id, proc_ids = submitted["task_id"], submitted["panda_ids"]
    assert len(proc_ids) == N_FILES
    jobs = client.get(proc_ids)
    assert {j.status for j in jobs} == {JS.JOB_STATUS_ASSIGNED}  # inputs only on tape
    # one pilot; the DDM agent runs inside the dispatcher
    log = open(tmp_path / "pilot.log", "wb")  # noqa: SIM115 (closed in finally, after the pilot)
    env = dict(os.environ, AILURO_STORAGE_ROOT=str(tmp_path / "logs"))
    pilot = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pilot",
            "--server",
            d.address,
            "--queue",
            "CERN",
            "--pilot-id",
            "p1",
            "--workdir",
            str(tmp_path / "work"),
            "--heartbeat-s",
            "0.5",
            "--idle-timeout-s",
            "60",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:

        def state() -> str:
            return word(ddm_pb2.TaskState, client.tasks.get(task_id).task.state)

        wait_until(lambda: state() in ("done", "failed"), 240, "the task to end", interval=0.3)
        info = json.loads(_cli(d.address, "task", "show", str(task_id), "--json"))
        assert info["state"] == "done", info
    finally:
        pilot.kill()
        pilot.wait(10)
        log.close()
    # every processing job waited in assigned until its input was staged from tape and copied to
    # disk, then was activated and ran: assigned -> activated -> ... -> transferring -> finished
    for pid in proc_ids:
        path = [e.to_status for e in client.events(pid)]
        # inserted in the planned state (never activated first), finished only once its outputs are verified
        assert path[:2] == [JS.JOB_STATUS_DEFINED, JS.JOB_STATUS_ASSIGNED], path
        assert path.count(JS.JOB_STATUS_FINISHED) == 1, path
        last_assigned = len(path) - 1 - path[::-1].index(JS.JOB_STATUS_ASSIGNED)
        assert path[last_assigned + 1] == JS.JOB_STATUS_ACTIVATED
        assert path[-2:] == [JS.JOB_STATUS_TRANSFERRING, JS.JOB_STATUS_FINISHED]
        reasons = [e.reason for e in client.events(pid)]
        assert any("all inputs available on EOS" in r for r in reasons)
    assert all(j["status"] == "finished" for j in info["jobs"]), info["jobs"]
    assert len(info["jobs"]) == N_FILES + 1
    kinds = sorted((r["kind"], r["state"]) for r in info["requests"])
    assert ("stage", "done") in kinds and ("transfer", "done") in kinds
    # the merged file on tape has exactly the expected content's checksum, in catalog and on the server
    expected = b"".join(f"mDST of {name} ({len(data)} bytes)\n".encode() + data for name, data in sorted(raws.items()))
    expected_adler = f"{zlib.adler32(expected) & 0xFFFFFFFF:08x}"
    _, merged_files = client.ddm.dataset("compass:merged.P01")
    (merged,) = [f for f in merged_files if f.lfn == "P01.merged.mdst"]
    assert merged.adler32 == expected_adler and merged.size == len(expected)
    reps = json.loads(_cli(d.address, "ddm", "replicas", "compass:P01.merged.mdst", "--json"))
    assert {r["se"]: r["state"] for r in reps} == {"EOS": "available", "CASTOR": "available"}
    from ddm.protocols import protocol_for

    url = f"{tape_base}/compass/P01.merged.mdst"
    assert protocol_for(url).checksum(url) == expected_adler
    client.close()
