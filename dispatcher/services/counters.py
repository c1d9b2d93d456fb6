"""The counter folder: moves the appended job counter deltas into the counters every second or so.

Writers append deltas (``dispatcher/store/counters.py``) instead of updating shared counter rows;
this task keeps the delta tables small so the monitor's reads (counters + pending deltas) stay
cheap. One runs in every dispatcher process; on PostgreSQL an advisory lock lets only one of them
fold at a time, the others skip the round.
"""

from __future__ import annotations

import asyncio
import logging

from dispatcher.services.runtime import Runtime
from dispatcher.store import counters

log = logging.getLogger(__name__)

_MAX_ROUNDS = 50
"""Batches one :meth:`CounterFolder.fold` moves at most, so a huge backlog never holds a thread long."""


class CounterFolder:
    """Runs :meth:`fold` every ``counter_fold_s``."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the periodic task."""
        self._task = asyncio.create_task(self._run(), name="counter-folder")

    async def stop(self) -> None:
        """Stop the periodic task (pending deltas stay; readers count them, the next folder folds them)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def fold(self) -> int:
        """Fold pending deltas in batches (blocking); returns the delta rows folded by this process."""
        folded = 0
        for _ in range(_MAX_ROUNDS):
            with self.rt.db.write() as conn:
                n = counters.fold(conn, limit=counters.FOLD_BATCH)
            if n is None:  # another dispatcher is folding
                break
            folded += n
            if n < counters.FOLD_BATCH:
                break
        return folded

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.rt.config.counter_fold_s)
            try:
                await self.rt.db_call(self.fold)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("counter fold failed; retrying next interval")
