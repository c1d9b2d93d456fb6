"""Fixtures of the fault-tolerance tests: dispatcher processes with short timeouts, a private PostgreSQL.

The private cluster (``initdb`` + ``pg_ctl`` on an unusual port, as user ``postgres`` when run as
root) exists so a test may stop and restart PostgreSQL without touching the shared server on
5432 that other tests use at the same time.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).parent
REPO = HERE.parents[1]

FAULT_TIMEOUTS: dict[str, Any] = {
    "lease_s": 3.0,
    "sent_timeout_s": 3.0,
    "heartbeat_flush_s": 0.1,
    "watchdog_interval_s": 0.3,
    "no_job_retry_s": 0.2,
    "command_poll_s": 0.1,
    "pilot_stale_s": 3.0,
    "grace_s": 0.5,
    "db_threads": 4,
}


@dataclass(kw_only=True)
class DispatcherProc:
    """A dispatcher process started by :func:`dispatchers`."""

    name: str
    proc: subprocess.Popen[bytes]
    address: str
    log: Path

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def tail(self) -> str:
        """The end of its log, for failure messages."""
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


@pytest.fixture
def dispatchers(tmp_path: Path) -> Iterator[Callable[..., DispatcherProc]]:
    """Factory ``start(db_url, name, **overrides)``: a dispatcher process on port 0, stopped at teardown."""
    started: list[DispatcherProc] = []

    def start(db_url: str, name: str = "d", **overrides: Any) -> DispatcherProc:
        config = {"db_url": db_url, "port": 0, **FAULT_TIMEOUTS, **overrides}
        port_file = tmp_path / f"{name}.port"
        log = tmp_path / f"{name}.log"
        argv = [sys.executable, str(HERE / "run_dispatcher.py"), "--port-file", str(port_file)]
        argv += ["--config", json.dumps(config)]
        with log.open("wb") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
        d = DispatcherProc(name=name, proc=proc, address="", log=log)
        started.append(d)
        deadline = time.monotonic() + 60
        while not port_file.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"dispatcher {name} did not start (rc={proc.returncode}):\n{d.tail()}")
            time.sleep(0.05)
        d.address = f"127.0.0.1:{int(port_file.read_text())}"
        return d

    yield start
    for d in started:
        if d.proc.poll() is None:
            d.proc.terminate()
    for d in started:
        try:
            d.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            d.proc.kill()
            d.proc.wait(timeout=10)


def _pg_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    pytest.fail(f"{name} not found (install the postgresql package)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(kw_only=True)
class PrivatePostgres:
    """A throw-away PostgreSQL cluster owned by one test."""

    datadir: Path
    port: int
    as_user: list[str]
    pg_ctl: str

    @property
    def url(self) -> str:
        """SQLAlchemy URL of its ``postgres`` database."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def ctl(self, *args: str, timeout: float = 60) -> None:
        """Run ``pg_ctl`` with ``args`` against this cluster."""
        opts = f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories={self.datadir}"
        argv = [*self.as_user, self.pg_ctl, "-D", str(self.datadir), "-o", opts, "-w", "-t", "30", *args]
        res = subprocess.run(argv, capture_output=True, timeout=timeout, check=False)
        if res.returncode != 0:
            raise RuntimeError(f"pg_ctl {args}: rc={res.returncode}\n{res.stdout.decode()}\n{res.stderr.decode()}")

    def stop(self) -> None:
        """Fast shutdown (disconnects every client)."""
        self.ctl("stop", "-m", "fast")

    def start(self) -> None:
        """Start and wait until it accepts connections."""
        self.ctl("-l", str(self.datadir / "server.log"), "start")


@pytest.fixture
def private_pg() -> Iterator[PrivatePostgres]:
    """A PostgreSQL cluster of its own on a free port (never the shared one on 5432)."""
    root = Path(tempfile.mkdtemp(prefix="ailuro-fault-pg-"))
    datadir = root / "data"
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        shutil.chown(root, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    res = subprocess.run(
        [*as_user, _pg_bin("initdb"), "-D", str(datadir), "--auth=trust", "-U", "postgres", "--no-sync"],
        capture_output=True,
        timeout=120,
        check=False,
    )
    if res.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"initdb failed: {res.stderr.decode()}")
    pg = PrivatePostgres(datadir=datadir, port=_free_port(), as_user=as_user, pg_ctl=_pg_bin("pg_ctl"))
    pg.start()
    try:
        yield pg
    finally:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            pg.ctl("stop", "-m", "immediate")
        shutil.rmtree(root, ignore_errors=True)
