"""The COMPASS chain end to end on real XRootD: raw files on tape -> staged and copied to disk ->
N processing jobs -> one merge job on disk -> merged file archived to tape, every checksum consistent."""

# ruff: noqa: F811  (pytest fixtures imported from ddm_support are used as parameters)
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
import zlib
from pathlib import Path

import pytest
import yaml
from ddm_support import ROOT, XRootDServers, put, random_file, se, wait_until, xrootd  # noqa: F401

from ailuro.client import Client
from ailuro.queues import QueueConfig
from ailuro.v1 import job_pb2
from dispatcher.services.ddm import AgentConfig, DDMAgent
from dispatcher.services.tasks import get_task, parse_task, submit_task
from dispatcher.store import catalog
from dispatcher.store.engine import open_database

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
N_FILES = 3
JS = job_pb2.JobStatus


def test_compass_chain_end_to_end(xrootd: XRootDServers, tmp_path: Path, make_dispatcher, db_url: str) -> None:
    tape_base, disk_base = xrootd.tape, xrootd.disk
    storage = (
        se("EOS", disk_base, site="CERN"),
        se("CASTOR", tape_base, site="CERN", kind="tape", staging_latency_s=1.5),
    )
    queues = (QueueConfig(name="CERN", vos=("compass",), input_se=("EOS",), output_se=("EOS",)),)
    d = make_dispatcher(queues=queues, storage=storage)
    # raw data on tape, registered in the catalog as dataset compass:raw.T1
    db = open_database(db_url)
    raws: dict[str, bytes] = {}
    with db.write() as conn:
        ds = catalog.ensure_dataset(conn, "compass", "raw.T1", now=time.time())
        for i in range(N_FILES):
            local = tmp_path / f"cdr{i:03d}.raw"
            adler = random_file(local, 100_000 + i)
            raws[local.name] = local.read_bytes()
            url = put(tape_base, "compass", local.name, local)
            entry = catalog.FileEntry(lfn=local.name, size=local.stat().st_size, adler32=adler, guid=str(uuid.uuid4()))
            fid = catalog.add_files(conn, "compass", [entry], dataset_id=ds, now=time.time())[local.name]
            catalog.set_replica(conn, fid, "CASTOR", state=catalog.AVAILABLE, pfn=url, now=time.time())
    spec_file = ROOT / "examples" / "compass_chain" / "task.yaml"
    task = parse_task(yaml.safe_load(spec_file.read_text()), base_dir=spec_file.parent)
    task.update(name="T1", input_dataset="compass:raw.T1", archive_se="CASTOR")
    with db.write() as conn:
        task_id, proc_ids = submit_task(conn, task, d.config, owner="prod", now=time.time())
    assert len(proc_ids) == N_FILES
    client = Client(d.address)
    jobs = client.get(proc_ids)
    assert {j.status for j in jobs} == {JS.JOB_STATUS_ASSIGNED}  # inputs only on tape
    # one DDM agent and one pilot
    agent = DDMAgent(
        AgentConfig(
            db_url=db_url,
            storage=storage,
            queues=queues,
            poll_s=0.2,
            backoff_base_s=0.5,
            scratch_dir=tmp_path / "scratch",
        ),
    )
    stop = threading.Event()
    thread = threading.Thread(target=agent.run, args=(stop,), daemon=True)
    thread.start()
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
            with db.read() as conn:
                return get_task(conn, task_id)["state"]

        wait_until(lambda: state() in ("done", "failed"), 240, "the task to end", interval=0.3)
        with db.read() as conn:
            info = get_task(conn, task_id)
        assert info["state"] == "done", info
    finally:
        stop.set()
        pilot.kill()
        pilot.wait(10)
        log.close()
        thread.join(60)
    # every processing job waited in assigned until its input was staged from tape and copied to
    # disk, then was activated and ran: assigned -> activated -> ... -> transferring -> finished
    for pid in proc_ids:
        path = [e.to_status for e in client.events(pid)]
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
    with db.read() as conn:
        merged = catalog.lookup_files(conn, [("compass", "P01.merged.mdst")])[("compass", "P01.merged.mdst")]
        reps = {r["se"]: r["state"] for r in catalog.replicas_of(conn, [merged["file_id"]])[merged["file_id"]]}
    assert merged["adler32"] == expected_adler and merged["size"] == len(expected)
    assert reps == {"EOS": "available", "CASTOR": "available"}
    from ddm.protocols import protocol_for

    url = f"{tape_base}/compass/P01.merged.mdst"
    assert protocol_for(url).checksum(url) == expected_adler
    db.dispose()
