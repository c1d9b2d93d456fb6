"""What every service shares: the database, the configuration, this process's id, thread pools.

Database calls are blocking; :meth:`Runtime.db_call` runs them on a dedicated thread pool so
the event loop keeps serving streams while a transaction is in flight. Calls a person or a pilot
is waiting for (kills and the commands they write, job claims) go through
:meth:`Runtime.db_call_urgent`, a lane of its own (``urgent_db_threads``), so they never queue
behind bulk work (heartbeat flushes, finals, submissions) that fills the main pool. How long calls
waited for a thread and how long batches took are kept in :attr:`Runtime.db_times`.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from dispatcher.config import DispatcherConfig
from dispatcher.services.looplag import bucket
from dispatcher.services.metrics import DispatcherMetrics
from dispatcher.store.engine import Database, retry_transient

P = ParamSpec("P")
T = TypeVar("T")


class DbTimes:
    """Histograms of database-side durations in milliseconds, by name (thread-safe, cheap).

    Written into the loop lag report (``--loop-lag-dir``) so the benchmarks can print how long
    calls waited for a database thread and how long claim batches took, figures that depend
    less on the machine's load than end-to-end latencies do.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hists: dict[str, dict[int, int]] = {}
        self._peaks: dict[str, int] = {}

    def record(self, name: str, seconds: float) -> None:
        """Count one duration under ``name``."""
        b = bucket(seconds * 1e3)
        with self._lock:
            hist = self._hists.setdefault(name, {})
            hist[b] = hist.get(b, 0) + 1

    def peak(self, name: str, value: int) -> None:
        """Keep the largest ``value`` seen under ``name``."""
        with self._lock:
            if value > self._peaks.get(name, 0):
                self._peaks[name] = value

    def peaks(self) -> dict[str, int]:
        """The largest value seen by name (e.g. claim batches in the database at once)."""
        with self._lock:
            return dict(self._peaks)

    def snapshot(self) -> dict[str, dict[int, int]]:
        """A copy of every histogram (cumulative since start)."""
        with self._lock:
            return {name: dict(hist) for name, hist in self._hists.items()}


class Runtime:
    """Shared state of one dispatcher process."""

    def __init__(self, config: DispatcherConfig, db: Database) -> None:
        self.config = config
        self.db = db
        self.dispatcher_id = f"{uuid.uuid4().hex[:12]}"
        self.executor = ThreadPoolExecutor(max_workers=config.db_threads, thread_name_prefix="ailuro-db")
        self.urgent_executor = (
            ThreadPoolExecutor(max_workers=config.urgent_db_threads, thread_name_prefix="ailuro-db-urgent")
            if config.urgent_db_threads > 0
            else None
        )
        self.db_times = DbTimes()
        self.queue_names = frozenset(q.name for q in config.queues)
        self.metrics = DispatcherMetrics(dispatcher_id=self.dispatcher_id)
        """In-process counters (served on ``config.metrics_port`` when set; counted either way)."""

    async def db_call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run blocking ``fn`` on the database thread pool and await its result.

        ``fn`` must consist of complete transactions: it is re-run after a deadlock or lock timeout.
        """
        return await self._run(self.executor, "db", functools.partial(fn, *args, **kwargs))

    async def db_call_urgent(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """:meth:`db_call` on the lane of latency-critical calls (kills, commands, claims), which
        bulk work never fills; on the main pool when ``urgent_db_threads`` is 0."""
        pool = self.urgent_executor or self.executor
        lane = "db-urgent" if self.urgent_executor is not None else "db"
        return await self._run(pool, lane, functools.partial(fn, *args, **kwargs))

    async def _run(self, pool: ThreadPoolExecutor, lane: str, call: Callable[[], T]) -> T:
        queued = time.perf_counter()

        def timed() -> T:
            self.db_times.record(f"{lane}: wait for a thread", time.perf_counter() - queued)
            return retry_transient(call)

        return await asyncio.get_running_loop().run_in_executor(pool, timed)

    @staticmethod
    def now() -> float:
        """Wall-clock seconds since the epoch (what the database stores)."""
        return time.time()

    def close(self) -> None:
        """Stop the thread pool and close database connections."""
        self.executor.shutdown(wait=True, cancel_futures=True)
        if self.urgent_executor is not None:
            self.urgent_executor.shutdown(wait=True, cancel_futures=True)
        self.db.dispose()
