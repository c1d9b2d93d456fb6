"""Which pilots are connected: the ``pilots`` rows follow this process's live streams, whatever ends them.

A stream counts as connected only while it is being read. Its row is written ``connected`` when
the stream opens and ``disconnected`` when it ends, for every cause (the pilot half-closed, the
client dropped during its Hello, a reset, a cancellation, a server-side error). The writes of
one pilot id are run one after the other, in the order they were asked for, and they survive
the cancellation of the call that asked for them: a client that vanishes while its Hello is
being registered gets the registration *and then* its disconnection, never a row left behind.

The periodic refresh (``last_seen``) touches only the pilots with a live stream here, and turns
any other row this process left "connected" into a disconnected one, so no stream keeps
another pilot's row alive.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection
from typing import Any, TypeVar

from dispatcher.logsafe import describe
from dispatcher.services.runtime import Runtime
from dispatcher.store import pilots as pstore

log = logging.getLogger(__name__)

PRESENCE_REFRESH_S = 1.0
"""How often the live pilots' ``last_seen`` is refreshed (by the heartbeat flush loop, at most this
often; a row counts as connected for ``PILOT_STALE_S``, 30 s, after it)."""

T = TypeVar("T")


class Presence:
    """Ordered, cancellation-proof writes of the ``pilots`` registry for one dispatcher process."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self._last: dict[str, asyncio.Task[Any]] = {}
        self.dirty = False
        """Whether a registry write happened since the last :meth:`refresh` without live streams."""

    def _chain(self, pilot_id: str, fn: Callable[[], T]) -> asyncio.Task[T]:
        """Run ``fn`` on the database pool after this pilot's previous registry write ended."""
        prev = self._last.get(pilot_id)
        self.dirty = True

        async def op() -> T:
            if prev is not None:
                await asyncio.wait([prev])  # whatever its outcome: order, not success, matters
            return await self.rt.db_call(fn)

        task: asyncio.Task[T] = asyncio.get_running_loop().create_task(op(), name=f"presence-{pilot_id}")
        self._last[pilot_id] = task

        def done(t: asyncio.Task[Any]) -> None:
            if self._last.get(pilot_id) is t:
                del self._last[pilot_id]
            if not t.cancelled() and t.exception() is not None:
                log.warning("pilot registry write for %s failed: %s", pilot_id, describe(t.exception()))  # type: ignore[arg-type]

        task.add_done_callback(done)
        return task

    async def connect(self, pilot_id: str, fn: Callable[[], T]) -> T:
        """Run ``fn`` (it registers the pilot connected) and return its result.

        If the caller is cancelled meanwhile, ``fn`` still completes; the caller must then ask
        for :meth:`disconnect`, which runs after it.
        """
        return await asyncio.shield(self._chain(pilot_id, fn))

    def disconnect(self, pilot_id: str) -> asyncio.Task[None]:
        """Mark the pilot disconnected (if this process still owns its row), after earlier writes."""

        def run() -> None:
            with self.rt.db.write() as conn:
                pstore.disconnect_pilot(conn, pilot_id, dispatcher_id=self.rt.dispatcher_id, now=self.rt.now())

        return self._chain(pilot_id, run)

    def refresh(self, live: Collection[str]) -> None:
        """Refresh ``last_seen`` of the live pilots; disconnect rows of this process that are not live.

        Blocking (call it on the database pool). A row registered while this runs has a recent
        ``last_seen`` and is left alone; only rows older than the refresh interval are swept.
        """
        now = self.rt.now()
        margin = 2 * PRESENCE_REFRESH_S
        with self.rt.db.write() as conn:
            pstore.touch_pilots(conn, dispatcher_id=self.rt.dispatcher_id, pilot_ids=sorted(live), now=now)
            pstore.sweep_pilots(conn, dispatcher_id=self.rt.dispatcher_id, before=now - margin, now=now)
        if not live:
            self.dirty = False

    async def drain(self) -> None:
        """Wait for the registry writes in flight, then disconnect every row this process owns."""
        if self._last:
            await asyncio.wait(list(self._last.values()))

        def run() -> None:
            with self.rt.db.write() as conn:
                pstore.sweep_pilots(conn, dispatcher_id=self.rt.dispatcher_id, before=None, now=self.rt.now())

        await self.rt.db_call(run)
