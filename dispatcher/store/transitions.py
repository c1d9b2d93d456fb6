"""Bulk conditional state transitions: the one place that writes ``jobs.status``.

Each :class:`Change` is applied by an UPDATE whose WHERE clause repeats the state and lease
epoch the caller read, so a concurrent writer (another dispatcher, the watchdog, a stale pilot)
makes the update miss instead of overwriting. Many changes go in one statement
(``WITH v(...) AS (VALUES ...) UPDATE jobs ... FROM v ... RETURNING``, valid on SQLite >= 3.35
and PostgreSQL), and the events of the applied ones are appended in the same transaction.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, text

from dispatcher.states import JobState, check_transition
from dispatcher.store import bulk, counters, errors
from dispatcher.store.engine import mark_activated
from dispatcher.store.pgarrays import Kind, column_array, pg_array
from dispatcher.store.schema import job_errors, job_events, jobs

ERRORS = counters.ERRORS_KEY
"""The key of :attr:`Change.values` that replaces the job's errors (a list of ``JobError``)."""
_CHUNK_ROWS = 400  # keeps bind parameters per statement well under SQLite's and PostgreSQL's limits


@dataclass(kw_only=True)
class Change:
    """One job's update: expected ``(status, lease_epoch)``, the new state, other columns to set.

    ``events`` lists the transitions to record as ``(from, to, reason)``; by default the one
    ``from_status -> to_status`` transition with ``reason``, none when the state is unchanged.
    ``values[ERRORS]``, if present, replaces the job's errors (``job_errors`` rows of attempt
    ``attempt_nr``; an empty list clears them).
    """

    panda_id: int
    from_status: JobState
    epoch: int
    to_status: JobState
    values: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    actor: str = ""
    attempt_nr: int = 1
    event_epoch: int | None = None
    events: list[tuple[JobState, JobState, str]] | None = None

    def transitions(self) -> list[tuple[JobState, JobState, str]]:
        """The transitions this change records in ``job_events``."""
        if self.events is not None:
            return self.events
        if self.from_status == self.to_status:
            return []
        return [(self.from_status, self.to_status, self.reason)]


def apply_changes(conn: Connection, changes: Sequence[Change], *, now: float) -> set[int]:
    """Apply ``changes`` conditionally; return the panda_ids that matched (and got their events)."""
    for ch in changes:
        for src, dst, _ in ch.transitions():
            check_transition(ch.panda_id, src, dst)
    groups: dict[tuple[str, ...], list[Change]] = defaultdict(list)
    for ch in changes:
        groups[tuple(sorted(k for k in ch.values if k != ERRORS))].append(ch)
    applied: set[int] = set()
    if conn.dialect.name == "postgresql" and len(changes) <= _INLINE_MAX:
        # A small batch (a pilot's final, one request's claim): one statement per group updates the
        # jobs, clears the errors of those that set them and appends the events of the applied ones
        # (see _update_chunk_pg); round trips are its cost, not rows.
        for cols, group in groups.items():
            applied |= _update_chunk_pg(conn, cols, group, now, inline=True)
        rows = [
            (ch.panda_id, seq, ch.attempt_nr, int(e.component), int(e.code), e.diag)
            for ch in changes
            if ERRORS in ch.values and ch.panda_id in applied
            for seq, e in enumerate(ch.values[ERRORS])
        ]
        bulk.append_rows(conn, job_errors, errors.COLUMNS, rows)  # old rows went in the update
    else:
        pg = conn.dialect.name == "postgresql"
        step = _PG_CHUNK_ROWS if pg else _CHUNK_ROWS
        for cols, group in groups.items():
            for start in range(0, len(group), step):
                chunk = group[start : start + step]
                applied |= _update_chunk_pg(conn, cols, chunk, now) if pg else _update_chunk(conn, cols, chunk, now)
        replaced = [(ch.panda_id, ch.attempt_nr, ch.values[ERRORS]) for ch in changes if ERRORS in ch.values]
        errors.replace(conn, [item for item in replaced if item[0] in applied])  # one DELETE and one append
        # COPY on PostgreSQL: for large batches its C row writer beats arrays bound to an INSERT
        append_events(conn, [ev for ch in changes if ch.panda_id in applied for ev in _events_of(ch, now)])
    counters.record_changes(conn, changes, applied, now=now)  # written at commit, in one upsert
    if any(ch.to_status == JobState.ACTIVATED and ch.panda_id in applied for ch in changes):
        mark_activated(conn)  # a requeue, retry or DDM activation: parked job requests look again
    return applied


def _events_of(ch: Change, now: float) -> list[tuple[Any, ...]]:
    """The ``job_events`` rows (:data:`EVENT_COLUMNS` order) an applied change appends."""
    epoch = ch.epoch if ch.event_epoch is None else ch.event_epoch
    return [
        (ch.panda_id, now, src.value, dst.value, ch.actor[:255], reason, ch.attempt_nr, epoch)
        for src, dst, reason in ch.transitions()
    ]


EVENT_COLUMNS = ("panda_id", "time", "from_status", "to_status", "actor", "reason", "attempt_nr", "lease_epoch")
"""The order of the tuples :func:`append_events` takes."""


def append_events(conn: Connection, events: Sequence[tuple[Any, ...]]) -> None:
    """Append ``job_events`` rows (tuples in :data:`EVENT_COLUMNS` order; COPY on PostgreSQL)."""
    bulk.append_rows(conn, job_events, EVENT_COLUMNS, events)


