"""Maintained job counters, so the monitor counts a million jobs without reading them.

What is counted (tables ``job_counts`` and ``job_error_counts``, see ``schema.py``):

- **Stock counts** per facet value and state: for each of the facets ``computingsite``,
  ``prodsourcelabel``, ``produsername``, ``transformation`` and ``taskid``, how many jobs with that
  value are in each state. Jobs not final yet are counted in one bucket (``width`` 0), final jobs
  in the hour (``width`` 1) *and* in the day (``width`` 24) in which they became final. Final states
  are terminal and a job's facet columns never change after submission, so a job leaves a bucket
  only while it is not final: no transition ever needs the time of an earlier one.
- **Flow counts** (facet ``transition``): state transitions recorded per hour and target state,
  exactly the rows appended to ``job_events``.
- **Error counts**: jobs that became final with errors, per (component, code), per site and per
  owner, by hour and by day, with the newest such job as an example.

Every writer of ``jobs.status`` goes through :func:`record_changes` (from ``apply_changes``) or
:func:`record_inserts` (from ``insert_jobs``). They only accumulate deltas on the connection;
when the transaction commits, the deltas are **appended** as new rows of ``job_count_deltas``
(one multi-row INSERT, plus one read and one INSERT into ``job_error_count_deltas`` when jobs
ended). A rollback discards them. Appending takes no lock another transaction waits for: an
upsert of the counter rows themselves would make every claim, final and submission of every
dispatcher queue behind the same few hot rows (the active bucket of a site) until commit.

:func:`fold` moves committed deltas into ``job_counts`` / ``job_error_counts``: it deletes a batch
of delta rows (``DELETE ... RETURNING``), sums them per key and upserts the sums, in one
transaction. The dispatcher runs it about once a second (``services/counters.py``). On
PostgreSQL one folder at a time holds a transaction-level advisory lock; a second one skips the
round. Even without the lock no row could be counted twice: a delta row is folded by the
transaction that deletes it, and only one can. Rows of transactions still open are invisible to
the fold and folded in a later round. Readers stay exact by adding the pending deltas to the
folded rows in the same statement (one snapshot; see ``monitor/queries/counts.py``). The same
fold keeps one summary row per task and VO (``task_summaries``, :mod:`.task_summaries`) from the
task counters it has just upserted, so ``/tasks/`` ranks tasks without summing their rows.

:func:`rebuild` recomputes everything from ``jobs`` and ``job_events`` (the migration's backfill,
and bulk loaders that bypass the store), and empties the delta tables.
"""

from __future__ import annotations

import math
import threading
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, delete, event, inspect, select, text

from dispatcher.jobfields import fields_by_key
from dispatcher.states import FINAL_STATES, JobState
from dispatcher.store import task_summaries
from dispatcher.store.pgarrays import Kind, pg_array
from dispatcher.store.schema import (
    job_count_deltas,
    job_counts,
    job_error_count_deltas,
    job_error_counts,
    job_errors,
    jobs,
)

if TYPE_CHECKING:
    from dispatcher.store.transitions import Change

HOUR = 3600.0
DAY_HOURS = 24
ACTIVE_WIDTH = 0
"""``width`` of the bucket holding the jobs that are not final yet (its ``bucket`` is 0)."""
WIDTHS = (1, DAY_HOURS)
"""Bucket widths in hours kept for final jobs: hours for the recent edge of a window, days for the bulk."""
_COUNTED = fields_by_key("computingsite", "prodsourcelabel", "produsername", "transformation", "taskid")
FACET_COLUMNS: dict[str, str] = {f.key: f.column for f in _COUNTED}
"""Counted facet -> jobs column. These columns are written at submission and never change."""
ERROR_FACETS: dict[str, str] = {f.key: f.column for f in fields_by_key("computingsite", "produsername")}
TRANSITION = "transition"
"""Facet name of the flow counts (``value`` = target state, ``status`` = '')."""
FINAL_VALUES = frozenset(s.value for s in FINAL_STATES)
_INFO_KEY = "ailuro.counter_deltas"
ERRORS_KEY = "errors"
"""``transitions.ERRORS``: the key of ``Change.values`` that replaces a job's errors."""
_CHUNK = 2000  # rows of deltas per statement: 5 bind parameters each, well under both backends' limits
FOLD_LOCK_KEY = 0x41696C75726F  # "Ailuro": the PostgreSQL advisory lock held by the one running fold
FOLD_BATCH = 20_000
"""Delta rows of each table one :func:`fold` moves at most (a backlog takes several rounds)."""


