"""The one-statement claim and the per-process shelves behind it (PostgreSQL, issue #18).

``store/claim_pg.py`` sends a planned job only while its row is as it was read, skips a row another
transaction holds instead of waiting for it, and writes the job's event and counter deltas in the
same statement. ``services/claimpool.py`` plans from a queue's shelf while it is young, and reads the
queue again when the statement left a job out or the shelf fell short.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event, select, text
from test_job_counters import expected_counts, stored

from ailuro.errors import Unavailable
from ailuro.v1 import job_pb2
from dispatcher.services.claimpool import LEFT_OUT, ClaimPool
from dispatcher.store import claim_pg
from dispatcher.store import jobs as store
from dispatcher.store import pilots as pstore
from dispatcher.store.aio import AsyncConnections
from dispatcher.store.claim import ClaimPolicy, candidates
from dispatcher.store.engine import Database, open_database
from dispatcher.store.schema import job_events, jobs

pytestmark = pytest.mark.postgres

LEASE_S = 60.0


@pytest.fixture
def db(pg_url: str) -> Iterator[Database]:
    database = open_database(pg_url)
    yield database
    database.dispose()


def _submit(db: Database, n: int, *, site: str = "LOCAL", walltime_s: int = 0) -> list[int]:
    spec = job_pb2.Job(
        transformation="/bin/true",
        computing_site=site,
        vo="compass",
        prod_source_label="user",
        max_walltime_s=walltime_s,
    )
    with db.write() as conn:
        new = [store.NewJob(spec=spec, brokerage_reason="test") for _ in range(n)]
        return store.insert_jobs(conn, new, owner="me", now=time.time())


def _send(row: Any, queue: str = "LOCAL", pilot: str = "p1") -> claim_pg.Send:
    return claim_pg.Send(
        panda_id=row["panda_id"],
        epoch=row["lease_epoch"],
        modified=row["modification_time"],
        queue=queue,
        pilot_id=pilot,
        batch_id="b1",
        node="n1",
    )


def _send_now(db: Database, sends: list[claim_pg.Send], *setup: str) -> set[int]:
    """:func:`claim_pg.send_async` on a connection of its own, after the ``setup`` statements."""

    async def run() -> set[int]:
        conns = AsyncConnections(db.url)
        try:
            async with conns.connection() as conn:
                for statement in setup:
                    await conn.execute(statement)
                return await claim_pg.send_async(conn, sends, lease_s=LEASE_S, now=time.time())
        finally:
            await conns.close()

    return asyncio.run(run())


def _status(db: Database, ids: list[int]) -> dict[int, str]:
    with db.read() as conn:
        return dict(conn.execute(select(jobs.c.panda_id, jobs.c.status).where(jobs.c.panda_id.in_(ids))).all())


def _sent_events(db: Database) -> list[tuple[int, str]]:
    with db.read() as conn:
        stmt = select(job_events.c.panda_id, job_events.c.actor).where(job_events.c.to_status == "sent")
        return sorted(conn.execute(stmt).all())


def _assert_counters_exact(db: Database) -> None:
    with db.read() as conn:
        counts, _ = stored(conn, pending=True)
        assert counts == expected_counts(conn)


def test_send_moves_only_rows_unchanged_since_the_read(db: Database) -> None:
    """Killed, rewritten, moved to another queue, locked elsewhere: left out; the rest is sent once."""
    killed, rewritten, moved, locked, good = _submit(db, 5)
    with db.autocommit() as conn:
        rows = {r["panda_id"]: r for r in candidates(conn, "LOCAL", wanted=5, policy=ClaimPolicy(), lock=False)}
    assert set(rows) == {killed, rewritten, moved, locked, good}
    with db.write() as conn:
        store.kill_jobs(conn, [killed], who="me", reason="test", now=time.time())
        conn.execute(
            text("UPDATE jobs SET modification_time = modification_time + 1 WHERE panda_id = :p"), {"p": rewritten}
        )
    sends = [_send(rows[p]) for p in (killed, rewritten, locked, good)] + [_send(rows[moved], queue="ELSEWHERE")]
    with db.engine.connect() as holder:
        holder.execute(text("SELECT 1 FROM jobs WHERE panda_id = :p FOR UPDATE"), {"p": locked})
        sent = _send_now(db, sends, "SET lock_timeout = '10s'")  # a wait for the held row fails, not hangs
        holder.rollback()
    assert sent == {good}
    assert _status(db, [killed, rewritten, moved, locked, good]) == {
        killed: "cancelled",
        rewritten: "activated",
        moved: "activated",
        locked: "activated",
        good: "sent",
    }
    with db.read() as conn:
        row = conn.execute(select(jobs).where(jobs.c.panda_id == good)).mappings().one()
    assert (row["pilot_id"], row["batch_id"], row["node"]) == ("p1", "b1", "n1")
    assert row["lease_epoch"] == rows[good]["lease_epoch"] + 1
    assert _sent_events(db) == [(good, "pilot:p1")]
    _assert_counters_exact(db)  # the statement's own counter deltas, without the commit listener
    assert _send_now(db, sends) == {locked}  # the same plan again: only the row no longer held, nothing twice
    assert _sent_events(db) == sorted([(good, "pilot:p1"), (locked, "pilot:p1")])
    _assert_counters_exact(db)


class _Reads:
    """Counts the candidate reads (``SELECT ... FROM jobs`` without a lock) an engine runs."""

    def __init__(self, db: Database) -> None:
        self.n = 0
        event.listen(db.engine, "before_cursor_execute", self._seen)

    def _seen(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if (
            statement.lstrip().upper().startswith("SELECT")
            and "FROM jobs" in statement
            and "FOR UPDATE" not in statement
        ):
            self.n += 1


def _request(n: int = 1, *, pilot: str = "p1", walltime_left_s: int = 0) -> pstore.ClaimRequest:
    return pstore.ClaimRequest(
        pilot=pstore.PilotInfo(pilot_id=pilot, queue="LOCAL"), n=n, walltime_left_s=walltime_left_s
    )


def _claim(pool: ClaimPool, *reqs: pstore.ClaimRequest) -> list[int]:
    async def run() -> None:
        try:
            await pool.claim(reqs, policy=ClaimPolicy(), lease_s=LEASE_S, now=time.time())
        finally:
            await pool.close()  # its connections belong to this event loop

    asyncio.run(run())
    return [a.job.panda_id for r in reqs for a in r.assignments]


def test_the_shelf_serves_later_claims_until_it_is_old(db: Database) -> None:
    ids = _submit(db, 10)
    reads = _Reads(db)
    pool = ClaimPool(db, max_age_s=60)
    first = _claim(pool, _request(2))
    assert len(first) == 2 and reads.n == 1
    second = _claim(pool, _request(3), _request(1, pilot="p2"))
    assert len(second) == 4 and reads.n == 1  # from the shelf: no read
    young = ClaimPool(db, max_age_s=0.0)  # every shelf is already too old
    assert len(_claim(young, _request(1))) == 1 and reads.n == 2
    assert len(_claim(young, _request(1))) == 1 and reads.n == 3
    rest = _claim(pool, _request(10))  # the shelf's rows the other pool took are left out, then read again
    assert len(rest) == 2
    sent = _sent_events_ids(db)
    assert sorted(sent) == sorted(ids)  # every job sent, none twice
    _assert_counters_exact(db)


def _sent_events_ids(db: Database) -> list[int]:
    return [pid for pid, _ in _sent_events(db)]


def test_a_shelf_that_falls_short_is_read_again(db: Database) -> None:
    """The shelf holds only a long job; a pilot with little walltime left gets the short job activated since."""
    _submit(db, 2, walltime_s=10_000)
    pool = ClaimPool(db, max_age_s=60)
    reads = _Reads(db)
    assert len(_claim(pool, _request(1))) == 1 and reads.n == 1  # one long job stays on the shelf
    (short,) = _submit(db, 1, walltime_s=100)
    assert _claim(pool, _request(1, walltime_left_s=600)) == [short]
    assert reads.n == 2  # the shelf (nothing fits) and then one read


def test_jobs_taken_elsewhere_are_left_out_and_the_queue_read_again(db: Database) -> None:
    """Another dispatcher claims what this shelf holds: the statement leaves those out, the next read
    finds the rest, and no job is sent twice."""
    ids = _submit(db, 6)
    pool = ClaimPool(db, max_age_s=60)
    assert len(_claim(pool, _request(1))) == 1  # the other five are on the shelf
    other = _request(3, pilot="other")
    with db.write() as conn:  # the locked transaction of another process
        pstore.claim_jobs(conn, [other], lease_s=LEASE_S, now=time.time())
    assert len(other.assignments) == 3
    mine = _claim(pool, _request(2))
    assert len(mine) == 2 and pool.times.peaks()[LEFT_OUT] >= 1
    assert not set(mine) & {a.job.panda_id for a in other.assignments}
    sent = _sent_events_ids(db)
    assert sorted(sent) == sorted(ids) and len(sent) == len(set(sent))
    _assert_counters_exact(db)


def test_batches_in_flight_share_one_shelf_and_none_takes_a_job_twice(db: Database) -> None:
    """With two batches in flight each plans from its own part of the queue's shelf: the second
    finds rows the first does not hold instead of reading the queue again."""
    ids = _submit(db, 40)
    pool = ClaimPool(db, max_age_s=60, batches=2)
    reads = _Reads(db)
    assert len(_claim(pool, _request(1))) == 1 and reads.n == 1  # 39 on the shelf
    first, second = _request(2), _request(2, pilot="p2")

    async def both() -> None:
        try:
            policy, now = ClaimPolicy(), time.time()
            await asyncio.gather(
                pool.claim([first], policy=policy, lease_s=LEASE_S, now=now),
                pool.claim([second], policy=policy, lease_s=LEASE_S, now=now),
            )
        finally:
            await pool.close()

    asyncio.run(both())
    got = [a.job.panda_id for r in (first, second) for a in r.assignments]
    assert len(got) == 4 and len(set(got)) == 4
    assert reads.n == 1  # both from the shelf
    assert pool.times.peaks().get(LEFT_OUT, 0) == 0  # disjoint parts: nothing collided
    sent = _sent_events_ids(db)
    assert len(sent) == 5 == len(set(sent)) and set(sent) <= set(ids)
    _assert_counters_exact(db)


def test_a_lost_claim_connection_is_unavailable_and_the_next_claim_connects_again(db: Database) -> None:
    """The statement's connection is killed by the server: that batch fails ``Unavailable`` and
    sends nothing; the next one opens a new connection and sends."""
    _submit(db, 3)
    pool = ClaimPool(db, max_age_s=60)

    async def run() -> tuple[BaseException | None, int]:
        try:
            await pool.claim([_request(1)], policy=ClaimPolicy(), lease_s=LEASE_S, now=time.time())
            async with pool._conns.connection() as conn:  # the idle connection the next batch takes
                pid = conn.info.backend_pid
            with db.autocommit() as admin:
                admin.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
            lost = _request(1)
            failed: BaseException | None = None
            try:
                await pool.claim([lost], policy=ClaimPolicy(), lease_s=LEASE_S, now=time.time())
            except Unavailable as exc:
                failed = exc
            assert not lost.assignments
            again = _request(1)
            await pool.claim([again], policy=ClaimPolicy(), lease_s=LEASE_S, now=time.time())
            return failed, len(again.assignments)
        finally:
            await pool.close()

    failed, n = asyncio.run(run())
    assert isinstance(failed, Unavailable) and "database unavailable" in str(failed)
    assert n == 1
    assert len(_sent_events_ids(db)) == 2
    _assert_counters_exact(db)


class _TaggedReads:
    """A ``blocking`` hook for :class:`ClaimPool` that notes which task ran each queue read (a read
    ahead's task is named so) and can hold a read ahead's answer until ``release`` is set (the read
    itself has run by then: its snapshot predates whatever a batch sends meanwhile)."""

    def __init__(self) -> None:
        self.by: list[str] = []
        self.hold = False
        self.release = asyncio.Event()
        self.ahead_read = asyncio.Event()
        """Set once a read ahead's SELECT has returned (before it is held)."""
        self.fail_ahead = False

    async def __call__(self, fn: Any) -> Any:
        task = asyncio.current_task()
        name = task.get_name() if task is not None else ""
        ahead = name.startswith("claims: read ahead")
        self.by.append("ahead" if ahead else "batch")
        rows = await asyncio.to_thread(fn)
        if ahead:
            self.ahead_read.set()
        if ahead and self.fail_ahead:
            raise ConnectionError("the database went away")
        if ahead and self.hold:
            await self.release.wait()
        return rows


async def _settle(pool: ClaimPool) -> None:
    """Wait for the reads ahead in flight (the test's view: nothing else waits for them)."""
    while pool._ahead:
        await asyncio.gather(*pool._ahead.values(), return_exceptions=True)


def _claim_in(pool: ClaimPool, *reqs: pstore.ClaimRequest) -> Any:
    return pool.claim(reqs, policy=ClaimPolicy(), lease_s=LEASE_S, now=time.time())


def test_a_batch_that_leaves_the_shelf_low_reads_ahead_and_the_next_batch_does_not_read(db: Database) -> None:
    ids = _submit(db, 100)
    hook = _TaggedReads()
    pool = ClaimPool(db, max_age_s=60, blocking=hook, read_ahead=True)

    async def run() -> list[int]:
        try:
            first = _request(60)
            await _claim_in(pool, first)  # reads 100 rows, takes 60: 40 left, under twice 60
            assert "LOCAL" in pool._ahead  # the next read has begun
            await _settle(pool)
            assert hook.by == ["batch", "ahead"]
            second = _request(40, pilot="p2")
            await _claim_in(pool, second)  # plans from what the read ahead brought
            assert "batch" not in hook.by[1:]  # no batch read for itself
            return [a.job.panda_id for r in (first, second) for a in r.assignments]
        finally:
            await pool.close()

    got = asyncio.run(run())
    assert sorted(got) == sorted(ids)  # all 100, none twice
    assert pool.times.peaks().get(LEFT_OUT, 0) == 0
    sent = _sent_events_ids(db)
    assert sorted(sent) == sorted(ids)
    _assert_counters_exact(db)


def test_rows_sent_while_a_read_ahead_runs_are_not_put_back_on_the_shelf(db: Database) -> None:
    """The read's snapshot still shows them activated; a batch planning from the old shelf meanwhile
    sent them. The new shelf leaves them out, so no later batch plans a job already sent."""
    ids = _submit(db, 100)
    hook = _TaggedReads()
    hook.hold = True
    pool = ClaimPool(db, max_age_s=60, blocking=hook, read_ahead=True)

    async def run() -> tuple[set[int], set[int], list[int]]:
        try:
            await _claim_in(pool, _request(60))  # 40 left; the read ahead runs and is held
            await asyncio.wait_for(hook.ahead_read.wait(), 60)  # its SELECT has run; its answer is held
            middle = _request(10, pilot="p2")
            await _claim_in(pool, middle)  # from the old shelf, while the read is held
            sent_meanwhile = {a.job.panda_id for a in middle.assignments}
            hook.release.set()
            await _settle(pool)
            shelf = {r["panda_id"] for r in pool._shelves["LOCAL"].rows}
            rest = _request(100, pilot="p3")
            await _claim_in(pool, rest)
            return sent_meanwhile, shelf, [a.job.panda_id for a in rest.assignments]
        finally:
            await pool.close()

    sent_meanwhile, shelf, rest = asyncio.run(run())
    assert len(sent_meanwhile) == 10
    assert shelf and not shelf & sent_meanwhile  # the read saw them activated; they were left out
    assert len(rest) == 30 and not set(rest) & sent_meanwhile
    assert pool.times.peaks().get(LEFT_OUT, 0) == 0  # nothing planned that was already gone
    sent = _sent_events_ids(db)
    assert sorted(sent) == sorted(ids)  # every job once
    _assert_counters_exact(db)


def test_a_failed_read_ahead_leaves_the_next_batch_to_read_for_itself(db: Database) -> None:
    ids = _submit(db, 30)
    hook = _TaggedReads()
    hook.fail_ahead = True
    pool = ClaimPool(db, max_age_s=60, blocking=hook, read_ahead=True)

    async def run() -> list[int]:
        try:
            first = _request(20)
            await _claim_in(pool, first)
            await _settle(pool)
            second = _request(20, pilot="p2")
            await _claim_in(pool, second)
            return [a.job.panda_id for r in (first, second) for a in r.assignments]
        finally:
            await pool.close()

    got = asyncio.run(run())
    assert sorted(got) == sorted(ids)
    assert hook.by.count("ahead") >= 1 and hook.by.count("batch") >= 1
    _assert_counters_exact(db)
