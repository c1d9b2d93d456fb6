"""Rucio's everyday verbs on real XRootD (issue #19, item 8), through the CLI: ``ailuro ddm upload``
(register + copy + checksum at the SE + verified by the agent), ``ailuro ddm delete`` (never the last
available replica), replicas that expire (``replicate --lifetime``), and ``ailuro ddm requests``
showing progress. SQLite and PostgreSQL."""

# ruff: noqa: F811  (pytest fixtures imported from ddm_support are used as parameters)
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from ddm_support import XRootDServers, random_file, se, wait_until, xrootd  # noqa: F401
from typer.testing import CliRunner, Result

from ailuro.errors import NotFound
from ailuro.queues import QueueConfig
from ailuro_cli.main import app
from ddm.protocols import protocol_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]
_NO_DB = {"AILURO_DB_URL": None, "AILURO_DB": None, "AILURO_QUEUES": None, "AILURO_SERVER": None}


def _run(address: str, *args: str) -> Result:
    return CliRunner(env={"COLUMNS": "200", **_NO_DB}).invoke(app, ["--server", address, "--user", "prod", *args])


def _ok(result: Result) -> str:
    assert result.exit_code == 0, f"exit {result.exit_code}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result.stdout


def _replicas(address: str, did: str) -> dict[str, str]:
    return {r["se"]: r["state"] for r in json.loads(_ok(_run(address, "ddm", "replicas", did, "--json")))}


def test_upload_delete_and_expiry(xrootd: XRootDServers, tmp_path: Path, make_dispatcher: Any) -> None:
    storage = (se("EOS", xrootd.disk), se("CASTOR", xrootd.tape, kind="tape", staging_latency_s=0.2))
    d = make_dispatcher(
        queues=(QueueConfig(name="SITE", input_se=("EOS",)),),
        storage=storage,
        ddm_workers=4,
        ddm_poll_s=0.2,
        ddm_backoff_base_s=0.2,
        ddm_scratch_dir=str(tmp_path / "scratch"),
    )
    a = d.address
    files = [tmp_path / "u1.root", tmp_path / "u2.root"]
    sums = [random_file(f, 30_000 + i) for i, f in enumerate(files)]
    out = json.loads(
        _ok(_run(a, "ddm", "upload", *map(str, files), "--se", "EOS", "--dataset", "user:up.v1", "--json"))
    )
    assert [(r["lfn"], r["adler32"]) for r in out] == [(f.name, s) for f, s in zip(files, sums, strict=True)]
    url = out[0]["pfn"]
    assert protocol_for(url).checksum(url) == sums[0]
    wait_until(lambda: _replicas(a, "user:u1.root") == {"EOS": "available"}, 60, "the upload verified by the agent")
    wait_until(lambda: _replicas(a, "user:u2.root") == {"EOS": "available"}, 60, "the second upload verified")
    # the same name with other content is refused before anything is copied
    files[0].write_bytes(b"other content")
    bad = _run(a, "ddm", "upload", str(files[0]), "--se", "EOS", "--dataset", "user:up.v1")
    assert bad.exit_code == 2 and "is registered with size" in bad.stderr, bad.stderr
    assert protocol_for(url).checksum(url) == sums[0]
    # the last available replica cannot be deleted
    bad = _run(a, "ddm", "delete", "user:u1.root", "--se", "EOS")
    assert bad.exit_code == 1 and "FAILED_PRECONDITION" in bad.stderr and "only available copy" in bad.stderr
    # a copy on tape, deleted on request; another that expires by itself
    _ok(_run(a, "ddm", "replicate", "user:u1.root", "--to", "CASTOR"))
    wait_until(lambda: _replicas(a, "user:u1.root").get("CASTOR") == "available", 60, "u1 on tape")
    tape_url = f"{xrootd.tape}/user/u1.root"
    assert protocol_for(tape_url).checksum(tape_url) == sums[0]
    _ok(_run(a, "ddm", "delete", "user:u1.root", "--se", "CASTOR"))
    wait_until(lambda: "CASTOR" not in _replicas(a, "user:u1.root"), 60, "the tape replica deleted")
    with pytest.raises(NotFound):
        protocol_for(tape_url).stat(tape_url)
    # The lifetime runs from the request: with 3 s, a copy slower than that on a busy machine was
    # deleted as soon as it arrived, and the CLI polls (a subprocess each) never saw it available.
    _ok(_run(a, "ddm", "replicate", "user:u2.root", "--to", "CASTOR", "--lifetime", "30"))
    wait_until(lambda: _replicas(a, "user:u2.root").get("CASTOR") == "available", 60, "u2 on tape")
    wait_until(lambda: "CASTOR" not in _replicas(a, "user:u2.root"), 120, "the tape copy of u2 expired")
    assert _replicas(a, "user:u2.root") == {"EOS": "available"}
    # progress: every request ended (2 register verifies, 2 upload verifies reused or new, 2 copies, 2 deletes)
    progress = json.loads(_ok(_run(a, "ddm", "requests", "--json")))
    assert progress["counts"]["queued"] == 0 and progress["counts"]["active"] == 0, progress
    kinds = sorted(r["kind"] for r in json.loads(_ok(_run(a, "ddm", "transfers", "--state", "done", "--json"))))
    assert kinds.count("delete") == 2 and kinds.count("transfer") == 2
    text = _ok(_run(a, "ddm", "requests"))
    assert text.startswith(f"{progress['total']} request(s): 0 queued, 0 active, ") and "100% ended" in text