def hour_of(t: float) -> int:
    """The epoch hour of ``t``: ``floor(t / 3600)``, the same expression the SQL side uses."""
    return math.floor(t / HOUR)


def buckets_of(t: float) -> list[tuple[int, int]]:
    """``(width, bucket)`` pairs a job final at ``t`` is counted in (bucket = first epoch hour)."""
    h = hour_of(t)
    return [(1, h), (DAY_HOURS, h - h % DAY_HOURS)]


@dataclass
class _Pending:
    """Deltas of one transaction, merged by key so a job's round trip within it nets to nothing."""

    stock: dict[tuple[int, int, int, str], int] = field(default_factory=lambda: defaultdict(int))
    flows: dict[tuple[int, str], int] = field(default_factory=lambda: defaultdict(int))
    failed: dict[int, float] = field(default_factory=dict)  # panda_id -> time it became final
    now: float = 0.0


def record_changes(conn: Connection, changes: Iterable[Change], applied: set[int], *, now: float) -> None:
    """Count the state changes among ``changes`` that were applied (called once per ``apply_changes``)."""
    pending: _Pending | None = None
    for ch in changes:
        if ch.panda_id not in applied:
            continue
        moves = ch.transitions()
        if not moves and ch.from_status == ch.to_status:
            continue
        pending = pending or _pending(conn, now)
        for _, dst, _ in moves:
            pending.flows[(hour_of(now), dst.value)] += 1
        if ch.from_status == ch.to_status:
            continue
        _move(pending, ch.panda_id, ch.from_status, ch.to_status, now)
        if ch.to_status != JobState.FAILED and ch.values.get(ERRORS_KEY) == []:
            # It ends with no errors (this change cleared them) and not failed: it has no error
            # keys, so the read at commit (_count_errors) need not look at it.
            pending.failed.pop(ch.panda_id, None)


def record_inserts(conn: Connection, panda_ids: Sequence[int], states: Sequence[JobState], *, now: float) -> None:
    """Count newly submitted jobs (inserted in ``states``, recorded as defined -> that state)."""
    if not panda_ids:
        return
    pending = _pending(conn, now)
    for pid, state in zip(panda_ids, states, strict=True):
        pending.stock[(pid, ACTIVE_WIDTH, 0, state.value)] += 1
        pending.flows[(hour_of(now), state.value)] += 1
    pending.flows[(hour_of(now), JobState.DEFINED.value)] += len(panda_ids)


def _move(pending: _Pending, pid: int, src: JobState, dst: JobState, now: float) -> None:
    if src.is_final:  # final states are terminal: the transition table refuses this already
        raise ValueError(f"job {pid}: cannot count a change out of final state {src.value}")
    pending.stock[(pid, ACTIVE_WIDTH, 0, src.value)] -= 1
    if dst.is_final:
        for width, bucket in buckets_of(now):
            pending.stock[(pid, width, bucket, dst.value)] += 1
        pending.failed[pid] = now
    else:
        pending.stock[(pid, ACTIVE_WIDTH, 0, dst.value)] += 1


def _pending(conn: Connection, now: float) -> _Pending:
    install(conn.engine)
    pending = conn.info.get(_INFO_KEY)
    if pending is None:
        pending = conn.info[_INFO_KEY] = _Pending()
    pending.now = max(pending.now, now)
    return pending


_INSTALL_LOCK = threading.Lock()


def install(engine: Engine) -> None:
    """Attach the listeners that fold or drop a transaction's counter deltas (idempotent).

    :class:`~dispatcher.store.engine.Database` calls this when it creates its engine, before any
    thread uses it: SQLAlchemy iterates an engine's listener deque without a lock, and adding one
    lazily from a writing thread while a reader began its transaction raised "deque mutated during
    iteration" in the reader (a fresh-clone CI run, GetJobs → INTERNAL). The call in
    :func:`_pending` only covers engines made elsewhere (tests), and the lock keeps two first
    writers from attaching the listeners twice.
    """
    if event.contains(engine, "commit", _on_commit):
        return
    with _INSTALL_LOCK:
        if not event.contains(engine, "commit", _on_commit):
            event.listen(engine, "commit", _on_commit)
            event.listen(engine, "rollback", _discard)
            event.listen(engine, "begin", _discard)  # never carry deltas of an abandoned transaction over


