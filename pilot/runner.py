"""The payload process: start it under its guard in its own session, measure it, enforce limits, stop it.

A :class:`Payload` is driven from asyncio: :meth:`Payload.start` starts :mod:`pilot.guard` (which
kills the payload tree if the pilot dies) and waits until it started the payload;
:meth:`Payload.wait` runs the monitor loop (it wakes when the guard exits, through a pidfd, or
when a kill is requested, or every ``monitor_interval_s`` to measure the tree and check the
limits). Stopping always goes through the whole tree: SIGTERM to the process group and to every
tree member outside it, then SIGKILL after the grace period. When the main process exits on its
own, the guard and then the pilot kill leftover processes of its session at once: a payload must
not outlive its job.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import inspect
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pilot import guard, procfs

log = logging.getLogger(__name__)

_LEFTOVER_KILL_TIMEOUT_S = 5.0
"""How long to keep killing processes left behind by a payload that exited (D state can delay death)."""
_GUARD_START_TIMEOUT_S = 60.0
"""How long the guard may take to start the payload (a Python start-up on a loaded node)."""


class EndReason(enum.StrEnum):
    """Why the payload ended."""

    EXITED = "exited"
    """It ended by itself (exit code or a signal the pilot did not send)."""
    KILLED = "killed"
    """The pilot stopped it on request (kill command, lost lease, pilot shutdown)."""
    WALLTIME = "walltime"
    """The pilot stopped it for exceeding ``max_walltime_s``."""
    MEMORY = "memory"
    """The pilot stopped it for exceeding its memory limit (RSS of the tree)."""


@dataclass(frozen=True, kw_only=True)
class PayloadSpec:
    """What to run and under which limits."""

    argv: Sequence[str]
    cwd: Path
    env: Mapping[str, str]
    stdout_path: Path
    stderr_path: Path
    max_walltime_s: float = 0.0
    """Wall-clock limit (0: none)."""
    memory_mb: int = 0
    """RSS limit of the whole tree in MiB (0: none)."""
    kill_grace_s: float = 1.0
    """Time between SIGTERM and SIGKILL."""
    monitor_interval_s: float = 0.5
    """How often the tree is measured."""


@dataclass(kw_only=True)
class Usage:
    """Usage of the attempt so far (monotonic: maxima over all samples)."""

    cpu_time_s: float = 0.0
    max_rss_kb: int = 0
    walltime_s: float = 0.0


@dataclass(frozen=True, kw_only=True)
class PayloadResult:
    """How the payload ended."""

    reason: EndReason
    exit_code: int
    """Shell convention: the exit status, or 128 + signal number when killed by a signal."""
    signal: int | None
    """The signal that ended the main process, if any."""
    usage: Usage
    detail: str = ""
    """Why the pilot stopped it (for KILLED/WALLTIME/MEMORY)."""
    killed_by_pilot: bool = False
    """Whether the pilot sent a signal to the tree before it ended."""


@dataclass(kw_only=True)
class _KillRequest:
    reason: EndReason
    detail: str
    sigkill_at: float
    sigkill_sent: bool = False


class PayloadStartError(Exception):
    """The payload could not be started (missing executable, permission, ...)."""


def guard_command() -> list[str]:
    """How to run :mod:`pilot.guard`: its file, or its source with ``-c`` when the pilot runs from a zipapp.

    Always ``-I -S`` (isolated, no site-packages): the guard needs the standard library only, and
    the job's ``PYTHON*`` variables (it runs in the job's environment) must not break it.
    """
    path = Path(guard.__file__ or "")
    if path.is_file():
        return [sys.executable, "-I", "-S", str(path)]
    source = inspect.getsource(guard)
    return [sys.executable, "-I", "-S", "-c", source]


@dataclass(kw_only=True)
class Payload:
    """One running payload process tree, under its guard (:mod:`pilot.guard`).

    The pilot's child is the guard: the leader of the payload's session and process group, and
    the payload's parent. Signals go to the group (the guard ignores SIGTERM and outlives the
    payload to report its wait status); SIGKILL reaches the guard as well. Usage figures exclude
    the guard's own CPU and RSS (about 10 MiB), and include everything below it.
    """

    spec: PayloadSpec
    usage: Usage = field(default_factory=Usage)
    _proc: subprocess.Popen[bytes] | None = None
    _started: float = 0.0
    _kill: _KillRequest | None = None
    logger: logging.Logger = log
    """Where this payload's messages go (the job's own logger, so they land in its pilot log)."""
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _last_rss_kb: int = 0
    _status_fd: int = -1
    _status_buf: bytes = b""
    _guard_cpu_s: float = 0.0
    payload_pid: int | None = None
    """Pid of the payload's main process (the guard's child), once started."""

    @property
    def pid(self) -> int | None:
        """Pid of the guard, which is also the process-group and session id of the payload tree."""
        return self._proc.pid if self._proc else None

    async def start(self) -> None:
        """Start the guard in a new session; return once it started the payload.

        Raises :class:`PayloadStartError` when the payload cannot be started (missing program,
        permission, ...). Call it from the event-loop thread: the guard's parent-death signal is
        tied to the thread that forks it.
        """
        read_fd, write_fd = os.pipe()
        argv = [
            *guard_command(),
            "--parent",
            str(os.getpid()),
            "--status-fd",
            str(write_fd),
            "--",
            *self.spec.argv,
        ]
        try:
            with open(self.spec.stdout_path, "ab") as out, open(self.spec.stderr_path, "ab") as err:
                self._proc = subprocess.Popen(
                    argv,
                    cwd=self.spec.cwd,
                    env=dict(self.spec.env),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    start_new_session=True,
                    close_fds=True,
                    pass_fds=(write_fd,),
                )
        except OSError as exc:
            os.close(read_fd)
            raise PayloadStartError(f"cannot start the payload guard: {exc}") from exc
        finally:
            os.close(write_fd)
        self._started = time.monotonic()
        self._status_fd = read_fd
        os.set_blocking(read_fd, False)
        line = await self._first_status_line()
        if line.startswith("started "):
            self.payload_pid = int(line.split()[1])
            self.logger.info(
                "payload started, pid %d (guard %d): %s", self.payload_pid, self._proc.pid, " ".join(self.spec.argv)
            )
            return
        code = await asyncio.to_thread(self._proc.wait, _GUARD_START_TIMEOUT_S)
        self._close_status()
        if line.startswith("error "):
            raise PayloadStartError(line[len("error ") :])
        raise PayloadStartError(f"the payload guard exited with code {code} before starting it (see payload.stderr)")

    async def _first_status_line(self) -> str:
        """The guard's first status line ('' when it ended without one or took too long)."""
        loop = asyncio.get_running_loop()
        got_line = asyncio.Event()
        eof = False

        def readable() -> None:
            nonlocal eof
            eof = eof or not self._read_status()
            if eof or b"\n" in self._status_buf:
                got_line.set()

        loop.add_reader(self._status_fd, readable)
        try:
            await asyncio.wait_for(got_line.wait(), _GUARD_START_TIMEOUT_S)
        except TimeoutError:
            assert self._proc is not None
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._proc.pid, signal.SIGKILL)  # the guard and anything it started
        finally:
            loop.remove_reader(self._status_fd)
        line, _, rest = self._status_buf.partition(b"\n")
        if not _:
            return ""
        self._status_buf = rest
        return line.decode(errors="replace")

    def _read_status(self) -> bool:
        """Read what the guard wrote; ``False`` at end of file."""
        while True:
            try:
                chunk = os.read(self._status_fd, 4096)
            except BlockingIOError:
                return True
            except OSError:
                return False
            if not chunk:
                return False
            self._status_buf += chunk

    def _close_status(self) -> None:
        if self._status_fd >= 0:
            os.close(self._status_fd)
            self._status_fd = -1

    def request_kill(self, reason: EndReason, detail: str) -> None:
        """Stop the tree now: SIGTERM immediately, SIGKILL after the grace period (first request wins)."""
        if self._proc is None or self._kill is not None:
            return
        self._kill = _KillRequest(reason=reason, detail=detail, sigkill_at=time.monotonic() + self.spec.kill_grace_s)
        self.logger.info("stopping payload pid %s (%s): %s", self.payload_pid, reason.value, detail)
        self._signal_tree(signal.SIGTERM)
        self._wake.set()

    async def wait(self) -> PayloadResult:
        """Monitor until the main process has ended and its tree is gone; then return the outcome."""
        proc = self._proc
        if proc is None:
            raise RuntimeError("payload not started")
        loop = asyncio.get_running_loop()
        pidfd = os.pidfd_open(proc.pid)
        loop.add_reader(pidfd, self._wake.set)
        status: int | None = None
        rusage = None
        next_sample = 0.0
        reaped_at = 0.0
        try:
            while True:
                now = time.monotonic()
                if status is None:
                    reaped, st, ru = os.wait4(proc.pid, os.WNOHANG)
                    if reaped:
                        status, rusage = st, ru
                        reaped_at = now
                        proc.returncode = os.waitstatus_to_exitcode(st)
                        loop.remove_reader(pidfd)
                if now >= next_sample or status is not None:
                    self._sample(now)
                    next_sample = now + self.spec.monitor_interval_s
                if status is not None:
                    # the main process is done: nothing of its session may live on
                    if not self._signal_tree(signal.SIGKILL):
                        break
                    if now - reaped_at > _LEFTOVER_KILL_TIMEOUT_S:
                        self.logger.warning(
                            "payload (guard pid %d): leftovers survive SIGKILL (uninterruptible?)", proc.pid
                        )
                        break
                else:
                    self._check_limits(now)
                    if self._kill and not self._kill.sigkill_sent and now >= self._kill.sigkill_at:
                        self.logger.info(
                            "payload pid %s still alive after %.1fs: SIGKILL", self.payload_pid, self.spec.kill_grace_s
                        )
                        self._signal_tree(signal.SIGKILL)
                        self._kill.sigkill_sent = True
                self._wake.clear()
                timeout = 0.05 if status is not None else max(0.01, min(next_sample, self._kill_deadline()) - now)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)
        finally:
            loop.remove_reader(pidfd)
            os.close(pidfd)
        assert status is not None
        status, guard_cpu_s = self._payload_status(status)
        if rusage is not None:
            # CPU of reaped children is only known from here (the guard's rusage includes every
            # process it reaped, the payload too, plus its own start-up, taken out again);
            # ru_maxrss is not used because Linux carries the forking pilot's own peak over exec()
            cpu_s = rusage.ru_utime + rusage.ru_stime - guard_cpu_s
            self.usage.cpu_time_s = max(self.usage.cpu_time_s, cpu_s)
        code = os.waitstatus_to_exitcode(status)
        sig = -code if code < 0 else None
        kill = self._kill
        return PayloadResult(
            reason=kill.reason if kill else EndReason.EXITED,
            exit_code=128 + sig if sig is not None else code,
            signal=sig,
            usage=self.usage,
            detail=kill.detail if kill else "",
            killed_by_pilot=kill is not None,
        )

    def _payload_status(self, guard_status: int) -> tuple[int, float]:
        """The payload's wait status and the guard's own CPU, from the guard's last status line.

        A guard that was killed (SIGKILL after the grace period) could not report: then its own
        status stands for the payload's (the same SIGKILL reached both), and its CPU as last sampled.
        """
        self._read_status()
        self._close_status()
        for line in self._status_buf.decode(errors="replace").splitlines():
            words = line.split()
            if len(words) == 3 and words[0] == "exited":
                with contextlib.suppress(ValueError):
                    return int(words[1]), float(words[2])
        return guard_status, self._guard_cpu_s

    def _kill_deadline(self) -> float:
        if self._kill and not self._kill.sigkill_sent:
            return self._kill.sigkill_at
        return float("inf")

    def _sample(self, now: float) -> None:
        assert self._proc is not None
        root = procfs.read_proc(self._proc.pid)
        if root is not None and root.state != "Z":
            self._guard_cpu_s = root.own_cpu_s
        tree = procfs.tree_usage(self._proc.pid, exclude_root=True)
        self.usage.cpu_time_s = max(self.usage.cpu_time_s, tree.cpu_s)
        self.usage.max_rss_kb = max(self.usage.max_rss_kb, tree.rss_kb)
        self.usage.walltime_s = now - self._started
        self._last_rss_kb = tree.rss_kb

    def _check_limits(self, now: float) -> None:
        if self._kill is not None:
            return
        spec = self.spec
        elapsed = now - self._started
        if spec.max_walltime_s and elapsed > spec.max_walltime_s:
            self.request_kill(
                EndReason.WALLTIME, f"walltime {elapsed:.0f}s exceeded the limit of {spec.max_walltime_s}s"
            )
            return
        rss_kb = self._last_rss_kb
        if spec.memory_mb and rss_kb > spec.memory_mb * 1024:
            self.request_kill(
                EndReason.MEMORY, f"RSS {rss_kb // 1024} MiB exceeded the memory limit of {spec.memory_mb} MiB"
            )

    def _signal_tree(self, sig: signal.Signals) -> bool:
        """Send ``sig`` to the process group and to tree members outside it.

        Returns whether any live (non-zombie) member was found. Every group member is in the
        payload's session, so the tree read from /proc covers the whole group.
        """
        assert self._proc is not None
        root = self._proc.pid
        live = [p for p in procfs.process_tree(root) if p.state != "Z"]
        if self._proc.returncode is None or any(p.pgrp == root for p in live):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(root, sig)
        for p in live:
            if p.pgrp != root:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(p.pid, sig)
        return bool(live)
