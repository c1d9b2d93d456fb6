"""The payload process: start it in its own session, measure it, enforce limits, stop it.

A :class:`Payload` is driven from asyncio: :meth:`Payload.wait` runs the monitor loop (it wakes
when the process exits, through a pidfd, or when a kill is requested, or every
``monitor_interval_s`` to measure the tree and check the limits). Stopping always goes through
the whole tree: SIGTERM to the process group and to every tree member outside it, then SIGKILL
after the grace period. When the main process exits on its own, leftover processes of its
session are killed at once: a payload must not outlive its job.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pilot import procfs

log = logging.getLogger(__name__)

_LEFTOVER_KILL_TIMEOUT_S = 5.0
"""How long to keep killing processes left behind by a payload that exited (D state can delay death)."""


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


@dataclass(kw_only=True)
class Payload:
    """One running payload process tree."""

    spec: PayloadSpec
    usage: Usage = field(default_factory=Usage)
    _proc: subprocess.Popen[bytes] | None = None
    _started: float = 0.0
    _kill: _KillRequest | None = None
    logger: logging.Logger = log
    """Where this payload's messages go (the job's own logger, so they land in its pilot log)."""
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _last_rss_kb: int = 0

    @property
    def pid(self) -> int | None:
        """Pid of the main process (also its process-group and session id)."""
        return self._proc.pid if self._proc else None

    def start(self) -> None:
        """Start the process in a new session with stdout/stderr going to the spec's files."""
        try:
            with open(self.spec.stdout_path, "ab") as out, open(self.spec.stderr_path, "ab") as err:
                self._proc = subprocess.Popen(
                    list(self.spec.argv),
                    cwd=self.spec.cwd,
                    env=dict(self.spec.env),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    start_new_session=True,
                    close_fds=True,
                )
        except OSError as exc:
            raise PayloadStartError(f"cannot start {self.spec.argv[0]!r}: {exc}") from exc
        self._started = time.monotonic()
        self.logger.info("payload started, pid %d: %s", self._proc.pid, " ".join(self.spec.argv))

    def request_kill(self, reason: EndReason, detail: str) -> None:
        """Stop the tree now: SIGTERM immediately, SIGKILL after the grace period (first request wins)."""
        if self._proc is None or self._kill is not None:
            return
        self._kill = _KillRequest(reason=reason, detail=detail, sigkill_at=time.monotonic() + self.spec.kill_grace_s)
        self.logger.info("stopping payload pid %d (%s): %s", self._proc.pid, reason.value, detail)
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
                            "payload pid %d: leftover processes survive SIGKILL (uninterruptible?)", proc.pid
                        )
                        break
                else:
                    self._check_limits(now)
                    if self._kill and not self._kill.sigkill_sent and now >= self._kill.sigkill_at:
                        self.logger.info(
                            "payload pid %d still alive after %.1fs: SIGKILL", proc.pid, self.spec.kill_grace_s
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
        if rusage is not None:
            # CPU of reaped children is only known from here; ru_maxrss is not used because Linux
            # carries the forking pilot's own peak over exec() into it
            self.usage.cpu_time_s = max(self.usage.cpu_time_s, rusage.ru_utime + rusage.ru_stime)
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

    def _kill_deadline(self) -> float:
        if self._kill and not self._kill.sigkill_sent:
            return self._kill.sigkill_at
        return float("inf")

    def _sample(self, now: float) -> None:
        assert self._proc is not None
        tree = procfs.tree_usage(self._proc.pid)
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
