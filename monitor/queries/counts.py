"""Exact job counts over a time window, read from the dispatcher's maintained counters.

The window of every page is: **all jobs not final yet, plus the jobs that became final
(finished, failed, cancelled, closed) within the last N hours**. That is what the counters keep
(``dispatcher/store/counters.py``): one bucket for the non-final jobs, and for final jobs the hour
and the day in which they ended. A window is then summed from a few hundred rows:

- the non-final bucket;
- whole days from the first midnight (UTC) after the window's first whole hour to now;
- whole hours before that midnight;
- and the window's first, partial hour read from ``jobs`` itself (final jobs with
  ``modification_time`` in ``[since, next hour)``, an index range of at most one hour of jobs),
  so the counts are exact to the second, not to the hour.

Writers append deltas that the dispatcher folds into the counters about once a second; every
query here adds the not-yet-folded delta rows (``job_count_deltas``, ``job_error_count_deltas``)
to the folded ones **in the same statement**, so it reads one snapshot and stays exact whether a
fold happened before, after or never. The monitor itself never folds: it is read-only.

Counters exist per facet (site, label, owner, transformation, task), state and VO (migration
0016), not per combination of facets, so they answer unfiltered views and views filtered by state
only: an admin's sum every VO's rows, a VO member's sum the rows of their VOs (``vos``). Views
filtered by another facet or by task are counted from ``jobs`` through its indexes (see
:func:`uses_counters`). The flow counters (transitions per hour) have no VO: only admins' plots use them.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, Connection, Subquery, Table, and_, cast, func, or_, select, union_all

from dispatcher.store.counters import DAY_HOURS, FACET_COLUMNS, FINAL_VALUES, HOUR, hour_of
from dispatcher.store.schema import (
    job_count_deltas,
    job_counts,
    job_error_count_deltas,
    job_error_counts,
    jobs,
    task_summaries,
)
from monitor.filters import JobFilter, Viewer

_COUNT_COLUMNS = ("facet", "width", "bucket", "value", "status", "n", "last")
_ERROR_COLUMNS = ("facet", "width", "bucket", "status", "component", "code", "value", "n", "example")
VOs = tuple[str, ...] | None
"""The VOs a count is restricted to (a VO member's), or None for every VO (an admin's)."""


def counter_vos(viewer: Viewer) -> VOs:
    """The VOs whose counter rows a viewer's counts sum: None (all) for an admin, else their VOs."""
    return None if viewer.is_admin else tuple(sorted(viewer.vos))


def _vo_terms(t: Any, vos: VOs) -> list[ColumnElement[bool]]:
    """``t.vo`` among ``vos`` (nothing for None; an empty tuple matches no row, as a viewer of no VO sees none)."""
    return [] if vos is None else [t.c.vo.in_(vos)]