def _discard(conn: Connection) -> None:
    # A connection invalidated mid-transaction (the database went away) refuses even ``info`` until
    # rolled back: touching it here raised PendingRollbackError from inside the rollback, which hid
    # the outage and reached the client as INTERNAL. Its deltas die with it ("begin" clears again).
    if not conn.invalidated:
        conn.info.pop(_INFO_KEY, None)


def _on_commit(conn: Connection) -> None:
    pending = conn.info.pop(_INFO_KEY, None)
    if pending is not None:
        flush(conn, pending)


def flush(conn: Connection, pending: _Pending) -> None:
    """Append a transaction's deltas: one INSERT of stock and flow deltas, then the error deltas."""
    stock = sorted((k, n) for k, n in pending.stock.items() if n)
    flows = sorted((k, n) for k, n in pending.flows.items() if n)
    if conn.dialect.name == "postgresql":
        _insert_count_deltas_pg(conn, stock, flows, pending.now)
        if pending.failed:
            _count_errors(conn, pending.failed, pending.now)
        return
    for start in range(0, max(len(stock), len(flows)), _CHUNK):
        _insert_count_deltas(conn, stock[start : start + _CHUNK], flows[start : start + _CHUNK], pending.now)
    if pending.failed:
        _count_errors(conn, pending.failed, pending.now)


def _value_expr(column: str, alias: str = "j") -> str:
    return f"CAST({alias}.{column} AS VARCHAR(255))" if column == "task_id" else f"{alias}.{column}"


# PostgreSQL: the deltas travel as one array per column through ``unnest``, so the statement text
# is constant (psycopg prepares it once) and nothing is parsed per row; a text() statement with
# named parameters per row cost more CPU than the state change it counted.
_FACET_CASE = " ".join(f"WHEN '{name}' THEN {_value_expr(col)}" for name, col in FACET_COLUMNS.items())
_COUNT_DELTAS_SQL = (
    "INSERT INTO job_count_deltas (facet, width, bucket, value, status, n, last, vo) "
    f"SELECT f.facet, v.width, v.bucket, CASE f.facet {_FACET_CASE} END, v.status, SUM(v.delta), %s, j.vo "
    "FROM unnest(%s::BIGINT[], %s::INTEGER[], %s::BIGINT[], %s::VARCHAR(16)[], %s::BIGINT[]) "
    "AS v(pid, width, bucket, status, delta) JOIN jobs j ON j.panda_id = v.pid "
    "CROSS JOIN (VALUES " + ", ".join(f"('{name}')" for name in FACET_COLUMNS) + ") AS f(facet) "
    "GROUP BY 1, 2, 3, 4, 5, 8 "
    f"UNION ALL SELECT '{TRANSITION}', 1, t.hour, t.dst, '', t.n, %s, '' "
    "FROM unnest(%s::BIGINT[], %s::VARCHAR(255)[], %s::BIGINT[]) AS t(hour, dst, n)"
)


def move_deltas_sql(source: str, src: JobState, dst: JobState) -> str:
    """``INSERT INTO job_count_deltas ...`` counting every row of the CTE ``source`` as moved ``src -> dst``.

    For a statement that changes jobs' states in itself and commits alone (the one-statement claim,
    ``store/claim_pg.py``): what :func:`record_changes` and the commit listener append for it, read
    from the rows the statement updated. ``source`` must return the facet columns and ``vo``. Only
    moves between states that are not final (those count in the active bucket alone). Parameters,
    in order: the time, its epoch hour, the time.
    """
    if src.is_final or dst.is_final:
        raise ValueError(f"only moves between states that are not final: {src.value} -> {dst.value}")
    case = " ".join(f"WHEN '{name}' THEN {_value_expr(col, 's')}" for name, col in FACET_COLUMNS.items())
    facets = ", ".join(f"('{name}')" for name in FACET_COLUMNS)
    return (
        "INSERT INTO job_count_deltas (facet, width, bucket, value, status, n, last, vo) "
        f"SELECT f.facet, {ACTIVE_WIDTH}, 0, CASE f.facet {case} END, m.status, SUM(m.delta), %s, s.vo "
        f"FROM {source} s CROSS JOIN (VALUES {facets}) AS f(facet) "
        f"CROSS JOIN (VALUES ('{src.value}', -1), ('{dst.value}', 1)) AS m(status, delta) "
        "GROUP BY 1, 2, 3, 4, 5, 8 "
        f"UNION ALL SELECT '{TRANSITION}', 1, %s, '{dst.value}', '', COUNT(*), %s, '' FROM {source} HAVING COUNT(*) > 0"
    )


