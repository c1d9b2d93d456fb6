"""The claim in one statement (PostgreSQL): planned jobs become ``sent`` in a single round trip.

The claim transaction (``pilots.claim_jobs``) costs five round trips: ``BEGIN``, the locked
candidate read, the update with its events, the counter deltas and ``COMMIT``. Measured at 300
claims/s on 2 cores, each waited p99 ~7 ms for PostgreSQL or the GIL, so a claim took 7 ms at the
median and 35 to 58 ms at p99 although it used 3 ms of CPU. Here the candidates were read earlier
without locks (``services/claimpool.py`` keeps them per queue), the plan is made in Python, and
one autocommit statement

- locks the planned rows still as they were read (``activated``, same lease epoch, same
  modification time, same queue) with ``FOR UPDATE SKIP LOCKED``: a row another writer changed
  or holds is left out, never waited for and never overwritten;
- moves them to ``sent`` with the pilot's columns and the next lease epoch;
- appends their ``job_events`` rows and their counter deltas (``counters.move_deltas_sql``);
- returns the ids it moved.

Exactly once: a job moves only from the state and epoch the plan saw, under its row lock, and the
statement commits as a whole or not at all. A row that changed since the read is simply not
returned; the caller reads again (``services/claimpool.py``). The transition is checked against
the one table in ``dispatcher/states.py`` like every other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from dispatcher.states import JobState, check_transition
from dispatcher.store.counters import FACET_COLUMNS, hour_of, move_deltas_sql
from dispatcher.store.pgarrays import pg_array
from dispatcher.store.transitions import EVENT_COLUMNS

_FROM, _TO = JobState.ACTIVATED, JobState.SENT


@dataclass(frozen=True, kw_only=True)
class Send:
    """One planned ``activated -> sent``: the row as it was read and the pilot it goes to."""

    panda_id: int
    epoch: int
    """The lease epoch read (the job is written with ``epoch + 1``)."""
    modified: float
    """The ``modification_time`` read: any write to the row since then makes the claim skip it."""
    queue: str
    pilot_id: str
    batch_id: str
    node: str


_RETURNED = sorted({"panda_id", "attempt_nr", "lease_epoch", "pilot_id", "vo", *FACET_COLUMNS.values()})
_SQL = (
    "WITH v AS (SELECT * FROM unnest(%s::BIGINT[], %s::BIGINT[], %s::FLOAT8[], %s::VARCHAR(255)[], "
    "%s::VARCHAR(255)[], %s::VARCHAR(255)[], %s::VARCHAR(255)[]) "
    "AS v(id, epoch, modified, queue, pilot, batch, node)), "
    # One primary-key probe per planned job, locked first, then checked: with the checks inside the
    # probe the planner, misled by the estimates, scanned the claim index for each of the few planned
    # ones (5 ms with 3,800 jobs waiting, measured; 1.5 ms for the whole statement through the key).
    # OFFSET 0 keeps the checks out of the probe (PostgreSQL pushes no condition into such a subquery).
    # The lock returns the row's newest version, so the checks see what a concurrent writer committed.
    "l AS (SELECT x.panda_id FROM v CROSS JOIN LATERAL (SELECT j.panda_id, j.status, j.lease_epoch, "
    "j.modification_time, j.computing_site FROM jobs j WHERE j.panda_id = v.id OFFSET 0 FOR UPDATE SKIP LOCKED) x "
    f"WHERE x.status = '{_FROM.value}' AND x.lease_epoch = v.epoch AND x.modification_time = v.modified "
    "AND x.computing_site = v.queue), "
    f"u AS (UPDATE jobs SET status = '{_TO.value}', modification_time = %s, lease_epoch = v.epoch + 1, "
    "pilot_id = v.pilot, batch_id = v.batch, node = v.node, sent_time = %s, lease_expires = %s "
    "FROM v WHERE jobs.panda_id = v.id AND jobs.panda_id IN (SELECT panda_id FROM l) "
    f"RETURNING {', '.join(f'jobs.{c}' for c in _RETURNED)}), "
    f"e AS (INSERT INTO job_events ({', '.join(EVENT_COLUMNS)}) "
    f"SELECT u.panda_id, %s, '{_FROM.value}', '{_TO.value}', left('pilot:' || u.pilot_id, 255), "
    "'sent to pilot ' || u.pilot_id, u.attempt_nr, u.lease_epoch FROM u ORDER BY u.panda_id), "
    f"d AS ({move_deltas_sql('u', _FROM, _TO)}) "
    "SELECT panda_id FROM u"
)


def _params(sends: Sequence[Send], *, lease_s: float, now: float) -> tuple[Any, ...]:
    check_transition(sends[0].panda_id, _FROM, _TO)
    return (
        pg_array([s.panda_id for s in sends], "int"),
        pg_array([s.epoch for s in sends], "int"),
        pg_array([s.modified for s in sends], "float"),
        pg_array([s.queue for s in sends], "text"),
        pg_array([s.pilot_id for s in sends], "text"),
        pg_array([s.batch_id for s in sends], "text"),
        pg_array([s.node for s in sends], "text"),
        now,
        now,
        now + lease_s,
        now,
        now,
        hour_of(now),
        now,
    )


async def send_async(
    conn: psycopg.AsyncConnection[Any], sends: Sequence[Send], *, lease_s: float, now: float
) -> set[int]:
    """Move ``sends`` to ``sent`` in one statement; the ids it moved. On a psycopg async connection
    in autocommit (``store/aio.py``): the event loop awaits the statement itself instead of handing
    it to a database thread and back."""
    if not sends:
        return set()
    async with conn.cursor() as cur:
        await cur.execute(_SQL, _params(sends, lease_s=lease_s, now=now))
        return {r[0] for r in await cur.fetchall()}
