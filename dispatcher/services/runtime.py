"""What every service shares: the database, the configuration, this process's id, a thread pool.

Database calls are blocking; :meth:`Runtime.db_call` runs them on a dedicated thread pool so
the event loop keeps serving streams while a transaction is in flight.
"""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from dispatcher.config import DispatcherConfig
from dispatcher.services.metrics import DispatcherMetrics
from dispatcher.store.engine import Database, retry_transient

P = ParamSpec("P")
T = TypeVar("T")


class Runtime:
    """Shared state of one dispatcher process."""

    def __init__(self, config: DispatcherConfig, db: Database) -> None:
        self.config = config
        self.db = db
        self.dispatcher_id = f"{uuid.uuid4().hex[:12]}"
        self.executor = ThreadPoolExecutor(max_workers=config.db_threads, thread_name_prefix="ailuro-db")
        self.queue_names = frozenset(q.name for q in config.queues)
        self.metrics = DispatcherMetrics(dispatcher_id=self.dispatcher_id)
        """In-process counters (served on ``config.metrics_port`` when set; counted either way)."""

    async def db_call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run blocking ``fn`` on the database thread pool and await its result.

        ``fn`` must consist of complete transactions: it is re-run after a deadlock or lock timeout.
        """
        loop = asyncio.get_running_loop()
        call = functools.partial(fn, *args, **kwargs)
        return await loop.run_in_executor(self.executor, functools.partial(retry_transient, call))

    @staticmethod
    def now() -> float:
        """Wall-clock seconds since the epoch (what the database stores)."""
        return time.time()

    def close(self) -> None:
        """Stop the thread pool and close database connections."""
        self.executor.shutdown(wait=True, cancel_futures=True)
        self.db.dispose()
