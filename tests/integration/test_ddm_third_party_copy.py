"""Third-party copy between XRootD endpoints (issue #19, item 8): the DDM agent has the destination
server pull the file from the source (``xrdcp --tpc only``) instead of copying it through its own
scratch disk, and falls back to the scratch copy when a server does not do TPC.

The shared test servers (tests/infra/xrootd.sh) are not restarted: this module starts its own
three xrootd instances in the same network namespace on ports 21190-21192 (two with ``ofs.tpc``,
one without) and stops them at the end."""

# ruff: noqa: F811  (pytest fixtures imported from ddm_support are used as parameters)
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ddm_support import ADDR, XRootDServers, put, random_file, se, wait_until, xrootd  # noqa: F401

from ailuro.client import Client
from ailuro.errors import NotFound
from ailuro.queues import QueueConfig
from ddm.protocols import protocol_for
from ddm.protocols.base import TransferError

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]
NETNS = os.environ.get("AILURO_XRD_NETNS", "ailuro-se")
PORTS = {"tpc1": 21190, "tpc2": 21191, "plain": 21192}


def _start(base: Path, name: str, port: int, *, tpc: bool) -> int:
    home = base / name
    for sub in ("data", "run"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    lines = [
        "all.export /",
        f"oss.localroot {home / 'data'}",
        f"all.adminpath {home / 'run'}",
        f"all.pidpath {home / 'run'}",
        f"xrd.port {port}",
        "xrootd.chksum adler32",
    ]
    if tpc:  # the destination runs xrdcp in server mode to pull from the source
        lines.append(f"ofs.tpc pgm {shutil.which('xrdcp')} --server")
    (home / "xrootd.cfg").write_text("\n".join(lines) + "\n")
    subprocess.run(["chown", "-R", "xrootd:xrootd", str(base)], check=True)
    cmd = ["ip", "netns", "exec", NETNS, "xrootd", "-c", str(home / "xrootd.cfg"), "-n", name, "-R", "xrootd"]
    subprocess.run([*cmd, "-l", str(home / "xrootd.log"), "-b"], check=True, timeout=30)
    pidfile = home / "run" / name / "xrootd.pid"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if (
            pidfile.exists()
            and protocol_for(f"root://{ADDR}:{port}//x").run(["xrdfs", f"{ADDR}:{port}", "ls", "/"]).rc == 0
        ):
            return int(pidfile.read_text().split()[0])
        time.sleep(0.1)
    raise RuntimeError(f"xrootd {name} did not start on {port}")


@pytest.fixture(scope="module")
def tpc_servers(xrootd: XRootDServers) -> Iterator[dict[str, str]]:
    """Three own servers: ``tpc1``/``tpc2`` do third-party copy, ``plain`` does not; their base URLs."""
    # not under pytest's tmp dir: that is private to root, and xrootd runs as user xrootd
    base = Path(tempfile.mkdtemp(prefix="ailuro-xrd-tpc-", dir="/tmp"))
    os.chmod(base, 0o755)
    pids: list[int] = []
    try:
        for name, port in PORTS.items():
            pids.append(_start(base, name, port, tpc=name != "plain"))
        run = uuid.uuid4().hex[:6]
        yield {name: f"root://{ADDR}:{port}//tpc-{run}" for name, port in PORTS.items()}
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 15)
        shutil.rmtree(base, ignore_errors=True)


def test_protocol_third_party_copy_and_its_refusal(tpc_servers: dict[str, str], tmp_path: Path) -> None:
    local = tmp_path / "f.raw"
    adler = random_file(local, 200_000)
    src = put(tpc_servers["tpc1"], "s", "f.raw", local)
    dst = f"{tpc_servers['tpc2']}/s/f.raw"
    xrd = protocol_for(dst)
    xrd.third_party_copy(src, dst)
    assert (xrd.stat(dst).size, xrd.checksum(dst)) == (200_000, adler)
    with pytest.raises(TransferError):  # a server without ofs.tpc refuses: nothing is copied
        xrd.third_party_copy(src, f"{tpc_servers['plain']}/s/f.raw")
    with pytest.raises(NotFound):
        xrd.stat(f"{tpc_servers['plain']}/s/f.raw")


def test_agent_replicates_by_third_party_copy(
    tpc_servers: dict[str, str], tmp_path: Path, make_dispatcher: Any, caplog: pytest.LogCaptureFixture
) -> None:
    storage = (se("A", tpc_servers["tpc1"]), se("B", tpc_servers["tpc2"]), se("P", tpc_servers["plain"]))
    scratch = tmp_path / "scratch"
    d = make_dispatcher(
        queues=(QueueConfig(name="SITE", input_se=("A",)),),
        storage=storage,
        ddm_workers=2,
        ddm_poll_s=0.2,
        ddm_backoff_base_s=0.2,
        ddm_scratch_dir=str(scratch),
    )
    names = ["t1.raw", "t2.raw"]
    for name in names:
        random_file(tmp_path / name, 50_000)
        put(tpc_servers["tpc1"], "tpc", name, tmp_path / name)
    caplog.set_level(logging.INFO, logger="dispatcher.services.ddm")
    with Client(d.address, identity="prod") as c:
        c.ddm.register_files("tpc:raw.T", "A", names)
        c.ddm.replicate("tpc:raw.T", to="B")

        def states(se_name: str) -> list[str]:
            return [r.state for r in c.ddm.replicas("tpc:raw.T", storage_element=se_name)]

        wait_until(lambda: states("B") == [1, 1], 60, "both files available on B")  # REPLICA_STATE_AVAILABLE
        assert not scratch.exists() or not any(scratch.rglob("xfer-*")), "a TPC copy went through the scratch disk"
        assert sum("(third-party copy): done" in r.getMessage() for r in caplog.records) == 2
        # to a server without TPC: the agent copies through its scratch disk instead, still verified
        c.ddm.replicate("tpc:raw.T", to="P", source_se="A")
        wait_until(lambda: states("P") == [1, 1], 60, "both files available on P")
        assert sum("(through the agent): done" in r.getMessage() for r in caplog.records) == 2
