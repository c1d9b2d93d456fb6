"""Group commit: many callers' items, one database transaction.

Callers ``await submit(item)``; a single background task takes everything queued so far (after
waiting ``window_s`` for more to arrive), processes the batch with one blocking call on the
database pool, and resolves each caller's future with its own result. While a batch is in the
database, the next one accumulates, so batches grow with load by themselves. ``in_flight`` > 1
lets that many batches be in the database at once (claims on PostgreSQL, whose ``FOR UPDATE SKIP
LOCKED`` keeps concurrent claims disjoint): a request that arrives while a batch is in flight is
then claimed after the window instead of after that batch.

One bad item fails alone (:func:`run_isolated`): when a batch's transaction fails, its halves
are retried in their own transactions until the failing items stand alone, so only their
callers get the error; every other item commits. A database outage (``Unavailable``) is not
split: it fails the whole batch at once instead of hammering a database that is down.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar, cast

from ailuro.errors import Unavailable
from dispatcher.logsafe import describe
from dispatcher.services.runtime import Runtime

log = logging.getLogger(__name__)

I = TypeVar("I")  # noqa: E741
R = TypeVar("R")
Process = Callable[[Sequence[I]], Sequence[R]] | Callable[[Sequence[I]], Awaitable[Sequence[R]]]
"""A batch's work: blocking (run on a database thread) or a coroutine function (awaited on the loop)."""


async def run_isolated(
    runtime: Runtime,
    process: Process[I, R],
    items: Sequence[I],
    *,
    name: str,
    urgent: bool = False,
) -> list[R | BaseException]:
    """``process(items)`` in one transaction; if that fails, split the batch until the bad items stand alone.

    Returns one entry per item, in order: its result, or the exception that failed it. The
    good items of a failed batch commit in the halves that succeed (``process`` must be safe to
    re-run on a subset: it is one complete transaction). A failing batch of ``n`` items with
    ``k`` bad ones costs about ``2 k log2(n)`` extra transactions; an outage costs none.
    ``urgent``: on the database lane of latency-critical calls (:meth:`Runtime.db_call_urgent`).
    A coroutine function ``process`` is awaited on the event loop instead.
    """
    if not items:
        return []
    try:
        if inspect.iscoroutinefunction(process):
            results = await cast(Callable[[Sequence[I]], Awaitable[Sequence[R]]], process)(items)
        else:
            call = runtime.db_call_urgent if urgent else runtime.db_call
            results = await call(cast(Callable[[Sequence[I]], Sequence[R]], process), items)
    except asyncio.CancelledError:
        raise
    except Unavailable as exc:  # the database, not an item: splitting would only multiply the waiting
        return [exc] * len(items)
    except Exception as exc:
        if len(items) == 1:
            log.warning("%s: an item failed alone and is refused: %s", name, describe(exc))
            return [exc]
        log.warning("%s: a batch of %d failed (%s); splitting it to isolate the item", name, len(items), describe(exc))
        mid = len(items) // 2
        first = await run_isolated(runtime, process, items[:mid], name=name, urgent=urgent)
        if first and all(isinstance(r, Unavailable) for r in first):
            return first + [first[0]] * (len(items) - mid)
        return first + await run_isolated(runtime, process, items[mid:], name=name, urgent=urgent)
    return list(results)


class GroupCommitter(Generic[I, R]):
    """Batches items for ``process(items) -> results`` (same length, same order)."""

    def __init__(
        self,
        runtime: Runtime,
        process: Process[I, R],
        *,
        name: str,
        window_s: float = 0.0,
        max_batch: int = 5000,
        in_flight: int = 1,
        urgent: bool = False,
    ) -> None:
        self._runtime = runtime
        self._process = process
        self._name = name
        self._window_s = window_s
        self._max_batch = max_batch
        self._in_flight = max(1, in_flight)
        self._urgent = urgent
        self._pending: list[tuple[I, asyncio.Future[R], float]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        """Start the background task (on the running loop)."""
        self._task = asyncio.create_task(self._run(), name=f"group-commit-{self._name}")

    async def stop(self) -> None:
        """Stop the task; callers still waiting get ``CancelledError``."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for _, fut, _ in self._pending:
            fut.cancel()
        self._pending.clear()

    async def submit(self, item: I) -> R:
        """Queue ``item`` and wait for its result (the exception that failed this item is re-raised)."""
        fut: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, fut, time.perf_counter()))
        self._wake.set()
        return await fut

    async def _run(self) -> None:
        slots = asyncio.Semaphore(self._in_flight)

        def finished(task: asyncio.Task[None]) -> None:
            self._running.discard(task)
            slots.release()

        try:
            while True:
                await self._wake.wait()
                await slots.acquire()  # at most ``in_flight`` batches in the database
                if self._window_s > 0:
                    await asyncio.sleep(self._window_s)
                batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
                if not self._pending:
                    self._wake.clear()
                batch = [entry for entry in batch if not entry[1].cancelled()]
                if not batch:
                    slots.release()
                    continue
                task = asyncio.create_task(self._commit(batch), name=f"group-commit-{self._name}-batch")
                self._running.add(task)
                task.add_done_callback(finished)
        except asyncio.CancelledError:
            for task in list(self._running):
                task.cancel()
            await asyncio.gather(*self._running, return_exceptions=True)
            raise

    async def _commit(self, batch: list[tuple[I, asyncio.Future[R], float]]) -> None:
        rt = self._runtime
        started = time.perf_counter()
        rt.metrics.batch_size.labels(self._name).observe(len(batch))
        rt.db_times.peak(f"{self._name}: batches in flight", len(self._running))
        for _, _, queued in batch:
            rt.db_times.record(f"{self._name}: wait for a batch", started - queued)
        try:
            results = await run_isolated(
                rt, self._process, [item for item, _, _ in batch], name=self._name, urgent=self._urgent
            )
        except asyncio.CancelledError:
            for _, fut, _ in batch:
                fut.cancel()
            raise
        except Exception as exc:  # not an item's failure (those are results): fail the batch, not the committer
            log.exception("%s: a batch of %d failed", self._name, len(batch))
            results = [exc] * len(batch)
        rt.db_times.record(f"{self._name}: batch", time.perf_counter() - started)
        for (_, fut, _), res in zip(batch, results, strict=True):
            if fut.done():
                continue
            if isinstance(res, BaseException):  # this caller's own item failed (or the database is down)
                fut.set_exception(res)
            else:
                fut.set_result(res)
