"""Group commit: many callers' items, one database transaction.

Callers ``await submit(item)``; a single background task takes everything queued so far (after
waiting ``window_s`` for more to arrive), processes the batch with one blocking call on the
database pool, and resolves each caller's future with its own result. While one batch is in the
database, the next one accumulates, so batches grow with load by themselves.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from dispatcher.services.runtime import Runtime

log = logging.getLogger(__name__)

I = TypeVar("I")  # noqa: E741
R = TypeVar("R")


class GroupCommitter(Generic[I, R]):
    """Batches items for ``process(items) -> results`` (same length, same order)."""

    def __init__(
        self,
        runtime: Runtime,
        process: Callable[[Sequence[I]], Sequence[R]],
        *,
        name: str,
        window_s: float = 0.0,
        max_batch: int = 5000,
    ) -> None:
        self._runtime = runtime
        self._process = process
        self._name = name
        self._window_s = window_s
        self._max_batch = max_batch
        self._pending: list[tuple[I, asyncio.Future[R]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the background task (on the running loop)."""
        self._task = asyncio.create_task(self._run(), name=f"group-commit-{self._name}")

    async def stop(self) -> None:
        """Stop the task; callers still waiting get ``CancelledError``."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for _, fut in self._pending:
            fut.cancel()
        self._pending.clear()

    async def submit(self, item: I) -> R:
        """Queue ``item`` and wait for its result (exceptions of the batch are re-raised)."""
        fut: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, fut))
        self._wake.set()
        return await fut

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            if self._window_s > 0:
                await asyncio.sleep(self._window_s)
            batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
            if not self._pending:
                self._wake.clear()
            batch = [(item, fut) for item, fut in batch if not fut.cancelled()]
            if not batch:
                continue
            try:
                results = await self._runtime.db_call(self._process, [item for item, _ in batch])
            except asyncio.CancelledError:
                for _, fut in batch:
                    fut.cancel()
                raise
            except Exception as exc:  # handed to every caller of this batch; the loop carries on
                log.debug("%s batch of %d failed: %r", self._name, len(batch), exc)
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for (_, fut), res in zip(batch, results, strict=True):
                if not fut.done():
                    fut.set_result(res)
