# ruff: noqa: F811  (pytest fixtures imported from ddm_support are used as parameters)
"""DDM against real XRootD servers: protocol plugins, verified transfers, corruption, server loss."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import pytest
from ddm_support import XRootDServers, put, random_file, se, wait_until, xrootd  # noqa: F401

from ailuro import errorcodes
from ailuro.errors import NotFound
from ddm.checksum import adler32_of_file
from ddm.protocols import TransferError, protocol_for
from ddm.transfer import Expected, TransferFailure, copy_verified
from dispatcher.services.ddm import AgentConfig, DDMAgent
from dispatcher.store import catalog
from dispatcher.store.engine import open_database

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


@pytest.mark.parametrize("kind", ["root", "http"])
def test_file_to_storage_and_back_with_checksums(xrootd: XRootDServers, tmp_path: Path, kind: str) -> None:
    base = xrootd.disk if kind == "root" else xrootd.disk_http
    src = tmp_path / "src.bin"
    adler = random_file(src, 3_000_000)
    url = f"{base}/sub/dir/f.bin"
    proto = protocol_for(url)
    assert proto.copy_out(src, url).adler32 == adler
    assert proto.stat(url).size == 3_000_000
    assert proto.checksum(url) == adler  # the server's own adler32
    back = proto.copy_in(url, tmp_path / "back.bin")
    assert back.adler32 == adler and adler32_of_file(tmp_path / "back.bin") == adler
    proto.delete(url)
    with pytest.raises(NotFound):
        proto.stat(url)


def test_verified_copy_between_servers_and_missing_source(xrootd: XRootDServers, tmp_path: Path) -> None:
    src = tmp_path / "a.bin"
    adler = random_file(src, 500_000)
    disk_url = put(xrootd.disk, "s", "a.bin", src)
    tape_url = f"{xrootd.tape}/s/a.bin"
    got = copy_verified(disk_url, tape_url, Expected(size=500_000, adler32=adler), scratch=tmp_path / "scratch")
    assert got.adler32 == adler and protocol_for(tape_url).checksum(tape_url) == adler
    # the catalog disagrees with the source: 1171, and nothing is written
    with pytest.raises(TransferFailure) as bad:
        copy_verified(disk_url, tape_url + ".x", Expected(size=500_000, adler32="00000001"), scratch=tmp_path)
    assert bad.value.code == errorcodes.CHECKSUM_MISMATCH_STAGEIN
    with pytest.raises(NotFound):
        protocol_for(tape_url).stat(tape_url + ".x")
    # a missing source is a clear, non-retryable error, quickly
    t0 = time.monotonic()
    with pytest.raises(TransferFailure) as missing:
        copy_verified(
            f"{xrootd.disk}/s/nope.bin", tape_url + ".y", Expected(size=1, adler32="00000001"), scratch=tmp_path
        )
    assert missing.value.retryable is False and "does not exist" in missing.value.message
    # an unreachable server is an error too (not a multi-minute reconnect loop)
    with pytest.raises(TransferError):
        protocol_for("root://127.0.0.1:1//x").stat("root://127.0.0.1:1//x")
    assert time.monotonic() - t0 < 30


def _agent(db_url: str, storage: tuple, tmp_path: Path, **kw: object) -> DDMAgent:
    cfg = AgentConfig(
        db_url=db_url, storage=storage, poll_s=0.1, backoff_base_s=0.3, lease_s=5, scratch_dir=tmp_path / "scr", **kw
    )
    return DDMAgent(cfg)


def _register(db_url: str, scope: str, path: Path, lfn: str, se_name: str, url: str) -> int:
    db = open_database(db_url)
    with db.write() as conn:
        entry = catalog.FileEntry(
            lfn=lfn, size=path.stat().st_size, adler32=adler32_of_file(path), guid=str(uuid.uuid4())
        )
        fid = catalog.add_files(conn, scope, [entry], dataset_id=None, now=time.time())[lfn]
        catalog.set_replica(conn, fid, se_name, state=catalog.AVAILABLE, pfn=url, now=time.time())
    db.dispose()
    return fid


def _request(db_url: str, **kw: object) -> dict:
    db = open_database(db_url)
    with db.read() as conn:
        rows = [dict(r) for r in catalog.list_requests(conn)]
    db.dispose()
    return {r["request_id"]: r for r in rows if all(r[k] == v for k, v in kw.items())}


def test_corrupted_replica_is_detected_reported_and_retransferred(
    xrootd: XRootDServers, tmp_path: Path, db_url: str
) -> None:
    local_base = (tmp_path / "localse").as_uri()
    storage = (se("LOCALDISK", local_base), se("EOS", xrootd.disk))
    f = tmp_path / "c.bin"
    random_file(f, 200_000)
    put(local_base, "sc", "c.bin", f)
    eos_url = put(xrootd.disk, "sc", "c.bin", f)
    fid = _register(db_url, "sc", f, "c.bin", "LOCALDISK", f"{local_base}/sc/c.bin")
    db = open_database(db_url)
    with db.write() as conn:
        catalog.set_replica(conn, fid, "EOS", state=catalog.AVAILABLE, pfn=eos_url, now=time.time())
    # corrupt the EOS copy behind the server's back (same size, other bytes)
    server_file = xrootd.data_path("disk", eos_url.split("//", 2)[2])
    data = bytearray(server_file.read_bytes())
    data[1000] ^= 0xFF
    server_file.write_bytes(bytes(data))
    with db.write() as conn:
        catalog.add_request(conn, kind="verify", file_id=fid, dest_se="EOS", now=time.time())
    agent = _agent(db_url, storage, tmp_path)
    try:
        agent.drain(60)
    finally:
        agent.close()
    reqs = _request(db_url)
    verify = next(r for r in reqs.values() if r["kind"] == "verify")
    assert verify["state"] == "failed" and verify["error_code"] == errorcodes.CHECKSUM_MISMATCH_STAGEOUT
    assert "adler32" in verify["last_error"]
    repair = next(r for r in reqs.values() if r["kind"] == "transfer")
    assert repair["state"] == "done" and repair["activity"] == "repair"
    assert protocol_for(eos_url).checksum(eos_url) == adler32_of_file(f)
    with db.read() as conn:
        states = {r["se"]: r["state"] for r in catalog.replicas_of(conn, [fid])[fid]}
    assert states == {"LOCALDISK": "available", "EOS": "available"}
    db.dispose()


def test_transfer_interrupted_by_killing_the_server_is_retried(
    xrootd: XRootDServers, tmp_path: Path, db_url: str
) -> None:
    local_base = (tmp_path / "localse").as_uri()
    storage = (se("LOCALDISK", local_base), se("EOS", xrootd.disk))
    f = tmp_path / "big.bin"
    random_file(f, 150_000_000)
    put(local_base, "sk", "big.bin", f)
    fid = _register(db_url, "sk", f, "big.bin", "LOCALDISK", f"{local_base}/sk/big.bin")
    db = open_database(db_url)
    with db.write() as conn:
        rid = catalog.add_request(conn, kind="transfer", file_id=fid, dest_se="EOS", now=time.time())
    agent = _agent(db_url, storage, tmp_path)
    stop = threading.Event()
    thread = threading.Thread(target=agent.run, args=(stop,), daemon=True)
    eos_dir = xrootd.data_path("disk", xrootd.disk.split("//", 2)[2]) / "sk"
    thread.start()
    try:
        # kill the server while the upload's temporary file grows on it
        wait_until(
            lambda: eos_dir.is_dir() and any(p.name.startswith(".big.bin.part") for p in eos_dir.iterdir()),
            60,
            "the upload to start",
            interval=0.005,
        )
        xrootd.stop("disk")
        wait_until(lambda: _request(db_url)[rid]["attempts"] >= 1, 60, "the failed attempt to be recorded")
        assert _request(db_url)[rid]["last_error"]
        xrootd.start("disk")
        wait_until(lambda: _request(db_url)[rid]["state"] == "done", 120, "the retried transfer")
    finally:
        stop.set()
        thread.join(60)
        xrootd.start("disk")
    url = f"{xrootd.disk}/sk/big.bin"
    assert protocol_for(url).checksum(url) == adler32_of_file(f)
    assert protocol_for(url).stat(url).size == 150_000_000
    with db.read() as conn:
        assert catalog.replicas_of(conn, [fid])[fid][0]["state"] == "available"
    db.dispose()
