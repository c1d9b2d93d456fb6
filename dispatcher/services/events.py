"""WatchJobs: one tail of the ``job_events`` table per process, fanned out to every watcher.

Tailing the table (rather than in-memory hooks) makes a watcher on one dispatcher see changes
made by any other. On PostgreSQL, ids come from a sequence and transactions commit out of
order, so an id below the newest one seen may become visible later: missing ids ("gaps") are
re-queried until they appear or ``watch_gap_timeout_s`` passes (a rolled-back transaction never
fills its gap).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import Connection, and_, func, or_, select

from ailuro.errors import ResourceExhausted
from ailuro.v1 import job_pb2, submission_pb2
from dispatcher import validation
from dispatcher.auth.policy import vo_of
from dispatcher.convert import event_row_to_proto
from dispatcher.identity import Identity
from dispatcher.services.runtime import Runtime
from dispatcher.store.schema import job_events, jobs

log = logging.getLogger(__name__)

WATCHER_BUFFER = 10_000
_MAX_GAP_IDS = 1000
_IDLE_NEWEST_S = 1.0
"""While nobody watches, the tail reads the newest event id this often (not every poll)."""


class _Watcher:
    def __init__(self, req: submission_pb2.WatchJobsRequest, identity: Identity) -> None:
        self.ids = frozenset(req.panda_ids)
        self.req = req
        # The caller's VO (None: an admin of every VO); the history query filters on it in SQL,
        # the shared tail's rows (one query for all watchers) are matched here.
        self.vo = None if identity.all_vos else vo_of(identity)
        self.queue: asyncio.Queue[job_pb2.JobEvent | BaseException] = asyncio.Queue()

    def matches(self, row: Any) -> bool:
        r = self.req
        return (
            (self.vo is None or row["vo"] == self.vo)
            and (not self.ids or row["panda_id"] in self.ids)
            and (not r.task_id or row["task_id"] == r.task_id)
            and (not r.owner or row["owner"] == r.owner)
            and (not r.computing_site or row["computing_site"] == r.computing_site)
        )

    def push(self, event: job_pb2.JobEvent) -> bool:
        if self.queue.qsize() >= WATCHER_BUFFER:
            self.queue.put_nowait(
                ResourceExhausted("watcher fell behind; reconnect with after_event_id", field="after_event_id")
            )
            return False
        self.queue.put_nowait(event)
        return True


def _event_query(conds: list[Any], limit: int) -> Any:
    return (
        select(job_events, jobs.c.task_id, jobs.c.owner, jobs.c.computing_site, jobs.c.vo)
        .join(jobs, jobs.c.panda_id == job_events.c.panda_id)
        .where(and_(True, *conds))
        .order_by(job_events.c.event_id)
        .limit(limit)
    )


class EventTail:
    """Polls ``job_events`` every ``command_poll_s`` while anyone watches."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self._watchers: set[_Watcher] = set()
        self._last_id = 0
        self._gaps: dict[int, float] = {}
        self._seen: set[int] = set()
        self._task: asyncio.Task[None] | None = None
        self._started = False

    async def start(self) -> None:
        """Start at the newest event: watchers get history only through ``after_event_id``."""

        self._last_id = await self.rt.db_call(self._newest)
        self._task = asyncio.create_task(self._run(), name="event-tail")

    async def stop(self) -> None:
        """Stop polling and end every watcher's stream."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for w in self._watchers:
            w.queue.put_nowait(asyncio.CancelledError())

    async def watch(self, req: submission_pb2.WatchJobsRequest, identity: Identity) -> AsyncIterator[job_pb2.JobEvent]:
        """Events matching ``req`` (history after ``after_event_id`` first), until the caller leaves."""
        validation.validate_watch(req)
        watcher = _Watcher(req, identity)
        self._watchers.add(watcher)
        try:
            # The shared tail may lag behind the table (it only moves every command_poll_s), so a new
            # watcher would otherwise be handed events from before it subscribed: drop everything at or
            # below the point the caller asked to start from.
            floor = req.after_event_id or await self.rt.db_call(self._newest)
            replayed: set[int] = set()
            if req.after_event_id:
                upto = self._last_id
                after = req.after_event_id
                while after < upto:
                    rows = await self.rt.db_call(self._history, watcher, after, upto)
                    if not rows:
                        break
                    for row in rows:
                        replayed.add(row["event_id"])
                        yield event_row_to_proto(row)
                    after = rows[-1]["event_id"]
            while True:
                item = await watcher.queue.get()
                if isinstance(item, BaseException):
                    raise item
                if item.event_id > floor and item.event_id not in replayed:
                    yield item
        finally:
            self._watchers.discard(watcher)

    def _newest(self) -> int:
        with self.rt.db.read() as conn:
            return int(conn.execute(select(func.coalesce(func.max(job_events.c.event_id), 0))).scalar_one())

    def _history(self, watcher: _Watcher, after: int, upto: int) -> list[Any]:
        r = watcher.req
        conds: list[Any] = [job_events.c.event_id > after, job_events.c.event_id <= upto]
        if watcher.vo is not None:
            conds.append(jobs.c.vo == watcher.vo)
        if watcher.ids:
            conds.append(job_events.c.panda_id.in_(sorted(watcher.ids)))
        if r.task_id:
            conds.append(jobs.c.task_id == r.task_id)
        if r.owner:
            conds.append(jobs.c.owner == r.owner)
        if r.computing_site:
            conds.append(jobs.c.computing_site == r.computing_site)
        with self.rt.db.read() as conn:
            return list(conn.execute(_event_query(conds, self.rt.config.max_batch)).mappings())

    def _poll(self, conn: Connection) -> list[Any]:
        cond: Any = job_events.c.event_id > self._last_id
        if self._gaps:
            if len(self._gaps) <= _MAX_GAP_IDS:
                cond = or_(cond, job_events.c.event_id.in_(sorted(self._gaps)))
            else:
                cond = job_events.c.event_id >= min(self._gaps)
        return list(conn.execute(_event_query([cond], self.rt.config.max_batch)).mappings())

    def poll_once(self) -> list[Any]:
        """Read new (and late-committed) events; blocking."""
        with self.rt.db.read() as conn:
            return self._poll(conn)

    def _absorb(self, rows: list[Any]) -> None:
        now = time.monotonic()
        for row in rows:
            eid = row["event_id"]
            if eid in self._seen:
                continue
            self._seen.add(eid)
            self._gaps.pop(eid, None)
            if eid > self._last_id:
                for missing in range(self._last_id + 1, min(eid, self._last_id + 1 + _MAX_GAP_IDS * 10)):
                    self._gaps.setdefault(missing, now)
                self._last_id = eid
            event = None
            for w in list(self._watchers):
                if w.matches(row):
                    event = event or event_row_to_proto(row)
                    if not w.push(event):
                        self._watchers.discard(w)
        timeout = self.rt.config.watch_gap_timeout_s
        for gid in [g for g, t in self._gaps.items() if now - t > timeout]:
            del self._gaps[gid]
        floor = min(self._gaps) if self._gaps else self._last_id + 1
        self._seen = {e for e in self._seen if e >= floor}

    async def _run(self) -> None:
        idle_rounds = 0
        while True:
            await asyncio.sleep(self.rt.config.command_poll_s)
            try:
                if not self._watchers:  # nobody listens: just move the start point along
                    # ... about once a second, not every poll: a new watcher only needs the start
                    # point near the end of the table (events before its own floor are dropped).
                    idle_rounds += 1
                    if idle_rounds * self.rt.config.command_poll_s < _IDLE_NEWEST_S:
                        continue
                    idle_rounds = 0
                    newest = await self.rt.db_call(self._newest)
                    # A watcher that subscribed while that query ran took the old start point as
                    # the end of its replay (``watch``): jumping ahead now would lose every event
                    # in between for it. Seen on busy machines, where the query takes long.
                    if not self._watchers:
                        self._last_id = newest
                        self._gaps.clear()
                        self._seen.clear()
                    continue
                rows = await self.rt.db_call(self.poll_once)
                self._absorb(rows)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("tailing job_events failed")
                with contextlib.suppress(Exception):
                    await asyncio.sleep(self.rt.config.command_poll_s)
