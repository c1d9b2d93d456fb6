"""The watchdog: periodically requeues jobs that never started and fails attempts with lost leases.

One runs in every dispatcher process; the store's ``SKIP LOCKED`` candidate selection keeps
several of them from handling the same job.

A sweep step is one transaction over many jobs. If one job's row is refused by the database, the
step's candidates are retried in halves (:func:`run_isolated`) so every other job is handled,
and the refused job is quarantined: left out of later sweeps of this process (and logged once)
instead of stopping every lease from expiring. It is tried again after :data:`QUARANTINE_S`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from ailuro.errors import Unavailable
from dispatcher.logsafe import describe
from dispatcher.services.batching import run_isolated
from dispatcher.services.runtime import Runtime
from dispatcher.store import watchdog as wstore

log = logging.getLogger(__name__)

QUARANTINE_S = 60.0
"""How long a job the database refused stays out of this process's sweeps before it is tried again."""


class Watchdog:
    """Runs :meth:`sweep` every ``watchdog_interval_s``."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self._task: asyncio.Task[None] | None = None
        self.quarantined: dict[int, float] = {}
        """Jobs the database refused to change -> when to try them again; left out of sweeps until then."""

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
            n = self._step("unstarted", None)
            requeued += n
            if n < cfg.max_batch:
                break
        while True:
            n = self._step("expired", None)
            expired += n
            if n < cfg.max_batch:
                break
        with self.rt.db.write() as conn:
            wstore.purge_commands(conn, before=self.rt.now() - cfg.command_retention_s)
        if requeued or expired:
            log.info("watchdog: %d unstarted job(s) requeued, %d lease(s) expired", requeued, expired)
        return requeued, expired

    def _step(self, kind: str, only: Sequence[int] | None) -> int:
        """One transaction of a sweep step (``unstarted`` or ``expired``), optionally on ``only`` these jobs."""
        cfg = self.rt.config
        excl = self._excluded()
        with self.rt.db.write() as conn:
            if kind == "unstarted":
                return wstore.requeue_unstarted(
                    conn,
                    sent_timeout_s=cfg.sent_timeout_s,
                    now=self.rt.now(),
                    limit=cfg.max_batch,
                    only=only,
                    exclude=excl,
                )
            return wstore.expire_leases(conn, now=self.rt.now(), limit=cfg.max_batch, only=only, exclude=excl)

    def _candidates(self, kind: str) -> list[int]:
        cfg = self.rt.config
        now = self.rt.now()
        if kind == "unstarted":
            cond = wstore.unstarted_cond(sent_timeout_s=cfg.sent_timeout_s, now=now)
        else:
            cond = wstore.expired_cond(now=now)
        with self.rt.db.read() as conn:
            return wstore.candidate_ids(conn, cond, limit=cfg.max_batch, exclude=self._excluded())

    def _excluded(self) -> frozenset[int]:
        now = self.rt.now()
        for pid in [p for p, until in self.quarantined.items() if until <= now]:
            del self.quarantined[pid]
        return frozenset(self.quarantined)

    async def isolate(self) -> None:
        """After a failed sweep: handle each step's jobs in halves, quarantine the ones refused alone."""
        for kind in ("unstarted", "expired"):
            ids = await self.rt.db_call(self._candidates, kind)

            def apply(part: Sequence[int], kind: str = kind) -> list[int]:
                self._step(kind, part)
                return list(part)

            results = await run_isolated(self.rt, apply, ids, name=f"watchdog-{kind}")
            for pid, res in zip(ids, results, strict=True):
                if isinstance(res, Unavailable):
                    return
                if isinstance(res, BaseException):
                    log.error("watchdog: job %d is refused by the database (%s); quarantined", pid, describe(res))
                    self.quarantined[pid] = self.rt.now() + QUARANTINE_S

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.rt.config.watchdog_interval_s)
            try:
                await self.rt.db_call(self.sweep)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error("watchdog sweep failed; isolating the job at fault: %s", describe(exc))
                if not isinstance(exc, Unavailable):
                    with contextlib.suppress(Exception):
                        await self.isolate()