@dataclass(frozen=True, kw_only=True)
class Window:
    """The bucket ranges that tile ``[since, now]``: the partial head hour, then hours, then days."""

    since: float
    first_hour: int  # the first whole hour (its start is >= since)
    first_day: int  # the first day bucket (epoch hour, multiple of 24) covered by day rows

    @classmethod
    def of(cls, since: float) -> Window:
        """The tiling of a window starting at ``since``."""
        first_hour = math.ceil(since / HOUR)
        return cls(since=since, first_hour=first_hour, first_day=-(-first_hour // DAY_HOURS) * DAY_HOURS)

    def clause(self, table: Any, *, active: bool = True) -> ColumnElement[bool]:
        """Rows of ``table`` (job_counts or job_error_counts) inside the window."""
        return or_(*self.parts(table, active=active))

    def parts(self, table: Any, *, active: bool = True) -> list[ColumnElement[bool]]:
        """The window's bucket ranges (active, hours, days), each one range of the counters' primary key."""
        c = table.c
        terms = [
            and_(c.width == 1, c.bucket >= self.first_hour, c.bucket < self.first_day),
            and_(c.width == DAY_HOURS, c.bucket >= self.first_day),
        ]
        if active:
            terms.insert(0, and_(c.width == 0, c.bucket == 0))
        return terms

    def head_rows(
        self, conn: Connection, columns: Iterable[Any], statuses: Iterable[str], *, vos: VOs = None
    ) -> list[Any]:
        """Final jobs (of ``vos``) of the window's partial first hour (the counters' hour rows start after it)."""
        wanted = sorted(set(statuses) & FINAL_VALUES)
        end = self.first_hour * HOUR
        if not wanted or end <= self.since:
            return []
        stmt = select(*columns, jobs.c.modification_time).where(
            jobs.c.status.in_(wanted),
            jobs.c.modification_time >= self.since,
            jobs.c.modification_time < end + 1.0,
            *_vo_terms(jobs, vos),
        )
        # the counters bucket by floor(t / 3600); apply the very same rule at the boundary
        return [r for r in conn.execute(stmt) if hour_of(r.modification_time) < self.first_hour]


def _with_pending(
    folded: Table, pending: Table, columns: Iterable[str], where: Callable[[Any], list[ColumnElement[bool]]]
) -> Subquery:
    """Folded counter rows and pending delta rows matching ``where`` (applied to each table), as one.

    A fold deletes deltas and adds them to the counters in one transaction, so one statement
    reading both sees every delta exactly once. Callers sum ``n`` per key.
    """
    cols = list(columns)
    parts = [select(*(t.c[k] for k in cols)).where(*where(t)) for t in (folded, pending)]
    return union_all(*parts).subquery("counted")


def uses_counters(flt: JobFilter, viewer: Viewer) -> bool:
    """Whether a view is answered from the counters: one filtered at most by state (any viewer:
    the counters have the VO, pass :func:`counter_vos` of the viewer)."""
    del viewer  # every viewer's counts are summed from the counter rows of the VOs they see
    others = [name for name, values in flt.values.items() if values and name != "jobstatus"]
    return flt.taskid is None and not others and not flt.has_error_filter


def all_statuses(flt: JobFilter) -> tuple[str, ...] | None:
    """The ``jobstatus`` filter, or None for every state."""
    wanted = flt.values.get("jobstatus", ())
    return tuple(wanted) if wanted else None


def facet_states(
    conn: Connection,
    flt: JobFilter,
    facets: Iterable[str],
    *,
    statuses: Iterable[str] | None = None,
    vos: VOs = None,
) -> dict[str, dict[str, dict[str, int]]]:
    """``{facet: {value: {status: n}}}`` over the window (exact), of the jobs of ``vos`` (None: all).

    ``statuses`` (default: the filter's ``jobstatus``, or all) restricts the states counted.
    """
    wanted = statuses if statuses is not None else all_statuses(flt)
    return _facet_query(conn, flt, list(facets), wanted, vos)[0]


def facet_states_last(
    conn: Connection, flt: JobFilter, facet: str, *, statuses: Iterable[str] | None = None, vos: VOs = None
) -> tuple[dict[str, dict[str, int]], dict[str, float]]:
    """One facet's ``{value: {status: n}}`` and ``{value: time of its latest counted state change}``."""
    wanted = statuses if statuses is not None else all_statuses(flt)
    counts, last = _facet_query(conn, flt, [facet], wanted, vos)
    return counts[facet], last[facet]


def count_tasks(conn: Connection, flt: JobFilter, *, vos: VOs = None) -> int:
    """How many tasks (of ``vos``) have jobs in the window, summed in SQL (one id per task leaves it).

    A task counts when its counter rows sum above zero or a final job of the window's partial
    first hour (read from ``jobs``) belongs to it.
    """
    window = Window.of(flt.since)
    wanted = all_statuses(flt)

    def where(t: Any) -> list[ColumnElement[bool]]:
        conds = [t.c.facet == "taskid", window.clause(t), t.c.n != 0, *_vo_terms(t, vos)]
        return conds if wanted is None else [*conds, t.c.status.in_(sorted(set(wanted)))]

    c = _with_pending(job_counts, job_count_deltas, ("value", "n"), where).c
    tasks = set(conn.execute(select(c.value).group_by(c.value).having(func.sum(c.n) > 0)).scalars())
    head_states = FINAL_VALUES if wanted is None else wanted
    column = jobs.c[FACET_COLUMNS["taskid"]]
    tasks.update(str(r.task) for r in window.head_rows(conn, [column.label("task")], head_states, vos=vos))
    return len(tasks)


def latest_tasks(
    conn: Connection, flt: JobFilter, limit: int, *, vos: VOs = None
) -> tuple[dict[str, dict[str, int]], dict[str, float]]:
    """The ``limit`` tasks changed most recently in the window: ``{task: {status: n}}`` and last changes.

    Ranked in SQL (latest change first, then the higher task id), so only the chosen tasks' rows
    leave the database rather than every task's. The window's partial first hour comes from
    ``jobs``; a task seen there is added to the candidates, then all candidates are merged and
    ranked again here. That is exact: a task outside both sets has its latest change only in the
    counters, where at least ``limit`` tasks rank above it, and merging only raises their keys.
    """
    window = Window.of(flt.since)
    wanted = all_statuses(flt)
    column = jobs.c[FACET_COLUMNS["taskid"]]

    def status_terms(t: Any) -> list[ColumnElement[bool]]:
        return [] if wanted is None else [t.c.status.in_(sorted(set(wanted)))]

    head_rows = window.head_rows(
        conn, [column.label("task"), jobs.c.status], FINAL_VALUES if wanted is None else wanted, vos=vos
    )
    head = {str(r.task) for r in head_rows}
    c = _with_pending(
        job_counts,
        job_count_deltas,
        ("value", "status", "n", "last"),
        lambda t: [t.c.facet == "taskid", window.clause(t), t.c.n != 0, *status_terms(t), *_vo_terms(t, vos)],
    ).c
    per_state = (
        select(c.value, c.status, func.sum(c.n).label("n"), func.max(c.last).label("last"))
        .group_by(c.value, c.status)
        .having(func.sum(c.n) != 0)
        .cte("per_state")
    )
    latest = func.max(per_state.c.last)
    ranked = (
        select(per_state.c.value)
        .group_by(per_state.c.value)
        .order_by(latest.desc(), cast(per_state.c.value, BigInteger).desc())
        .limit(limit)
        .scalar_subquery()
    )
    chosen = per_state.c.value.in_(ranked)
    if head:
        chosen = or_(chosen, per_state.c.value.in_(sorted(head)))
    matrix: dict[str, dict[str, int]] = defaultdict(dict)
    last: dict[str, float] = {}
    for value, status, n, latest_change in conn.execute(select(per_state).where(chosen)):
        matrix[value][status] = int(n)
        last[value] = max(last.get(value, 0.0), float(latest_change))
    for row in head_rows:
        value = str(row.task)
        matrix[value][row.status] = matrix[value].get(row.status, 0) + 1
        last[value] = max(last.get(value, 0.0), float(row.modification_time))
    return dict(matrix), last


_LISTED = 5000
"""Tasks with pending deltas up to this many are passed as a list (else as a subquery: a folder
that stopped leaves many, and SQLite bounds the bind parameters of one statement)."""
TaskRow = tuple[str, dict[str, int], float]
"""A task on the tasks page: its id (as the counters write it), ``{status: jobs}`` in the window, its latest change."""


def task_page(conn: Connection, flt: JobFilter, start: int, stop: int, *, vos: VOs = None) -> tuple[list[TaskRow], int]:
    """Tasks ``start:stop`` (of ``vos``) of the unfiltered window, latest change first, and how many there are.

    The same tasks, counts and order as ranking :func:`facet_states_last` of ``taskid`` (what
    :func:`latest_tasks` does), read from the per-task summaries (``task_summaries``, see
    ``dispatcher/store/task_summaries.py``): a task is in the window when it has jobs not final
    yet or ``last >= since``, and its latest change there is ``last``, else ``active_last``. So
    the ranking is an index range on ``last`` with a LIMIT and the total one count, whatever the
    number of tasks. A task with deltas not folded yet is not summarised yet: those few are
    counted from their counter rows plus deltas, exactly as before, and merged in. Only the
    page's tasks have their counter rows read. The caller's transaction must be one snapshot
    (the monitor's is), so a fold between these statements cannot count a delta twice.
    """
    window = Window.of(flt.since)
    head = window.head_rows(conn, [jobs.c[FACET_COLUMNS["taskid"]].label("task"), jobs.c.status], FINAL_VALUES, vos=vos)
    d = job_count_deltas
    pending_values: Any = select(d.c.value).where(d.c.facet == "taskid", *_vo_terms(d, vos)).distinct()
    listed = conn.execute(pending_values.limit(_LISTED + 1)).scalars().all()
    if len(listed) <= _LISTED:  # the usual few tasks changed since the last fold: bound, not a subquery
        pending_values = list(listed)
    pending, pending_last = _task_states(conn, window, head, pending_values, vos) if listed else ({}, {})
    pending_ids = select(cast(d.c.value, BigInteger)).where(d.c.facet == "taskid", *_vo_terms(d, vos))
    ranked = _summary_ranking(conn, flt.since, stop, vos, pending_ids)
    ranked += [(last, int(task)) for task, last in pending_last.items() if sum(pending[task].values())]
    ranked.sort(key=lambda kv: (-kv[0], -kv[1]))
    chosen = ranked[start:stop]
    rest = [str(task) for _, task in chosen if str(task) not in pending]
    states, _ = _task_states(conn, window, head, rest, vos) if rest else ({}, {})
    rows = [(str(task), {**states.get(str(task), {}), **pending.get(str(task), {})}, key) for key, task in chosen]
    s = task_summaries
    in_window = or_(s.c.active > 0, s.c.last >= flt.since)
    summarised = select(func.count(func.distinct(s.c.task_id))).where(
        in_window, *_vo_terms(s, vos), s.c.task_id.notin_(pending_ids)
    )
    total = int(conn.execute(summarised).scalar_one()) + sum(1 for n in pending.values() if sum(n.values()))
    return rows, total


def _summary_ranking(conn: Connection, since: float, depth: int, vos: VOs, pending_ids: Any) -> list[tuple[float, int]]:
    """The first ``depth`` summarised tasks of the window (none with pending deltas) as ``(latest change, task)``.

    First the tasks changed since ``since`` (``last``, index range), then, if that is not enough,
    the tasks changed before but still holding jobs not final yet (``active_last``). A task of
    several VOs has several rows: its latest change is its first in this order.
    """
    s = task_summaries
    base = [*_vo_terms(s, vos), s.c.task_id.notin_(pending_ids)]
    parts = [
        (s.c.last, [s.c.last >= since]),
        (s.c.active_last, [s.c.last < since, s.c.active > 0]),
    ]
    seen: dict[int, float] = {}
    for key, terms in parts:
        limit = depth
        while True:
            stmt = select(key, s.c.task_id).where(*base, *terms).order_by(key.desc(), s.c.task_id.desc())
            rows = conn.execute(stmt.limit(limit)).all()
            found = dict(seen)
            for value, task in rows:
                found.setdefault(int(task), float(value))
            if len(found) >= depth or len(rows) < limit:
                break
            limit *= 2  # rows of the same task in several VOs: read further
        seen = found
        if len(seen) >= depth:
            break
    return sorted(((v, t) for t, v in seen.items()), key=lambda kv: (-kv[0], -kv[1]))[:depth]


def _task_states(
    conn: Connection, window: Window, head: list[Any], values: Any, vos: VOs
) -> tuple[dict[str, dict[str, int]], dict[str, float]]:
    """``{task: {status: n}}`` and latest changes of the tasks ``values`` (a list or a subquery of
    counter values) over the window: their counter rows plus pending deltas, and ``head`` (the
    final jobs of the window's partial first hour), as :func:`latest_tasks` counts them."""
    # one SELECT per bucket range: with the ranges OR-ed, PostgreSQL read every counter row
    columns = ("value", "status", "n", "last")
    parts = [
        select(*(t.c[k] for k in columns)).where(
            t.c.facet == "taskid", part, t.c.value.in_(values), t.c.n != 0, *_vo_terms(t, vos)
        )
        for t in (job_counts, job_count_deltas)
        for part in window.parts(t)
    ]
    c = union_all(*parts).subquery("counted").c
    stmt = select(c.value, c.status, func.sum(c.n), func.max(c.last)).group_by(c.value, c.status)
    matrix: dict[str, dict[str, int]] = defaultdict(dict)
    last: dict[str, float] = {}
    for value, status, n, latest in conn.execute(stmt.having(func.sum(c.n) != 0)):
        matrix[value][status] = int(n)
        last[value] = max(last.get(value, 0.0), float(latest))
    wanted = set(values) if isinstance(values, list) else set(conn.execute(values).scalars())
    for row in head:
        value = str(row.task)
        if value in wanted:
            matrix[value][row.status] = matrix[value].get(row.status, 0) + 1
            last[value] = max(last.get(value, 0.0), float(row.modification_time))
    return {v: dict(states) for v, states in matrix.items()}, last


def _facet_query(
    conn: Connection,
    flt: JobFilter,
    facets: list[str],
    statuses: Iterable[str] | None,
    vos: VOs,
) -> tuple[dict[str, dict[str, dict[str, int]]], dict[str, dict[str, float]]]:
    window = Window.of(flt.since)
    wanted = None if statuses is None else sorted(set(statuses))

    def where(t: Any) -> list[ColumnElement[bool]]:
        conds = [t.c.facet.in_(facets), window.clause(t), t.c.n != 0, *_vo_terms(t, vos)]
        if wanted is not None:
            conds.append(t.c.status.in_(wanted))
        return conds

    c = _with_pending(job_counts, job_count_deltas, _COUNT_COLUMNS, where).c
    out: dict[str, dict[str, dict[str, int]]] = {f: defaultdict(lambda: defaultdict(int)) for f in facets}
    last: dict[str, dict[str, float]] = {f: {} for f in facets}
    stmt = select(c.facet, c.value, c.status, func.sum(c.n), func.max(c.last))
    for facet, value, status, n, latest in conn.execute(stmt.group_by(c.facet, c.value, c.status)):
        if int(n):
            out[facet][value][status] += int(n)
            last[facet][value] = max(last[facet].get(value, 0.0), float(latest))
    columns = [jobs.c[FACET_COLUMNS[f]].label(f) for f in facets]
    head_states = wanted if wanted is not None else FINAL_VALUES
    for row in window.head_rows(conn, [*columns, jobs.c.status], head_states, vos=vos):
        for f in facets:
            value = str(getattr(row, f))
            out[f][value][row.status] += 1
            last[f][value] = max(last[f].get(value, 0.0), float(row.modification_time))
    return {f: {v: dict(s) for v, s in vals.items()} for f, vals in out.items()}, last


def transitions_per_hour(conn: Connection, first_hour: int) -> dict[str, dict[int, int]]:
    """``{to_state: {epoch hour: transitions}}`` from the flow counters, hours >= ``first_hour``."""
    c = _with_pending(
        job_counts,
        job_count_deltas,
        ("value", "bucket", "n"),
        lambda t: [t.c.facet == "transition", t.c.width == 1, t.c.bucket >= first_hour],
    ).c
    out: dict[str, dict[int, int]] = defaultdict(dict)
    stmt = select(c.value, c.bucket, func.sum(c.n)).group_by(c.value, c.bucket)
    for status, hour, n in conn.execute(stmt):
        out[status][int(hour)] = int(n)
    return out


def finals_per_hour(conn: Connection, first_hour: int, statuses: Iterable[str]) -> list[tuple[str, int, str, int]]:
    # every VO's: only admins' plots come from the counters (the flow counters have no VO)
    """``(site, epoch hour, state, jobs)`` of jobs that became final in each whole hour from ``first_hour``."""
    wanted = sorted(statuses)
    c = _with_pending(
        job_counts,
        job_count_deltas,
        ("value", "bucket", "status", "n"),
        lambda t: [
            t.c.facet == "computingsite",
            t.c.width == 1,
            t.c.bucket >= first_hour,
            t.c.status.in_(wanted),
            t.c.n != 0,
        ],
    ).c
    stmt = select(c.value, c.bucket, c.status, func.sum(c.n)).group_by(c.value, c.bucket, c.status)
    return [(site, int(h), status, int(n)) for site, h, status, n in conn.execute(stmt) if int(n)]


def error_rows(
    conn: Connection, flt: JobFilter, statuses: Iterable[str], *, vos: VOs = None
) -> tuple[list[Any], Window]:
    """Error counter rows of the window (``facet, status, component, code, value, n, example``) of ``vos``."""
    window = Window.of(flt.since)
    wanted = sorted(statuses)
    e = _with_pending(
        job_error_counts,
        job_error_count_deltas,
        _ERROR_COLUMNS,
        lambda t: [window.clause(t, active=False), t.c.status.in_(wanted), t.c.n != 0, *_vo_terms(t, vos)],
    ).c
    stmt = select(e.facet, e.status, e.component, e.code, e.value, func.sum(e.n), func.max(e.example)).group_by(
        e.facet, e.status, e.component, e.code, e.value
    )
    return list(conn.execute(stmt)), window
