"""Several dispatcher processes on one host sharing one port (``ailuro server --workers N``).

Why processes: one dispatcher process runs its event loop (job requests, kills, acks) and its
database threads under one GIL, so a claim waits whenever a heartbeat flush or a group commit
of finals holds the interpreter. N worker processes each have their own GIL, event loop and
connection pool; the kernel spreads incoming connections over them (``SO_REUSEPORT``), so a
pilot stream lives on one worker and a busy neighbour cannot stall it. Every worker is a whole
dispatcher with its own ``dispatcher_id``: the coordination several dispatchers already use
(claims conditional on the row as read, with ``SKIP LOCKED``; kills through ``pilot_commands``;
leases) needs nothing new.

The supervisor here does no request work: it migrates the schema once, holds the port (so
``--port 0`` works and a restarted worker gets the same port back), starts the workers, restarts
one that dies (its pilots reconnect to the others meanwhile and resume their jobs with
``Hello.held_jobs``), and stops them all on SIGINT/SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import multiprocessing as mp
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from multiprocessing.context import SpawnProcess
from typing import Any

from dispatcher.config import DispatcherConfig

log = logging.getLogger(__name__)

START_TIMEOUT_S = 120.0
"""A worker that does not listen within this is a start-up failure (nothing is restarted then)."""
RESTART_DELAY_S = 1.0
"""Pause before restarting a worker that died, so a worker that keeps crashing does not spin."""
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def reserve_port(host: str, port: int) -> socket.socket:
    """Bind (without listening) an ``SO_REUSEPORT`` socket on ``host:port``: the port stays ours.

    The kernel hands connections only to listening sockets, so this one never receives any; the
    workers bind the same port with ``SO_REUSEPORT`` and share the connections among themselves.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this worker when its supervisor dies (even by SIGKILL): no orphans
    keep serving the port after the supervisor is gone. SIGKILL, not SIGTERM: a graceful stop
    gains nothing here (pilots reconnect, finals are resent) and an orphan whose shutdown hung
    was seen once."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _worker_main(config: DispatcherConfig, ready: Any, log_level: str) -> None:
    """Entry point of one worker process: a whole dispatcher bound with ``SO_REUSEPORT``."""
    from dispatcher.server import serve  # in the child: the supervisor never loads the server

    _die_with_parent()
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s")
    asyncio.run(serve(config, on_ready=lambda _port: ready.set()))


class WorkerPool:
    """``n`` dispatcher processes sharing ``config.port``; see the module docstring."""

    def __init__(self, config: DispatcherConfig, n: int, *, log_level: str = "INFO") -> None:
        if n < 1:
            raise ValueError(f"workers must be at least 1, got {n}")
        self._ctx = mp.get_context("spawn")
        self._n = n
        self._log_level = log_level
        self._reserved = reserve_port(config.host, config.port)
        self.port: int = self._reserved.getsockname()[1]
        self.config = replace(config, port=self.port, reuse_port=True)
        self._procs: list[SpawnProcess] = []
        self._stopping = threading.Event()
        self.restarts = 0
        """Workers restarted after they died (for logs and tests)."""

    @property
    def pids(self) -> list[int]:
        """Process ids of the workers now (a restarted worker has a new one)."""
        return [p.pid for p in self._procs if p.pid is not None]

    def worker_config(self, i: int) -> DispatcherConfig:
        """Worker ``i``'s configuration: the shared port, and its own metrics port (``metrics_port + i``)."""
        base = self.config.metrics_port
        if not base:  # off, or 0 (each worker takes a free port and logs it)
            return self.config
        return replace(self.config, metrics_port=base + i)

    def _spawn(self, i: int) -> tuple[SpawnProcess, Any]:
        ready = self._ctx.Event()
        proc = self._ctx.Process(
            target=_worker_main,
            args=(self.worker_config(i), ready, self._log_level),
            name=f"ailuro-dispatcher-worker-{i}",
        )
        proc.start()
        return proc, ready

    def _wait_ready(self, proc: SpawnProcess, ready: Any) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not ready.wait(0.2):
            if not proc.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"dispatcher worker did not start (exit code {proc.exitcode})")

    def start(self) -> WorkerPool:
        """Migrate the schema once, then start every worker and wait until all listen."""
        from dispatcher.store.engine import open_database

        open_database(self.config.db_url, pool_size=1).dispose()  # workers then find it migrated
        try:
            for i in range(self._n):
                proc, ready = self._spawn(i)
                self._procs.append(proc)
                self._wait_ready(proc, ready)
        except BaseException:
            self.stop()
            raise
        log.info("%d dispatcher workers listening on %s:%d", self._n, self.config.host, self.port)
        return self

    def supervise(self, stop: threading.Event, *, poll_s: float = 0.2) -> None:
        """Restart workers that die until ``stop`` is set."""
        while not stop.wait(poll_s):
            for i, proc in enumerate(self._procs):
                if proc.is_alive() or stop.is_set():
                    continue
                log.warning("dispatcher worker %s exited (code %s): restarting it", proc.pid, proc.exitcode)
                proc.join(0)
                if stop.wait(RESTART_DELAY_S):
                    return
                self._procs[i], ready = self._spawn(i)
                self.restarts += 1
                with contextlib.suppress(RuntimeError):  # a failed restart is retried next round
                    self._wait_ready(self._procs[i], ready)

    def stop(self, grace_s: float | None = None) -> None:
        """SIGTERM every worker (each shuts down gracefully), SIGKILL what is left after the grace."""
        grace = self.config.grace_s + 15 if grace_s is None else grace_s
        for proc in self._procs:
            if proc.is_alive():
                proc.terminate()
        deadline = time.monotonic() + grace
        for proc in self._procs:
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join(5)
        self._procs.clear()
        self._reserved.close()


def serve_workers(
    config: DispatcherConfig, n: int, *, on_ready: Callable[[int], None] | None = None, log_level: str = "INFO"
) -> None:
    """Run ``n`` workers on ``config.port`` until SIGINT or SIGTERM; ``on_ready(port)`` once all listen."""
    stop = threading.Event()
    pool = WorkerPool(config, n, log_level=log_level)  # raises at once when the port is taken
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        pool.start()
        if on_ready is not None:
            on_ready(pool.port)
        pool.supervise(stop)
    finally:
        pool.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
