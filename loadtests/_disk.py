"""How long the machine's disk took to make a small write durable during a lifecycle run.

Every claim, heartbeat flush and final report commits, and PostgreSQL answers a commit only once
its WAL record is flushed to disk (``synchronous_commit = on``). So when the disk stalls, every
commit of that moment waits as long, whatever the dispatcher does. On the AMD EPYC machine of
#18 a lone loop of 8 KiB writes each followed by ``fdatasync`` saw p50 0.24 ms, p99 4 ms and one
flush of 203 ms in 60 s, while the 50 % rows' misses each came with one claim statement of
120-185 ms (statement p99 10-17 ms). :class:`DiskProbe` runs that loop in a thread beside the
load, on the filesystem of the temporary directory, and :meth:`DiskProbe.stop` says how often
the disk stalled, so a slow row can be told from a slow disk.

The probe writes 100 small flushes a second: a few per cent of what PostgreSQL itself flushes at
the rates measured, and no CPU to speak of.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from dataclasses import dataclass

from loadtests._harness import percentile

INTERVAL_S = 0.01
"""Pause between two probe flushes."""
BLOCK = 8192
"""Bytes written before each flush: one PostgreSQL page, as a WAL flush of a small commit."""
STALL_S = 0.05
"""A flush at least this long counts as a stall (a GetJob answer waiting for it misses 50 ms)."""
PG_HOME = "/var/lib/postgresql"
"""Where Debian's PostgreSQL keeps its clusters (the report says whether the probe shares its device)."""
SLOTS = 256
"""Distinct offsets written in turn, so the file stays 2 MiB."""


@dataclass(frozen=True, kw_only=True)
class DiskFigures:
    """What the probe saw during one run (milliseconds)."""

    flushes: int = 0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    stalls: tuple[tuple[float, float], ...] = ()
    """``(wall-clock time it began, milliseconds)`` of every flush of :data:`STALL_S` or more: the
    time, to be read beside PostgreSQL's log (its checkpoints, with ``log_checkpoints``)."""
    where: str = ""

    def line(self) -> str:
        """One report line (empty when the probe did not run)."""
        if not self.flushes:
            return ""
        at = ", ".join(f"{ms:.0f} ms at {time.strftime('%H:%M:%S', time.gmtime(t))}" for t, ms in self.stalls[:8])
        more = f" and {len(self.stalls) - 8} more" if len(self.stalls) > 8 else ""
        return (
            f"  disk ({self.where}): {self.flushes:,} flushes of {BLOCK // 1024} KiB, fdatasync p50 "
            f"{self.p50_ms:.2f} ms, p99 {self.p99_ms:.1f} ms, max {self.max_ms:.0f} ms; "
            f"{len(self.stalls)} of {STALL_S * 1e3:.0f} ms or more (UTC)" + (f": {at}{more}" if at else "")
        )


class DiskProbe:
    """A thread that times ``write`` + ``fdatasync`` of one block every :data:`INTERVAL_S`."""

    def __init__(self, directory: str | None = None) -> None:
        self.directory = directory or tempfile.gettempdir()
        self._stop = threading.Event()
        self._took: list[float] = []
        self._stalls: list[tuple[float, float]] = []
        self._thread = threading.Thread(target=self._run, name="disk probe", daemon=True)

    def start(self) -> DiskProbe:
        self._thread.start()
        return self

    def _run(self) -> None:
        block = os.urandom(BLOCK)
        fd, path = tempfile.mkstemp(prefix="ailuro-disk-probe-", dir=self.directory)
        try:
            while not self._stop.wait(INTERVAL_S):
                t, wall = time.monotonic(), time.time()
                os.pwrite(fd, block, (len(self._took) % SLOTS) * BLOCK)
                os.fdatasync(fd)
                took = time.monotonic() - t
                self._took.append(took)
                if took >= STALL_S:
                    self._stalls.append((wall, took * 1e3))
        finally:
            os.close(fd)
            os.unlink(path)

    def _where(self) -> str:
        """The probe's directory and whether PostgreSQL's usual data directory is on its device."""
        dev = os.stat(self.directory).st_dev
        try:
            same = "the device of" if os.stat(PG_HOME).st_dev == dev else "not the device of"
        except OSError:
            return self.directory
        return f"{self.directory}, {same} {PG_HOME}"

    def stop(self) -> DiskFigures:
        """Stop the thread; what it measured."""
        self._stop.set()
        self._thread.join(timeout=10)
        took = list(self._took)
        return DiskFigures(
            flushes=len(took),
            p50_ms=percentile(took, 50) * 1e3,
            p99_ms=percentile(took, 99) * 1e3,
            max_ms=max(took, default=0.0) * 1e3,
            stalls=tuple(self._stalls),
            where=self._where(),
        )