# PostgreSQL: updates travel as one array per column through ``unnest``, so the statement text
# depends only on the set of columns (psycopg prepares it once) and costs no per-row parsing;
# a text() statement with named parameters per row spent most of the hot path's CPU in
# SQLAlchemy and psycopg query parsing.
_PG_CHUNK_ROWS = 5000
_INLINE_MAX = 64
"""Batches up to this many changes clear errors and append events inside the UPDATE (PostgreSQL)."""


_EVENT_TYPES = ("BIGINT", "FLOAT8", "VARCHAR(16)", "VARCHAR(16)", "VARCHAR(255)", "TEXT", "INTEGER", "BIGINT")
_EVENT_KINDS: tuple[Kind, ...] = ("int", "float", "text", "text", "text", "text", "int", "int")
"""How :data:`_EVENT_TYPES` are written (``store/pgarrays.py``)."""


def _update_chunk_pg(
    conn: Connection, cols: tuple[str, ...], chunk: list[Change], now: float, *, inline: bool = False
) -> set[int]:
    """Update one chunk; ``inline``: in the same statement, for the jobs it updated, delete the errors
    of those whose change sets them and append their events (no separate DELETE and COPY round trips:
    with pilots' finals arriving one at a time, each was a round trip of its own per final)."""
    dialect = conn.dialect
    casts = ["BIGINT", "VARCHAR(16)", "BIGINT", "VARCHAR(16)", *[jobs.c[c].type.compile(dialect=dialect) for c in cols]]
    names = ["v_id", "v_from", "v_epoch", "v_to", *[f"v_c{k}" for k in range(len(cols))]]
    sets = ["status = v.v_to", "modification_time = %s", *[f"{c} = v.v_c{k}" for k, c in enumerate(cols)]]
    sql = (
        f"WITH u AS (UPDATE jobs SET {', '.join(sets)} "
        f"FROM unnest({', '.join(f'%s::{t}[]' for t in casts)}) AS v({', '.join(names)}) "
        "WHERE jobs.panda_id = v.v_id AND jobs.status = v.v_from AND jobs.lease_epoch = v.v_epoch "
        "RETURNING jobs.panda_id)"
    )
    params: list[Any] = [
        now,
        pg_array([ch.panda_id for ch in chunk], "int"),
        pg_array([ch.from_status.value for ch in chunk], "text"),
        pg_array([ch.epoch for ch in chunk], "int"),
        pg_array([ch.to_status.value for ch in chunk], "text"),
    ]
    params += [column_array([ch.values[c] for ch in chunk], jobs.c[c].type) for c in cols]
    cleared = [ch.panda_id for ch in chunk if ERRORS in ch.values] if inline else []
    if cleared:
        sql += (
            ", d AS (DELETE FROM job_errors WHERE panda_id = ANY(%s::BIGINT[]) "
            "AND panda_id IN (SELECT panda_id FROM u))"
        )
        params.append(pg_array(cleared, "int"))
    events = [ev for ch in chunk for ev in _events_of(ch, now)] if inline else []
    if events:
        # WITH ORDINALITY + ORDER BY: event ids are drawn in the order the changes listed them
        sql += (
            f", e AS (INSERT INTO job_events ({', '.join(EVENT_COLUMNS)}) "
            f"SELECT {', '.join(f'ev.{c}' for c in EVENT_COLUMNS)} "
            f"FROM unnest({', '.join(f'%s::{t}[]' for t in _EVENT_TYPES)}) WITH ORDINALITY "
            f"AS ev({', '.join(EVENT_COLUMNS)}, ord) "
            "WHERE ev.panda_id IN (SELECT panda_id FROM u) ORDER BY ev.ord)"
        )
        params += [pg_array([ev[i] for ev in events], kind) for i, kind in enumerate(_EVENT_KINDS)]
    sql += " SELECT panda_id FROM u"
    return {r[0] for r in conn.exec_driver_sql(sql, tuple(params))}


def _update_chunk(conn: Connection, cols: tuple[str, ...], chunk: list[Change], now: float) -> set[int]:
    dialect = conn.dialect
    types = {c: jobs.c[c].type.compile(dialect=dialect) for c in cols}
    idt = jobs.c.panda_id.type.compile(dialect=dialect)
    params: dict[str, Any] = {"now": now}
    rows = []
    for i, ch in enumerate(chunk):
        params[f"i{i}"] = ch.panda_id
        params[f"s{i}"] = ch.from_status.value
        params[f"e{i}"] = ch.epoch
        params[f"t{i}"] = ch.to_status.value
        cells = [f"CAST(:i{i} AS {idt})", f"CAST(:s{i} AS VARCHAR(16))", f"CAST(:e{i} AS BIGINT)"]
        cells.append(f"CAST(:t{i} AS VARCHAR(16))")
        for k, c in enumerate(cols):
            params[f"c{k}_{i}"] = ch.values[c]
            cells.append(f"CAST(:c{k}_{i} AS {types[c]})")
        rows.append("(" + ", ".join(cells) + ")")
    names = ["v_id", "v_from", "v_epoch", "v_to", *[f"v_c{k}" for k in range(len(cols))]]
    sets = ["status = v.v_to", "modification_time = :now", *[f"{c} = v.v_c{k}" for k, c in enumerate(cols)]]
    sql = (
        f"WITH v({', '.join(names)}) AS (VALUES {', '.join(rows)}) "
        f"UPDATE jobs SET {', '.join(sets)} FROM v "
        "WHERE jobs.panda_id = v.v_id AND jobs.status = v.v_from AND jobs.lease_epoch = v.v_epoch "
        "RETURNING panda_id"
    )
    return {r[0] for r in conn.execute(text(sql), params)}