_ERROR_COLUMNS = ("facet", "width", "bucket", "status", "component", "code", "value", "vo", "n", "example")
_ERROR_DELTAS_SQL = (
    f"INSERT INTO job_error_count_deltas ({', '.join(_ERROR_COLUMNS)}) SELECT * FROM unnest("
    "%s::VARCHAR(16)[], %s::INTEGER[], %s::BIGINT[], %s::VARCHAR(16)[], %s::INTEGER[], %s::INTEGER[], "
    "%s::TEXT[], %s::VARCHAR(255)[], %s::BIGINT[], %s::BIGINT[])"
)


def _insert_count_deltas_pg(
    conn: Connection,
    stock: list[tuple[tuple[int, int, int, str], int]],
    flows: list[tuple[tuple[int, str], int]],
    now: float,
) -> None:
    if not stock and not flows:
        return
    kinds: tuple[Kind, ...] = ("int", "int", "int", "text")
    params: list[Any] = [now, *(pg_array([key[i] for key, _ in stock], kinds[i]) for i in range(4))]
    params += [pg_array([n for _, n in stock], "int"), now]
    params += [
        pg_array([hour for (hour, _), _ in flows], "int"),
        pg_array([dst for (_, dst), _ in flows], "text"),
        pg_array([n for _, n in flows], "int"),
    ]
    conn.exec_driver_sql(_COUNT_DELTAS_SQL, tuple(params))


def _insert_count_deltas(
    conn: Connection,
    stock: list[tuple[tuple[int, int, int, str], int]],
    flows: list[tuple[tuple[int, str], int]],
    now: float,
) -> None:
    params: dict[str, Any] = {"now": now}
    ctes: list[str] = []
    parts: list[str] = []
    if stock:
        rows = []
        for i, ((pid, width, bucket, status), n) in enumerate(stock):
            params.update({f"p{i}": pid, f"w{i}": width, f"b{i}": bucket, f"s{i}": status, f"n{i}": n})
            rows.append(
                f"(CAST(:p{i} AS BIGINT), CAST(:w{i} AS INTEGER), CAST(:b{i} AS BIGINT), "
                f"CAST(:s{i} AS VARCHAR(16)), CAST(:n{i} AS BIGINT))"
            )
        ctes.append(f"v(pid, width, bucket, status, delta) AS (VALUES {', '.join(rows)})")
        ctes.append("f(facet) AS (VALUES " + ", ".join(f"('{name}')" for name in FACET_COLUMNS) + ")")
        value = "CASE f.facet " + " ".join(
            f"WHEN '{name}' THEN {_value_expr(col)}" for name, col in FACET_COLUMNS.items()
        )
        parts.append(
            f"SELECT f.facet, v.width, v.bucket, {value} END, v.status, SUM(v.delta), CAST(:now AS FLOAT), j.vo "
            "FROM v JOIN jobs j ON j.panda_id = v.pid CROSS JOIN f GROUP BY 1, 2, 3, 4, 5, 8"
        )
    for i, ((hour, dst), n) in enumerate(flows):
        params.update({f"fh{i}": hour, f"fs{i}": dst, f"fn{i}": n})
        parts.append(
            f"SELECT '{TRANSITION}', 1, CAST(:fh{i} AS BIGINT), CAST(:fs{i} AS VARCHAR(255)), '', "
            f"CAST(:fn{i} AS BIGINT), CAST(:now AS FLOAT), ''"
        )
    if not parts:
        return
    ctes.append(f"d(facet, width, bucket, value, status, n, last, vo) AS ({' UNION ALL '.join(parts)})")
    # Appended, never updated: no row lock that another transaction could wait for.
    sql = (
        f"WITH {', '.join(ctes)} INSERT INTO job_count_deltas (facet, width, bucket, value, status, n, last, vo) "
        "SELECT facet, width, bucket, value, status, n, last, vo FROM d"
    )
    conn.execute(text(sql), params)


