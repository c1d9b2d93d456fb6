"""The watchdog: periodically requeues jobs that never started and fails attempts with lost leases.

One runs in every dispatcher process; the store's ``SKIP LOCKED`` candidate selection keeps
several of them from handling the same job.
"""

from __future__ import annotations

import asyncio
import logging

from dispatcher.logsafe import describe
from dispatcher.services.runtime import Runtime
from dispatcher.store import watchdog as wstore

log = logging.getLogger(__name__)


class Watchdog:
    """Runs :meth:`sweep` every ``watchdog_interval_s``."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the periodic task."""
        self._task = asyncio.create_task(self._run(), name="watchdog")

    async def stop(self) -> None:
        """Stop the periodic task."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def sweep(self) -> tuple[int, int]:
        """One pass (blocking): ``(requeued, expired)`` job counts."""
        cfg = self.rt.config
        requeued = expired = 0
        while True:
            with self.rt.db.write() as conn:
                n = wstore.requeue_unstarted(
                    conn, sent_timeout_s=cfg.sent_timeout_s, now=self.rt.now(), limit=cfg.max_batch
                )
            requeued += n
            if n < cfg.max_batch:
                break
        while True:
            with self.rt.db.write() as conn:
                n = wstore.expire_leases(conn, now=self.rt.now(), limit=cfg.max_batch)
            expired += n
            if n < cfg.max_batch:
                break
        with self.rt.db.write() as conn:
            wstore.purge_commands(conn, before=self.rt.now() - cfg.command_retention_s)
        if requeued or expired:
            log.info("watchdog: %d unstarted job(s) requeued, %d lease(s) expired", requeued, expired)
        return requeued, expired

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.rt.config.watchdog_interval_s)
            try:
                await self.rt.db_call(self.sweep)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error("watchdog sweep failed; retrying next interval: %s", describe(exc))
