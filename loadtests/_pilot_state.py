"""What the lifecycle benchmark's pilot streams in one load process share (:mod:`loadtests.bench`).

Moved out of :mod:`loadtests.bench` unchanged, so that module stays near 600 lines.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from loadtests.bench import LifecycleConfig

SUBMIT_LEAD_S = 2.0
"""With ``--rate``, jobs are submitted this long before the pilots are due to ask for them, and the
pilots' requests start this long after the submission does: so the first requests find jobs. (They
started at once before: the first second's requests waited for the first submission to commit, up
to 760 ms at 424 jobs/s, and those 1.3 % of the requests alone made the run's GetJob p99 117 ms
against 49 ms in the steady window.) The pilots' streams open at once; only their requests wait."""


class PilotProcessState:
    """Per-process state of all its pilot streams."""

    def __init__(self, cfg: LifecycleConfig, done: Any, total: int) -> None:
        self.cfg = cfg
        self.done = done  # mp.Value shared by the pilot processes: jobs completed
        self.total = total
        self.finished_at: list[float] = []
        self.getjob: list[tuple[float, float]] = []  # (wall clock answered, seconds): answered with a job
        self.nojob: list[float] = []  # seconds: answered NoJob (after waiting parked for work)
        self.written: list[float] = []  # seconds: a JobRequest queued on its stream until its write completed
        self.kill_lat: list[float] = []
        self.assigned: list[tuple[int, int]] = []
        self.running_seen = 0
        self.stop = asyncio.Event()
        self.tokens = 0.0
        """Job requests this process may still send (``--rate``); refilled by :meth:`pace`."""

    async def pace(self, rate: float) -> None:
        """Add ``rate`` request tokens per second, holding at most a tenth of a second's worth,
        from :data:`SUBMIT_LEAD_S` on."""
        await asyncio.sleep(SUBMIT_LEAD_S)
        last = time.monotonic()
        while not self.stop.is_set():
            await asyncio.sleep(self.cfg.tick_s / 2)
            now = time.monotonic()
            self.tokens = min(self.tokens + (now - last) * rate, max(rate * 0.1, 1.0))
            last = now

    def take(self, wanted: int) -> int:
        """How many of ``wanted`` job requests may go out now."""
        if not self.cfg.rate:
            return wanted
        n = min(wanted, int(self.tokens))
        self.tokens -= n
        return n

    def complete(self) -> None:
        self.finished_at.append(time.time())
        with self.done.get_lock():
            self.done.value += 1
