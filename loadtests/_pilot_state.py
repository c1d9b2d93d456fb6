"""What the lifecycle benchmark's pilot streams in one load process share (:mod:`loadtests.bench`).

Moved out of :mod:`loadtests.bench` unchanged, so that module stays near 600 lines.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from loadtests.bench import LifecycleConfig


class PilotProcessState:
    """Per-process state of all its pilot streams."""

    def __init__(self, cfg: LifecycleConfig, done: Any, total: int) -> None:
        self.cfg = cfg
        self.done = done  # mp.Value shared by the pilot processes: jobs completed
        self.total = total
        self.finished_at: list[float] = []
        self.getjob: list[tuple[float, float]] = []  # (wall clock answered, seconds): answered with a job
        self.nojob: list[float] = []  # seconds: answered NoJob (after waiting parked for work)
        self.kill_lat: list[float] = []
        self.assigned: list[tuple[int, int]] = []
        self.running_seen = 0
        self.stop = asyncio.Event()
        self.tokens = 0.0
        """Job requests this process may still send (``--rate``); refilled by :meth:`pace`."""

    async def pace(self, rate: float) -> None:
        """Add ``rate`` request tokens per second, holding at most a tenth of a second's worth."""
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
