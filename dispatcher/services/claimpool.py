"""Claims on PostgreSQL: candidate jobs read ahead per queue, handed out in one statement each batch.

A claim transaction waited at five round trips (``store/claim_pg.py`` says what was measured). Here
a batch of job requests plans from candidate rows this process read earlier for the queue (the
*shelf*: at most ``claim_pool_s`` old, the rows earlier batches did not take) and sends the planned
jobs with one autocommit statement, which writes a row only if it is still as it was read. So a
batch costs one round trip; two when its queue's shelf is empty or stale and is read first.

When the statement leaves a planned job out (a kill, a retry, another dispatcher took it since the
read), or the shelf left a request short, the queue is read again and planned again, at most
:data:`ATTEMPTS` times in all. Rows of this process's batches in flight are *held*: a batch beside
them does not plan them. Nothing is reserved in the database, so a dispatcher that dies holds
nothing back: every job it had on its shelf is still ``activated``, for every other dispatcher.

The cost is staleness: a job activated while its queue's shelf holds other rows waits at most
``claim_pool_s`` before a claim considers it, and priorities and resources are judged as read.

With ``read_ahead``, a queue's next read starts in the background when a batch leaves its shelf
low (fewer rows than :data:`MIN_READ` or than twice what the batch took) or half its age gone, so
the batch after it plans from rows already read. Without it, a batch that found its shelf empty
or stale read the queue first: at 462 jobs/s one batch in eight did, and those were the slow
ones (a read p50 2.8 / p99 22 ms before the statement; claim batches p99 20.7 ms against the
statement's 11.1). A read running in the background is awaited by a batch that needs the shelf
instead of reading again beside it, and rows sent while it ran are left out of what it brings.

The claim runs on the event loop: it plans in memory and awaits the statement on an async
connection (``store/aio.py``); only a queue read goes to a database thread. On a database thread a
batch cost two more hand-offs (loop to thread and back), each a wait for a core and for the GIL
behind the heartbeat flush and finals threads. The shelves are touched by the loop only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ailuro.v1 import pilot_pb2
from dispatcher.matching import TEST_LABEL, claim_refusal
from dispatcher.services.runtime import DbTimes
from dispatcher.shares import Leaf, charge
from dispatcher.store import claim_pg
from dispatcher.store import pilots as pstore
from dispatcher.store.aio import AsyncConnections
from dispatcher.store.claim import ClaimPolicy, candidates, needs_of, plan_rows
from dispatcher.store.engine import Database

log = logging.getLogger(__name__)

ATTEMPTS = 3
"""Plans per queue and batch at most: the shelf, then fresh reads after a miss or a short request."""
MIN_READ = 16
"""A queue is read for at least this many jobs (the window read is four times that: 64 rows)."""

SLICE = 32
"""Assignments built between two yields to the event loop. In the closed loop (~100 requests per
batch) the claim's steps held the loop for over 5 ms 68 times in one run (8.8 ms each, besides
garbage collection), so kills and other streams waited behind them; with this, 43 times (6.1 ms
each) in the next run, on a slower minute of the same noisy machine."""

LEFT_OUT = "claims: planned jobs one statement left out"
"""The name of the peak of jobs a claim statement did not send (changed or taken since the read)."""
READ = "claims: queue read"
"""The name of the durations of candidate reads (a shelf empty, stale or short)."""
SEND = "claims: one-statement send"
"""The name of the durations of the claim statements."""


@dataclass
class _Shelf:
    read_at: float
    """``time.monotonic()`` of the read its rows came from (the newest, after merging)."""
    rows: list[Any]


@dataclass
class _Planned:
    req: pstore.ClaimRequest
    row: Any
    leaf: Leaf
    done: pilot_pb2.JobAssignment


Blocking = Callable[[Callable[[], Any]], Awaitable[Any]]
"""Runs a blocking database call off the event loop (``Runtime.db_call_urgent``)."""


class ClaimPool:
    """The shelves of one dispatcher process and the claims made from them (one event loop's)."""

    def __init__(
        self,
        db: Database,
        *,
        max_age_s: float,
        times: DbTimes | None = None,
        batches: int = 1,
        blocking: Blocking = asyncio.to_thread,
        read_ahead: bool = False,
    ) -> None:
        self.db = db
        self.max_age_s = max_age_s
        self.read_ahead = read_ahead
        """Read a queue again in the background when a batch leaves its shelf low or half-aged."""
        self.batches = batches
        """Claim batches the process runs at once: each takes its own part of a shelf (:meth:`_part`)."""
        self.times = times or DbTimes()
        """Where reads, statements (:data:`READ`, :data:`SEND`) and :data:`LEFT_OUT` are counted (the
        loop-lag report's ``db_times`` and ``db_peaks``)."""
        self._blocking = blocking
        self._conns = AsyncConnections(db.url)
        self._shelves: dict[str, _Shelf] = {}
        self._held: set[int] = set()
        self._ahead: dict[str, asyncio.Task[bool]] = {}
        """The background read of a queue in flight (at most one per queue)."""
        self._sent_while_read: dict[str, list[set[int]]] = defaultdict(list)
        """Per read of a queue in flight: the rows that left its shelf (sent or gone) meanwhile,
        which that read must not put back on the shelf."""

    async def close(self) -> None:
        """Stop the background reads and close the claim statement's connections."""
        for task in self._ahead.values():
            task.cancel()
        await asyncio.gather(*self._ahead.values(), return_exceptions=True)
        await self._conns.close()

    async def claim(
        self, reqs: Sequence[pstore.ClaimRequest], *, policy: ClaimPolicy, lease_s: float, now: float
    ) -> dict[Leaf, float]:
        """Fill ``reqs``' assignments; the core-seconds handed out per share leaf.

        Raises only before anything was sent (the batch can then be re-run or split); a failure
        after a statement committed ends the batch with what was sent.
        """
        charged: dict[Leaf, float] = defaultdict(float)
        todo: dict[str, list[pstore.ClaimRequest]] = defaultdict(list)
        for r in reqs:
            if not claim_refusal(policy.status(r.pilot.queue), TEST_LABEL):  # offline: nothing at all
                todo[r.pilot.queue].append(r)
        fresh: set[str] = set()
        for attempt in range(ATTEMPTS):
            if not todo:
                break
            try:
                todo, fresh = await self._attempt(todo, fresh, charged, policy=policy, lease_s=lease_s, now=now)
            except Exception:
                if attempt == 0:
                    raise  # nothing sent yet
                log.warning("claim: a later attempt failed; the batch keeps what was sent", exc_info=True)
                break
        return dict(charged)

    async def _attempt(
        self,
        todo: dict[str, list[pstore.ClaimRequest]],
        fresh: set[str],
        charged: dict[Leaf, float],
        *,
        policy: ClaimPolicy,
        lease_s: float,
        now: float,
    ) -> tuple[dict[str, list[pstore.ClaimRequest]], set[str]]:
        """One plan and one statement for every queue of ``todo``; the queues worth another attempt."""
        planned: list[_Planned] = []
        taken: dict[str, tuple[float, list[Any], bool]] = {}
        try:
            for queue, reqs in todo.items():
                short = [r for r in reqs if len(r.assignments) < r.n]
                wanted = sum(r.n - len(r.assignments) for r in short)
                read_at, rows, was_fresh = await self._rows(queue, wanted, policy, fresh=queue in fresh)
                taken[queue] = (read_at, rows, was_fresh)
                wants = [(r.n - len(r.assignments), r.effective_offer()) for r in short]
                for k, (i, row, leaf) in enumerate(plan_rows(queue, rows, wants, policy=policy), 1):
                    done = self._assignment(row, short[i], lease_s=lease_s, now=now)
                    if done is not None:
                        planned.append(_Planned(req=short[i], row=row, leaf=leaf, done=done))
                    if k % SLICE == 0:
                        await asyncio.sleep(0)  # let the loop serve streams and kills in between
            sent = await self._send(planned, lease_s=lease_s, now=now)
        except BaseException:
            self._put_back(taken, used=set())
            raise
        for p in planned:
            if p.row["panda_id"] in sent:
                p.req.assignments.append(p.done)
                charged[p.leaf] += charge(needs_of(p.row), policy.tree)
        used = {p.row["panda_id"] for p in planned}  # sent or gone: either way not worth keeping
        spare = self._put_back(taken, used=used)
        if self.read_ahead:
            for queue in taken:
                took = sum(1 for p in planned if p.req.pilot.queue == queue)
                self._maybe_read_ahead(queue, took, policy)
        missed = {p.req.pilot.queue for p in planned if p.row["panda_id"] not in sent}
        self.times.peak(LEFT_OUT, len(planned) - len(sent))
        again: dict[str, list[pstore.ClaimRequest]] = {}
        for queue, reqs in todo.items():
            for r in reqs:
                r.passed_over = spare.get(queue, 0)
            short = [r for r in reqs if len(r.assignments) < r.n]
            # another look only where it can find more: a job left out, or a shelf that fell short
            if short and (queue in missed or not taken[queue][2]):
                again[queue] = reqs
        return again, set(again)

    async def _rows(
        self, queue: str, wanted: int, policy: ClaimPolicy, *, fresh: bool
    ) -> tuple[float, list[Any], bool]:
        """``(read_at, rows, read now)``: rows of the queue's shelf that no batch holds, if the shelf
        is young and has some (and ``fresh`` is not asked), else a new read; the rows are held
        until :meth:`_put_back`.

        With several batches in flight each takes its own part of the shelf (:meth:`_part`), so a
        batch beside another plans from what that one left instead of reading the queue again.

        When the shelf would be read and a read ahead of it is in flight, the batch waits for that
        one instead (it began earlier) and plans from what it brought.

        A new read replaces the shelf (its rows are read again if still waiting) and leaves out the
        rows held when it began as well as those held now: a batch beside it may send some and let
        go of them while the read runs, and the read's snapshot can predate that send.
        """
        shelf = self._shelves.get(queue)
        if not fresh and shelf is not None and time.monotonic() - shelf.read_at < self.max_age_s:
            mine = self._take(shelf, wanted)
            if mine:
                return shelf.read_at, mine, False
        ahead = self._ahead.get(queue)
        if ahead is not None and await asyncio.shield(ahead):  # it began earlier than a read now would
            shelf = self._shelves[queue]
            return shelf.read_at, self._take(shelf, wanted), True
        read_at, rows = await self._read(queue, wanted, policy)
        self._held.update(r["panda_id"] for r in rows)
        # the rows other batches hold come back into it with their _put_back, if unused
        self._shelves[queue] = _Shelf(read_at=read_at, rows=list(rows))
        return read_at, rows, True

    async def _read(self, queue: str, wanted: int, policy: ClaimPolicy) -> tuple[float, list[Any]]:
        """A new read of the queue: its rows that no batch holds now or held when it began, and
        none that left the shelf (sent or gone) while it ran."""
        held_before = set(self._held)
        read_at = time.monotonic()
        gone: set[int] = set()
        self._sent_while_read[queue].append(gone)

        def read() -> list[Any]:
            with self.db.autocommit() as conn:
                return candidates(conn, queue, wanted=max(wanted, MIN_READ), policy=policy, lock=False)

        try:
            rows = await self._blocking(read)
        finally:
            reads = [g for g in self._sent_while_read[queue] if g is not gone]  # by identity
            if reads:
                self._sent_while_read[queue] = reads
            else:
                del self._sent_while_read[queue]
        self.times.record(READ, time.monotonic() - read_at)
        skip = self._held | held_before | gone
        return read_at, [r for r in rows if r["panda_id"] not in skip]

    def _maybe_read_ahead(self, queue: str, took: int, policy: ClaimPolicy) -> None:
        """Start the queue's next read in the background if the shelf this batch left is low or
        half its age, so the next batch need not read first (one read per queue at a time)."""
        if queue in self._ahead or queue in self._sent_while_read:
            return
        shelf = self._shelves.get(queue)
        if (
            shelf is not None
            and len(shelf.rows) >= max(MIN_READ, 2 * took)
            and time.monotonic() - shelf.read_at < self.max_age_s / 2
        ):
            return  # enough rows, young enough
        self._ahead[queue] = asyncio.get_running_loop().create_task(
            self._read_ahead(queue, max(took, MIN_READ), policy), name=f"claims: read ahead {queue}"
        )

    async def _read_ahead(self, queue: str, wanted: int, policy: ClaimPolicy) -> bool:
        """Whether it read (its rows, or a newer read's, are on the shelf)."""
        try:
            read_at, rows = await self._read(queue, wanted, policy)
        except asyncio.CancelledError:
            raise
        except Exception:  # the next batch reads for itself and meets the error there
            log.debug("claims: a read ahead of queue %s failed", queue, exc_info=True)
            return False
        finally:
            self._ahead.pop(queue, None)
        shelf = self._shelves.get(queue)
        if shelf is None or shelf.read_at <= read_at:  # else a batch read the queue since: newer
            # rows held by a batch now are not in ``rows``: its _put_back adds the unused ones back
            self._shelves[queue] = _Shelf(read_at=read_at, rows=rows)
        return True

    def _take(self, shelf: _Shelf, wanted: int) -> list[Any]:
        """This batch's part of the shelf rows no batch holds, held from now until :meth:`_put_back`."""
        mine = self._part([r for r in shelf.rows if r["panda_id"] not in self._held], wanted)
        self._held.update(r["panda_id"] for r in mine)
        return mine

    def _part(self, free: list[Any], wanted: int) -> list[Any]:
        """The free shelf rows one batch plans from: all of them with one batch in flight; with
        more, a share (at least four per job wanted) so the next batch finds rows too."""
        if self.batches <= 1:
            return free
        return free[: max(4 * wanted, len(free) // self.batches)]

    def _put_back(self, taken: dict[str, tuple[float, list[Any], bool]], *, used: set[int]) -> dict[str, int]:
        """Release the held rows: the used ones leave the queue's shelf, the unused ones stay on
        it (added back if a read replaced it meanwhile; the shelf then counts from the newer read,
        which saw every job activated before it). How many went back per queue."""
        spare: dict[str, int] = {}
        for queue, (read_at, rows, _) in taken.items():
            self._held.difference_update(r["panda_id"] for r in rows)
            for gone in self._sent_while_read.get(queue, ()):  # a read in flight must not bring them back
                gone.update(r["panda_id"] for r in rows if r["panda_id"] in used)
            left = [r for r in rows if r["panda_id"] not in used]
            spare[queue] = len(left)
            shelf = self._shelves.get(queue)
            if shelf is None:
                if left:
                    self._shelves[queue] = _Shelf(read_at=read_at, rows=left)
                continue
            gone = {r["panda_id"] for r in rows if r["panda_id"] in used}
            if gone:
                shelf.rows = [r for r in shelf.rows if r["panda_id"] not in gone]
            have = {r["panda_id"] for r in shelf.rows}
            shelf.rows.extend(r for r in left if r["panda_id"] not in have)
            shelf.read_at = max(shelf.read_at, read_at)
        return spare

    @staticmethod
    def _assignment(
        row: Any, req: pstore.ClaimRequest, *, lease_s: float, now: float
    ) -> pilot_pb2.JobAssignment | None:
        """The assignment, built before the statement so nothing can fail after it committed."""
        try:
            return pstore.assignment(row, pstore.sent_values(row, req.pilot, lease_s=lease_s, now=now), lease_s=lease_s)
        except Exception:
            log.exception("claim: job %s cannot be turned into an assignment; it is not sent", row["panda_id"])
            return None

    async def _send(self, planned: Sequence[_Planned], *, lease_s: float, now: float) -> set[int]:
        if not planned:
            return set()
        sends = [
            claim_pg.Send(
                panda_id=p.row["panda_id"],
                epoch=p.row["lease_epoch"],
                modified=p.row["modification_time"],
                queue=p.req.pilot.queue,
                pilot_id=p.req.pilot.pilot_id,
                batch_id=p.req.pilot.batch_id,
                node=p.req.pilot.node,
            )
            for p in planned
        ]
        started = time.monotonic()
        async with self._conns.connection() as conn:
            sent = await claim_pg.send_async(conn, sends, lease_s=lease_s, now=now)
        self.times.record(SEND, time.monotonic() - started)
        return sent