def _count_errors(conn: Connection, ended: dict[int, float], now: float) -> None:
    deltas: dict[ErrorKey, list[int]] = {}
    for row, errs in _rows_with_errors(conn, sorted(ended)):
        for key in _error_keys(row, errs, ended[row.panda_id]):
            slot = deltas.setdefault(key, [0, 0])
            slot[0] += 1
            slot[1] = max(slot[1], int(row.panda_id))
    if not deltas:
        return
    if conn.dialect.name == "postgresql":
        rows = sorted(deltas.items())
        columns = [[key[i] for key, _ in rows] for i in range(8)]
        columns += [[n for _, (n, _) in rows], [example for _, (_, example) in rows]]
        conn.exec_driver_sql(_ERROR_DELTAS_SQL, tuple(columns))
    else:
        _write_errors(conn, sorted(deltas.items()), table="job_error_count_deltas", upsert=False)


# one row per error of each job (or one with NULL component for a failed job without errors)
ErrorKey = tuple[str, int, int, str, int, int, str, str]
"""(facet, width, bucket, status, component, code, value, vo) of an error counter row."""

_ERRORS_SQL = (
    "SELECT j.panda_id, j.status, j.computing_site, j.owner, j.vo, e.component, e.code FROM jobs j "
    "LEFT JOIN job_errors e ON e.panda_id = j.panda_id WHERE j.panda_id = ANY(%s::BIGINT[]) "
    f"AND (j.status = '{JobState.FAILED.value}' OR e.panda_id IS NOT NULL) ORDER BY j.panda_id, e.seq"
)
_ERROR_JOB_COLUMNS = (jobs.c.panda_id, jobs.c.status, jobs.c.computing_site, jobs.c.owner, jobs.c.vo)


def _with_errors(rows: Iterable[Any]) -> Iterable[tuple[Any, list[tuple[int, int]]]]:
    """Group ``(job columns..., component, code)`` rows, ordered by job, into ``(job, [(component, code)])``."""
    job: Any = None
    errs: list[tuple[int, int]] = []
    for row in rows:
        if job is not None and row.panda_id != job.panda_id:
            yield job, errs
            errs = []
        job = row
        if row.component is not None:
            errs.append((int(row.component), int(row.code)))
    if job is not None:
        yield job, errs


def _error_select() -> Any:
    joined = jobs.outerjoin(job_errors, job_errors.c.panda_id == jobs.c.panda_id)
    return (
        select(*_ERROR_JOB_COLUMNS, job_errors.c.component, job_errors.c.code)
        .select_from(joined)
        .where((jobs.c.status == JobState.FAILED.value) | job_errors.c.panda_id.is_not(None))
        .order_by(jobs.c.panda_id, job_errors.c.seq)
    )


def _rows_with_errors(conn: Connection, ids: list[int]) -> Iterable[tuple[Any, list[tuple[int, int]]]]:
    """The jobs among ``ids`` that may carry error keys (failed, or ended with recorded errors), with them."""
    if conn.dialect.name == "postgresql":
        yield from _with_errors(conn.exec_driver_sql(_ERRORS_SQL, (ids,)))
        return
    for start in range(0, len(ids), _CHUNK):
        yield from _with_errors(conn.execute(_error_select().where(jobs.c.panda_id.in_(ids[start : start + _CHUNK]))))


def _error_keys(row: Any, errs: list[tuple[int, int]], ended_at: float) -> list[ErrorKey]:
    """Counter keys of one final job's errors; a failed job without errors counts as (0, 0)."""
    if not errs and row.status == JobState.FAILED.value:
        errs = [(0, 0)]
    out = []
    for comp, code in dict.fromkeys(errs):
        for facet, column in ERROR_FACETS.items():
            for width, bucket in buckets_of(ended_at):
                out.append((facet, width, bucket, row.status, comp, code, str(getattr(row, column)), row.vo))
    return out


