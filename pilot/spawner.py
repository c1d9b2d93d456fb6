"""The pilot's side of its guard server: start it once, then ask it to start each payload.

Starting a Python guard per payload cost an interpreter start (tens of milliseconds of CPU) for
every job. Instead the pilot starts one guard server (``python -I -S pilot/guard.py --serve``, see
:mod:`pilot.guard`) and sends it one request per payload over a Unix socket: the command, its
work directory and environment, and three descriptors (stdout, stderr, and the job's status
socket). The server forks a job guard from itself, which starts and watches the payload exactly
as a separately started guard did, and reports on the status socket.

The server is tied to the thread that started it (its parent-death signal fires when that thread
exits), so there is one per thread (in a pilot: the event-loop thread) and per process; one that
died is started again on the next request.
"""

from __future__ import annotations

import inspect
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from pilot import guard


def guard_command() -> list[str]:
    """How to run :mod:`pilot.guard`: its file, or its source with ``-c`` when the pilot runs from a zipapp.

    Always ``-I -S`` (isolated, no site-packages): the guard needs the standard library only, and
    the job's ``PYTHON*`` variables must not break it.
    """
    path = Path(guard.__file__ or "")
    if path.is_file():
        return [sys.executable, "-I", "-S", str(path)]
    source = inspect.getsource(guard)
    return [sys.executable, "-I", "-S", "-c", source]


class GuardServer:
    """One running guard server and the socket its requests go through."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        """Pid of the server process (``None`` before the first request)."""
        return self._proc.pid if self._proc else None

    def ensure_started(self) -> None:
        """Start the server now if it is not running (a pilot does this before its first job)."""
        with self._lock:
            if self._sock is None or self._proc is None or self._proc.poll() is not None:
                self._start()

    def _start(self) -> None:
        self.close()
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            argv = [*guard_command(), "--serve", "--parent", str(os.getpid()), "--control-fd", str(theirs.fileno())]
            self._proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, close_fds=True, pass_fds=(theirs.fileno(),)
            )
        except BaseException:
            mine.close()
            raise
        finally:
            theirs.close()
        self._sock = mine

    def spawn(
        self, argv: Sequence[str], *, cwd: str, env: Mapping[str, str], stdout: int, stderr: int, status: int
    ) -> None:
        """Ask the server to start ``argv`` under a job guard reporting on ``status``.

        Raises ``OSError`` when the server cannot be started or reached (after one restart).
        """
        request = guard.encode_request(argv, cwd, env)
        with self._lock:
            for attempt in (1, 2):
                if self._sock is None or self._proc is None or self._proc.poll() is not None:
                    self._start()
                assert self._sock is not None
                try:
                    # one sendmsg for the descriptors and as much of the request as fits
                    sent = socket.send_fds(self._sock, [request], [stdout, stderr, status])
                    if sent < len(request):
                        self._sock.sendall(request[sent:])
                    return
                except OSError:
                    if attempt == 2:
                        raise
                    self.close()

    def close(self) -> None:
        """Let the server go (it kills what is left below it and exits)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._proc is not None:
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None


_servers: dict[tuple[int, int], GuardServer] = {}
_servers_lock = threading.Lock()


def guard_server() -> GuardServer:
    """The guard server of the calling thread in this process (started on first use)."""
    key = (os.getpid(), threading.get_ident())
    with _servers_lock:
        server = _servers.get(key)
        if server is None:
            server = _servers[key] = GuardServer()
        return server
