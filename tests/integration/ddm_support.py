"""Shared pieces of the DDM tests: the XRootD servers (tests/infra/xrootd.sh) and catalog helpers.

The ``xrootd`` fixture reuses servers CI started, or starts them itself (and stops them, deleting
the network namespace, at the end of the session); the tape server with staging (``stage``) is
started on its own when the others run without it. Missing XRootD fails the tests unless
``AILURO_ALLOW_NO_XROOTD=1`` (then they skip).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ailuro.queues import StorageElementConfig
from ddm.protocols import protocol_for

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests" / "infra" / "xrootd.sh"
ADDR = os.environ.get("AILURO_XRD_ADDR", "10.213.47.2")
DATA_DIR = Path(os.environ.get("AILURO_XRD_DIR", "/tmp/ailuro-xrootd"))


@dataclass(frozen=True, kw_only=True)
class XRootDServers:
    """Endpoints of the two test servers and how to stop/start one of them."""

    disk: str
    disk_http: str
    tape: str
    stage: str
    """The tape SE with a real staging service (XRootD prepare; tests/infra/tape_robot.py)."""

    def data_path(self, server: str, path: str) -> Path:
        """The server-side file behind ``path`` (to corrupt a replica behind the server's back)."""
        return DATA_DIR / server / "data" / path.lstrip("/")

    def tape_path(self, path: str) -> Path:
        """The file behind ``path`` on the staging server's tape (not its disk buffer)."""
        return DATA_DIR / "stage" / "tape" / path.lstrip("/")

    def stop(self, server: str) -> None:
        _script("stop", server)

    def start(self, server: str) -> None:
        _script("start", server)


def _script(*args: str) -> str:
    proc = subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=60, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{SCRIPT} {' '.join(args)} failed (rc {proc.returncode}): {proc.stdout} {proc.stderr}")
    return proc.stdout


@pytest.fixture(scope="session")
def xrootd() -> Iterator[XRootDServers]:
    """The running test servers (started here when needed)."""
    missing = shutil.which("xrootd") is None or shutil.which("xrdcp") is None or os.geteuid() != 0
    if missing:
        why = "XRootD (apt xrootd-server xrootd-client) and root (for the network namespace) are needed"
        if os.environ.get("AILURO_ALLOW_NO_XROOTD") == "1":
            pytest.skip(why)
        pytest.fail(f"{why}; set AILURO_ALLOW_NO_XROOTD=1 to skip locally")
    status = _script("status")
    started = "disk running" not in status
    if started:
        _script("start")
    stage_started = not started and "stage running" not in status  # servers of an older script
    if stage_started:
        _script("start", "stage")
    try:
        yield XRootDServers(
            disk=f"root://{ADDR}:21094//eos/test-{uuid.uuid4().hex[:6]}",
            disk_http=f"http://{ADDR}:21095/eos/test-http-{uuid.uuid4().hex[:6]}",
            tape=f"root://{ADDR}:21096//castor/test-{uuid.uuid4().hex[:6]}",
            stage=f"root://{ADDR}:21098//cta/test-{uuid.uuid4().hex[:6]}",
        )
    finally:
        if started:
            _script("stop")
        elif stage_started:
            _script("stop", "stage")


def random_file(path: Path, size: int) -> str:
    """Write ``size`` random bytes; their adler32."""
    data = os.urandom(size)
    path.write_bytes(data)
    return f"{zlib.adler32(data) & 0xFFFFFFFF:08x}"


def se(name: str, endpoint: str, **kw: Any) -> StorageElementConfig:
    """A storage element config for tests."""
    return StorageElementConfig(name=name, endpoints=(endpoint,), **kw)


def put(endpoint: str, scope: str, lfn: str, local: Path) -> str:
    """Store ``local`` as ``scope:lfn`` under ``endpoint``; its URL."""
    url = f"{endpoint}/{scope}/{lfn}"
    protocol_for(url).copy_out(local, url)
    return url


def evict(url: str) -> None:
    """``xrdfs prepare -e`` on the staging server: its robot migrates the file to tape and removes it
    from the disk buffer (asynchronously: this waits until the server says it is offline)."""
    from ddm.protocols.xrootd import XRootDProtocol, split_root_url

    xrd = XRootDProtocol()
    server, path = split_root_url(url)
    res = xrd.run(["xrdfs", server, "prepare", "-e", path])
    if res.rc != 0:
        raise RuntimeError(f"evicting {url} failed: {res}")
    wait_until(lambda: not xrd.stage_status(url, "none").online, 30, f"{url} to leave the disk buffer")


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll until ``predicate()`` is truthy; fail the test with ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")