def _write_errors(conn: Connection, rows: list[tuple[tuple[Any, ...], list[int]]], *, table: str, upsert: bool) -> None:
    """Insert ``(key, [n, example])`` rows into ``table``; ``upsert``: add to the existing counters."""
    for start in range(0, len(rows), _CHUNK // 2):
        params: dict[str, Any] = {}
        values = []
        for i, ((facet, width, bucket, status, comp, code, value, vo), (n, example)) in enumerate(
            rows[start : start + _CHUNK // 2]
        ):
            params.update(
                {
                    f"f{i}": facet,
                    f"w{i}": width,
                    f"b{i}": bucket,
                    f"s{i}": status,
                    f"c{i}": comp,
                    f"k{i}": code,
                    f"v{i}": value,
                    f"o{i}": vo,
                    f"n{i}": n,
                    f"e{i}": example,
                }
            )
            values.append(f"(:f{i}, :w{i}, :b{i}, :s{i}, :c{i}, :k{i}, :v{i}, :o{i}, :n{i}, :e{i})")
        sql = (
            f"INSERT INTO {table} (facet, width, bucket, status, component, code, value, vo, n, example) "
            f"VALUES {', '.join(values)}"
        )
        if upsert:
            sql += (
                " ON CONFLICT (facet, width, bucket, status, component, code, value, vo) DO UPDATE SET "
                f"n = {table}.n + excluded.n, example = CASE WHEN excluded.example > {table}.example "
                f"THEN excluded.example ELSE {table}.example END"
            )
        conn.execute(text(sql), params)


def fold(conn: Connection, *, limit: int = FOLD_BATCH) -> int | None:
    """Move up to ``limit`` committed delta rows of each delta table into the counters.

    Returns how many delta rows were folded, or None when another folder holds the lock
    (PostgreSQL; that one does the work). Run it in its own write transaction: the deltas are
    deleted and added to the counters atomically, so a reader sees each delta in one of the two, never both.
    """
    lock = text("SELECT pg_try_advisory_xact_lock(:k)")
    if conn.dialect.name == "postgresql" and not conn.execute(lock, {"k": FOLD_LOCK_KEY}).scalar_one():
        return None
    return _fold_counts(conn, limit) + _fold_errors(conn, limit)


def _take(conn: Connection, table: Any, limit: int, columns: list[str]) -> list[Any]:
    """Delete the oldest ``limit`` rows of a delta table, returning them: whoever deletes a row folds it."""
    oldest = select(table.c.id).order_by(table.c.id).limit(limit)
    stmt = delete(table).where(table.c.id.in_(oldest)).returning(*(table.c[k] for k in columns))
    return list(conn.execute(stmt))


def _fold_counts(conn: Connection, limit: int) -> int:
    columns = ["facet", "width", "bucket", "value", "status", "vo", "n", "last"]
    rows = _take(conn, job_count_deltas, limit, columns)
    sums: dict[tuple[str, int, int, str, str, str], list[Any]] = {}
    for facet, width, bucket, value, status, vo, n, last in rows:
        slot = sums.setdefault((facet, int(width), int(bucket), value, status, vo), [0, 0.0])
        slot[0] += int(n)
        slot[1] = max(slot[1], float(last))
    ordered = sorted(sums.items())  # one global key order: two upserts of the counters cannot deadlock
    for start in range(0, len(ordered), _CHUNK):
        params: dict[str, Any] = {}
        values = []
        for i, ((facet, width, bucket, value, status, vo), (n, last)) in enumerate(ordered[start : start + _CHUNK]):
            params.update({f"f{i}": facet, f"w{i}": width, f"b{i}": bucket, f"v{i}": value, f"s{i}": status})
            params.update({f"o{i}": vo, f"n{i}": n, f"l{i}": last})
            values.append(f"(:f{i}, :w{i}, :b{i}, :v{i}, :s{i}, :o{i}, :n{i}, :l{i})")
        sql = (
            f"INSERT INTO job_counts (facet, width, bucket, value, status, vo, n, last) VALUES {', '.join(values)} "
            "ON CONFLICT (facet, width, bucket, value, status, vo) DO UPDATE SET n = job_counts.n + excluded.n, "
            "last = CASE WHEN excluded.last > job_counts.last THEN excluded.last ELSE job_counts.last END"
        )
        conn.execute(text(sql), params)
    # the per-task summaries follow the task counters in the same transaction (migration 0017)
    tasks = [(value, vo) for facet, _, _, value, _, vo in sums if facet == task_summaries.TASK_FACET]
    final_last: dict[tuple[str, str], float] = {}
    for (facet, width, _, value, _, vo), (n, last) in sums.items():
        if facet == task_summaries.TASK_FACET and width > 0 and n:
            final_last[(value, vo)] = max(final_last.get((value, vo), 0.0), last)
    task_summaries.update(conn, tasks, final_last)
    return len(rows)


def _fold_errors(conn: Connection, limit: int) -> int:
    rows = _take(conn, job_error_count_deltas, limit, list(_ERROR_COLUMNS))
    sums: dict[ErrorKey, list[int]] = {}
    for facet, width, bucket, status, comp, code, value, vo, n, example in rows:
        slot = sums.setdefault((facet, int(width), int(bucket), status, int(comp), int(code), value, vo), [0, 0])
        slot[0] += int(n)
        slot[1] = max(slot[1], int(example))
    if sums:
        _write_errors(conn, sorted(sums.items()), table="job_error_counts", upsert=True)
    return len(rows)


def rebuild(conn: Connection) -> None:
    """Recompute every counter from ``jobs`` and ``job_events`` (a backfill; run with writers stopped)."""
    if not _has_vo(conn):
        return  # an older migration (0004) on the way up: 0016 adds the VO and rebuilds everything
    for table in (job_count_deltas, job_error_count_deltas, job_counts, job_error_counts):
        # the delta tables do not exist yet while migration 0004 runs this as its backfill
        if table in (job_counts, job_error_counts) or inspect(conn).has_table(table.name):
            conn.execute(delete(table))
    hour = _hour_sql(conn, "modification_time")
    finals = ", ".join(f"'{s}'" for s in sorted(FINAL_VALUES))
    for name, column in FACET_COLUMNS.items():
        value = _value_expr(column)
        conn.execute(
            text(
                "INSERT INTO job_counts (facet, width, bucket, value, status, vo, n, last) "
                f"SELECT '{name}', 0, 0, {value}, j.status, j.vo, COUNT(*), MAX(j.modification_time) FROM jobs j "
                f"WHERE j.status NOT IN ({finals}) GROUP BY {value}, j.status, j.vo"
            )
        )
        for width in WIDTHS:
            bucket = f"({hour} / {width}) * {width}"
            conn.execute(
                text(
                    "INSERT INTO job_counts (facet, width, bucket, value, status, vo, n, last) "
                    f"SELECT '{name}', {width}, {bucket}, {value}, j.status, j.vo, COUNT(*), "
                    "MAX(j.modification_time) "
                    f"FROM jobs j WHERE j.status IN ({finals}) GROUP BY {bucket}, {value}, j.status, j.vo"
                )
            )
    ev_hour = _hour_sql(conn, "time")
    conn.execute(
        text(
            "INSERT INTO job_counts (facet, width, bucket, value, status, n, last) "
            f"SELECT '{TRANSITION}', 1, {ev_hour}, j.to_status, '', COUNT(*), MAX(j.time) FROM job_events j "
            f"GROUP BY {ev_hour}, j.to_status"
        )
    )
    _rebuild_errors(conn)
    task_summaries.rebuild(conn)


def rebuild_errors(conn: Connection) -> None:
    """Recompute the error counters alone from ``jobs`` and ``job_errors`` (migration 0009's backfill)."""
    if not _has_vo(conn):
        return  # migration 0009 on the way up: 0016 rebuilds every counter with the VO
    for table in (job_error_count_deltas, job_error_counts):
        conn.execute(delete(table))
    _rebuild_errors(conn)


def _rebuild_errors(conn: Connection) -> None:
    if not inspect(conn).has_table(job_errors.name):
        return  # migration 0004 on an older database: 0009 moves the errors into rows and counts them
    deltas: dict[ErrorKey, list[int]] = {}
    stmt = _error_select().add_columns(jobs.c.modification_time).where(jobs.c.status.in_(sorted(FINAL_VALUES)))
    for row, errs in _with_errors(conn.execute(stmt.execution_options(yield_per=5000))):
        for key in _error_keys(row, errs, row.modification_time):
            slot = deltas.setdefault(key, [0, 0])
            slot[0] += 1
            slot[1] = max(slot[1], int(row.panda_id))
    if deltas:
        _write_errors(conn, sorted(deltas.items()), table="job_error_counts", upsert=False)


def _has_vo(conn: Connection) -> bool:
    """Whether the counters have their VO column yet (migration 0016)."""
    return any(c["name"] == "vo" for c in inspect(conn).get_columns(job_counts.name))


def _hour_sql(conn: Connection, column: str) -> str:
    """``floor(column / 3600)`` as an integer; truncation equals floor for the positive times stored."""
    if conn.dialect.name == "postgresql":
        return f"CAST(floor(j.{column} / 3600.0) AS BIGINT)"
    return f"CAST(j.{column} / 3600.0 AS INTEGER)"
