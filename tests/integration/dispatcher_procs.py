"""Dispatcher subprocesses (``python -m dispatcher``) for tests that need more than one process."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


class DispatcherProcess:
    """One ``python -m dispatcher`` on 127.0.0.1 with its output in ``<workdir>/<name>.log``
    (``--auth trusted-metadata`` unless ``extra_args`` name ``--auth``)."""

    def __init__(
        self, db_url: str, workdir: Path, name: str, *, port: int = 0, extra_args: tuple[str, ...] = ()
    ) -> None:
        self.name = name
        self.log_path = workdir / f"{name}.log"
        self.port_file = workdir / f"{name}.port"
        self.port_file.unlink(missing_ok=True)
        # these tests are about several processes, not identity: the explicit loopback development
        # mode, unless extra_args choose --auth token
        auth = () if "--auth" in extra_args else ("--auth", "trusted-metadata")
        argv = [sys.executable, "-m", "dispatcher", "--db", db_url, "--port", str(port), *auth]
        argv += ["--port-file", str(self.port_file), "--log-level", "WARNING", *extra_args]
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        self.address = ""

    def wait_ready(self, timeout: float = 60) -> str:
        """Wait for the port file; the ``HOST:PORT`` address (the test fails if it never comes)."""
        deadline = time.monotonic() + timeout
        while not self.port_file.exists():
            if self.proc.poll() is not None:
                pytest.fail(f"{self.name} exited with {self.proc.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                pytest.fail(f"{self.name} did not start in {timeout} s:\n{self.log()}")
            time.sleep(0.1)
        self.address = f"127.0.0.1:{int(self.port_file.read_text())}"
        return self.address

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

    def stop(self, timeout: float = 20) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; the exit code of a clean stop, else ``None``."""
        if self.proc.poll() is not None:
            return self.proc.returncode
        self.proc.terminate()
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            return None

    def kill(self) -> None:
        """SIGKILL, as a crashed host would go."""
        self.proc.kill()
        self.proc.wait(timeout=10)


def free_port() -> int:
    """A loopback port nobody listens on right now (for a dispatcher started later)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
