"""Tape through a real staging protocol (issue #19, item 9): the "stage" XRootD server of
tests/infra/xrootd.sh exports only a disk buffer, and XRootD's prepare plug-in
(``libXrdOfsPrepGPI``) runs the test tape system's robot (tests/infra/tape_robot.py).

A file on tape is offline (not readable, ``query prepare`` says offline) until ``xrdfs prepare -s``
recalls it; the DDM agent makes that request, polls it, copies the file once online and checks its
adler32; a file missing on tape is declared lost (110) after one attempt, not retried; a recall
that keeps failing is retried as new requests, then fails the copies waiting for it.
SQLite and PostgreSQL."""

# ruff: noqa: F811  (pytest fixtures imported from ddm_support are used as parameters)
from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from ddm_support import XRootDServers, evict, put, random_file, se, wait_until, xrootd  # noqa: F401

from ailuro import errorcodes
from ailuro.client import Client
from ailuro.ddm import word
from ailuro.errors import NotFound
from ailuro.v1 import ddm_pb2
from ddm.protocols import protocol_for
from ddm.protocols.xrootd import XRootDProtocol

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def test_a_file_on_tape_is_offline_until_prepare_recalls_it(xrootd: XRootDServers, tmp_path: Path) -> None:
    xrd = XRootDProtocol()
    local = tmp_path / "a.raw"
    adler = random_file(local, 30_000)
    url = put(f"{xrootd.stage}/{uuid.uuid4().hex[:8]}", "compass", "a.raw", local)
    evict(url)
    before = xrd.stage_status(url, "none")
    assert (before.exists, before.on_tape, before.online, before.error) == (True, True, False, "")
    with pytest.raises(NotFound):
        xrd.stat(url)  # only the disk buffer is served: an offline file cannot be read
    request_id = xrd.prepare(url)
    after = wait_until(lambda: (s := xrd.stage_status(url, request_id)).online and s, 30, "the recall")
    assert (after.exists, after.on_tape, after.error) == (True, True, "")
    assert xrd.stat(url).size == 30_000 and xrd.checksum(url) == adler

    missing = f"{xrootd.stage}/{uuid.uuid4().hex[:8]}/compass/never-written.raw"
    missing_id = xrd.prepare(missing)
    gone = wait_until(lambda: (s := xrd.stage_status(missing, missing_id)).error and s, 30, "the robot's answer")
    assert (gone.exists, gone.online, gone.on_tape) == (False, False, False)
    assert "no such file on tape" in gone.error


def test_the_agent_recalls_through_prepare_and_declares_a_file_missing_on_tape_lost(
    xrootd: XRootDServers, tmp_path: Path, make_dispatcher: Any, db_url: str
) -> None:
    tape = f"{xrootd.stage}/{uuid.uuid4().hex[:8]}"  # each run its own files (SQLite and PostgreSQL)
    storage = (
        se("EOS", xrootd.disk, site="CERN"),
        se("CTA", tape, site="CERN", kind="tape", staging="prepare", staging_poll_s=0.2),
    )
    d = make_dispatcher(
        storage=storage,
        ddm_workers=4,
        ddm_poll_s=0.2,
        ddm_backoff_base_s=0.2,
        ddm_scratch_dir=str(tmp_path / "scratch"),
    )
    client = Client(d.address, identity="prod")
    assert {s.name: s.staging for s in client.ddm.storage_elements()} == {"EOS": "", "CTA": "prepare"}
    sums = {}
    for name in ("t1.raw", "t2.raw", "t3.raw"):  # written to the tape SE's buffer, registered, then migrated
        sums[name] = random_file(tmp_path / name, 25_000)
        put(tape, "compass", name, tmp_path / name)
    client.ddm.register_files("compass:raw.TAPE", "CTA", sorted(sums))
    for name in sums:
        evict(f"{tape}/compass/{name}")
    on_tape = tape.split("//", 2)[2]
    xrootd.tape_path(f"{on_tape}/compass/t2.raw").unlink()  # lost behind the catalog's back
    xrootd.tape_path(f"{on_tape}/compass/t3.raw").chmod(0)  # a cartridge the robot cannot read
    t1_url = f"{tape}/compass/t1.raw"
    with pytest.raises(NotFound):
        protocol_for(t1_url).stat(t1_url)  # offline

    client.ddm.replicate("compass:raw.TAPE", to="EOS")

    def ended() -> bool:
        open_states = ("queued", "active")
        return not [r for r in client.ddm.transfers(limit=100) if word(ddm_pb2.RequestState, r.state) in open_states]

    wait_until(ended, 120, "the transfers and recalls to end", interval=0.3)
    reqs = {(word(ddm_pb2.RequestKind, r.kind), r.lfn): r for r in client.ddm.transfers(limit=100)}

    # t1: recalled through prepare, copied to disk, adler32 checked at the destination
    stage1, copy1 = reqs[("stage", "t1.raw")], reqs[("transfer", "t1.raw")]
    assert word(ddm_pb2.RequestState, stage1.state) == "done" and word(ddm_pb2.RequestState, copy1.state) == "done"
    eos = {r.storage_element: r for r in client.ddm.replicas("compass:t1.raw")}
    assert word(ddm_pb2.ReplicaState, eos["EOS"].state) == "available"
    eos_url = f"{xrootd.disk}/compass/t1.raw"
    assert protocol_for(eos_url).checksum(eos_url) == sums["t1.raw"]
    assert eos["CTA"].online_until.seconds > 0
    # the recall was a real prepare request: the tape system knows the id the agent kept
    with sa.create_engine(db_url).connect() as conn:
        external = conn.execute(
            sa.text("SELECT external_id FROM ddm_requests WHERE request_id = :r"), {"r": stage1.request_id}
        ).scalar_one()
    assert external and XRootDProtocol().stage_status(t1_url, external).online

    # t2: the tape system says it does not exist: lost (110) after one attempt, not retried
    stage2, copy2 = reqs[("stage", "t2.raw")], reqs[("transfer", "t2.raw")]
    assert (word(ddm_pb2.RequestState, stage2.state), stage2.attempts, stage2.error_code) == (
        "failed",
        1,
        errorcodes.FILE_LOST,
    )
    assert "lost on CTA" in stage2.last_error and "no such file on tape" in stage2.last_error
    assert (word(ddm_pb2.RequestState, copy2.state), copy2.error_code) == ("failed", errorcodes.FILE_LOST)
    (cta2,) = client.ddm.replicas("compass:t2.raw")
    assert (cta2.storage_element, word(ddm_pb2.ReplicaState, cta2.state)) == ("CTA", "bad")

    # t3: every recall fails (the robot cannot read it): retried up to the request's attempts, each
    # a new prepare; then the copy waiting for it fails with the recall's error, the replica stays good
    stage3, copy3 = reqs[("stage", "t3.raw")], reqs[("transfer", "t3.raw")]
    assert (word(ddm_pb2.RequestState, stage3.state), stage3.attempts) == ("failed", stage3.max_attempts)
    assert stage3.error_code == errorcodes.STAGEIN_FAILED and "recall failed" in stage3.last_error
    assert (word(ddm_pb2.RequestState, copy3.state), copy3.error_code) == ("failed", errorcodes.STAGEIN_FAILED)
    assert f"the recall from CTA failed (request {stage3.request_id})" in copy3.last_error
    (cta3,) = client.ddm.replicas("compass:t3.raw")
    assert word(ddm_pb2.ReplicaState, cta3.state) == "available"
    client.close()
