"""The payload process: start it under its guard in its own session, measure it, enforce limits, stop it.

A :class:`Payload` is driven from asyncio: :meth:`Payload.start` has the pilot's guard server
(:mod:`pilot.spawner`) start the payload under a job guard (:mod:`pilot.guard`, which kills the
payload tree if the pilot dies) and waits until it started; :meth:`Payload.wait` runs the monitor
loop (it wakes when the guard reports on the job's status socket, when a kill is requested, or
every ``monitor_interval_s`` to measure the tree and check the limits). A payload that ends
before its first measurement costs no ``/proc`` walk at all: its CPU comes from the guard's
report. Stopping always goes through the whole tree: SIGTERM to the process group and to every
tree member outside it, then SIGKILL after the grace period. When the main process exits on its
own, the guard kills leftover processes at once: a payload must not outlive its job.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import signal
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ailuro.aio import wait_event
from pilot import procfs
from pilot.spawner import guard_server

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


@dataclass(kw_only=True)
class Payload:
    """One running payload process tree, under its job guard (:mod:`pilot.guard`).

    The payload's main process leads its own session and process group; its job guard is its
    parent and subreaper, outside that group, and serves one payload at a time (the guard server
    reuses it for the next one). Signals go to the group and to tree members outside it, never to
    the guard. The guard holds the job's status socket until it reaped the payload and killed
    what it left, so the end of the stream means every process of the job is gone (the group is
    signalled only before the guard's report: its id may be reused once the payload is reaped).
    Usage figures exclude the guard's own CPU and RSS, and include everything below it.
    """

    spec: PayloadSpec
    usage: Usage = field(default_factory=Usage)
    _guard_pid: int | None = None
    _started: float = 0.0
    _kill: _KillRequest | None = None
    logger: logging.Logger = log
    """Where this payload's messages go (the job's own logger, so they land in its pilot log)."""
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _last_rss_kb: int = 0
    _status: socket.socket | None = None
    _status_fd: int = -1
    _status_buf: bytes = b""
    _status_eof: bool = False
    payload_pid: int | None = None
    """Pid of the payload's main process (the guard's child), once started."""

    @property
    def pid(self) -> int | None:
        """Pid of the payload's guard (reused for the pilot's later payloads; not in their group)."""
        return self._guard_pid

    async def start(self) -> None:
        """Have the guard server start the payload under a job guard; return once it started.

        Raises :class:`PayloadStartError` when the payload cannot be started (missing program,
        permission, ...). Call it from the event-loop thread: the guard server's parent-death
        signal is tied to the thread that started it.
        """
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with open(self.spec.stdout_path, "ab") as out, open(self.spec.stderr_path, "ab") as err:
                guard_server().spawn(
                    self.spec.argv,
                    cwd=str(self.spec.cwd),
                    env=self.spec.env,
                    stdout=out.fileno(),
                    stderr=err.fileno(),
                    status=theirs.fileno(),
                )
        except OSError as exc:
            mine.close()
            raise PayloadStartError(f"cannot start the payload guard: {exc}") from exc
        finally:
            theirs.close()
        self._started = time.monotonic()
        self._status = mine
        self._status_fd = mine.fileno()
        mine.setblocking(False)
        line = await self._first_status_line()
        words = line.split()
        if len(words) == 3 and words[0] == "started":
            self.payload_pid, self._guard_pid = int(words[1]), int(words[2])
            self.logger.info(
                "payload started, pid %d (guard %d): %s", self.payload_pid, self._guard_pid, " ".join(self.spec.argv)
            )
            return
        self._close_status()
        if line.startswith("error "):
            raise PayloadStartError(line[len("error ") :])
        raise PayloadStartError("the payload guard ended before starting the payload (see payload.stderr)")

    async def _first_status_line(self) -> str:
        """The guard's first status line ('' when it ended without one or took too long)."""
        loop = asyncio.get_running_loop()
        got_line = asyncio.Event()

        def readable() -> None:
            self._read_status()
            if self._status_eof or b"\n" in self._status_buf:
                got_line.set()

        loop.add_reader(self._status_fd, readable)
        try:
            # on a timeout, closing the status socket makes the guard kill whatever it started
            await wait_event(got_line, _GUARD_START_TIMEOUT_S)
        finally:
            loop.remove_reader(self._status_fd)
        line, newline, rest = self._status_buf.partition(b"\n")
        if not newline:
            return ""
        self._status_buf = rest
        return line.decode(errors="replace")

    def _read_status(self) -> None:
        """Read what the guard wrote (sets ``_status_eof`` at end of stream)."""
        while not self._status_eof:
            try:
                chunk = os.read(self._status_fd, 4096)
            except BlockingIOError:
                return
            except OSError:
                chunk = b""
            if not chunk:
                self._status_eof = True
                return
            self._status_buf += chunk

    def _close_status(self) -> None:
        if self._status is not None:
            self._status.close()
            self._status = None
            self._status_fd = -1

    def _status_line(self, word: str, fields: int) -> list[str] | None:
        """The words of the guard's (or server's) status line starting with ``word``, if it came."""
        for line in self._status_buf.decode(errors="replace").splitlines():
            words = line.split()
            if len(words) == fields and words[0] == word:
                return words
        return None

    def _report(self) -> tuple[int, float] | None:
        """``(payload wait status, tree CPU seconds)`` from the guard's ``exited`` line, once it came."""
        words = self._status_line("exited", 4)
        with contextlib.suppress(TypeError, ValueError):
            return int(words[1]), float(words[3])  # type: ignore[index]
        return None

    def request_kill(self, reason: EndReason, detail: str) -> None:
        """Stop the tree now: SIGTERM immediately, SIGKILL after the grace period (first request wins)."""
        if self._guard_pid is None or self._kill is not None:
            return
        self._kill = _KillRequest(reason=reason, detail=detail, sigkill_at=time.monotonic() + self.spec.kill_grace_s)
        self.logger.info("stopping payload pid %s (%s): %s", self.payload_pid, reason.value, detail)
        self._signal_tree(signal.SIGTERM)
        self._wake.set()

    async def wait(self) -> PayloadResult:
        """Monitor until the main process has ended and its tree is gone; then return the outcome."""
        if self._guard_pid is None or self._status_fd < 0:
            raise RuntimeError("payload not started")
        loop = asyncio.get_running_loop()

        def readable() -> None:
            self._read_status()
            self._wake.set()
            if self._status_eof:
                loop.remove_reader(self._status_fd)

        loop.add_reader(self._status_fd, readable)
        next_sample = self._started + self.spec.monitor_interval_s
        report: tuple[int, float] | None = None
        reported_at = 0.0
        try:
            while not self._status_eof:
                now = time.monotonic()
                if report is None and (report := self._report()) is not None:
                    reported_at = now  # the payload is done: the server reaps the guard next
                if report is None:
                    self._monitor(now, next_sample)
                    if now >= next_sample:
                        next_sample = now + self.spec.monitor_interval_s
                    timeout = max(0.01, min(next_sample, self._kill_deadline()) - now)
                elif now - reported_at > _LEFTOVER_KILL_TIMEOUT_S:
                    self.logger.warning("payload guard %s was not reaped after its report", self._guard_pid)
                    break
                else:
                    timeout = _LEFTOVER_KILL_TIMEOUT_S
                self._wake.clear()
                await wait_event(self._wake, timeout)  # never asyncio.wait_for: see ailuro/aio.py
        finally:
            if self._status_fd >= 0:
                loop.remove_reader(self._status_fd)
        self.usage.walltime_s = time.monotonic() - self._started
        report = report or self._report()  # the report and the end of the stream may come in one read
        if report is None:
            # the guard was killed (SIGKILL after the grace period reached the whole group): its
            # status stands for the payload's, and what escaped the group is killed from here
            reaped = self._status_line("reaped", 2)
            status = int(reaped[1]) if reaped and reaped[1].isdigit() and int(reaped[1]) else signal.SIGKILL
            await self._kill_leftovers()
        else:
            status, tree_cpu_s = report
            self.usage.cpu_time_s = max(self.usage.cpu_time_s, tree_cpu_s)
        self._close_status()
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

    def _monitor(self, now: float, next_sample: float) -> None:
        """One pass while the payload runs: measure when due, check the limits, escalate a kill."""
        if now >= next_sample:
            self._sample(now)
        self._check_limits(now)
        if self._kill and not self._kill.sigkill_sent and now >= self._kill.sigkill_at:
            grace = self.spec.kill_grace_s
            self.logger.info("payload pid %s still alive after %.1fs: SIGKILL", self.payload_pid, grace)
            self._signal_tree(signal.SIGKILL)
            self._kill.sigkill_sent = True

    async def _kill_leftovers(self) -> None:
        """SIGKILL what is left of a tree whose guard died, until nothing is (or give up)."""
        deadline = time.monotonic() + _LEFTOVER_KILL_TIMEOUT_S
        while self._signal_tree(signal.SIGKILL):
            if time.monotonic() > deadline:
                self.logger.warning("payload (guard pid %s): leftovers survive SIGKILL (uninterruptible?)", self.pid)
                return
            await asyncio.sleep(0.05)

    def _kill_deadline(self) -> float:
        if self._kill and not self._kill.sigkill_sent:
            return self._kill.sigkill_at
        return float("inf")

    def _tree(self) -> list[procfs.ProcInfo]:
        """The payload's processes: everything below its guard (which serves one payload at a time
        and is their subreaper), or, once the guard is gone, the payload's session and descendants."""
        assert self._guard_pid is not None and self.payload_pid is not None
        if self._status_eof:
            return procfs.process_tree(self.payload_pid)
        return [p for p in procfs.process_tree(self._guard_pid) if p.pid != self._guard_pid]

    def _sample(self, now: float) -> None:
        tree = self._tree()
        # the guard is reused: its reaped children's CPU (earlier jobs) must not count, so only live
        # members are summed; what this payload's reaped children used comes with the guard's report
        cpu_s = sum(p.cpu_s for p in tree)
        rss_kb = sum(p.rss_kb for p in tree)
        self.usage.cpu_time_s = max(self.usage.cpu_time_s, cpu_s)
        self.usage.max_rss_kb = max(self.usage.max_rss_kb, rss_kb)
        self.usage.walltime_s = now - self._started
        self._last_rss_kb = rss_kb

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
        """Send ``sig`` to the payload's process group and to tree members outside it.

        Returns whether any live (non-zombie) member was found. The group is the payload's own
        session (its main process leads it); the guard is outside it and never signalled. The
        group is signalled only while the main process is not known to be reaped (no ``exited``
        report read just before): its id could be reused once it is.
        """
        assert self._guard_pid is not None and self.payload_pid is not None
        group = self.payload_pid
        self._read_status()
        if self._status_buf:
            self._wake.set()  # a report read here is handled by the monitor loop
        live = [p for p in self._tree() if p.state != "Z"]
        if self._report() is None and (not self._status_eof or any(p.pgrp == group for p in live)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, sig)
        for p in live:
            if p.pgrp != group:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(p.pid, sig)
        return bool(live)
