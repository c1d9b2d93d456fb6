"""Exactness checks of the per-task summaries (``task_summaries``, migration 0017) and of the
tasks page read from them, shared by the counter tests (``test_job_counters.py``) and
``test_task_summaries.py``.

The summaries must always equal what their definition says of the folded task counters, and,
with nothing pending, what the jobs say. The page read from them must list the same tasks, in
the same order, with the same counts and latest changes as ranking every task's counter rows
(:func:`counts.facet_states_last`, what the page did before 0017), and the same counts as a
recount of the jobs, for windows that cut through the workload's hours.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from sqlalchemy import Connection, select

from dispatcher.states import FINAL_STATES
from dispatcher.store.schema import job_count_deltas, job_counts, jobs, task_summaries
from monitor.filters import JobFilter
from monitor.queries import counts as mcounts

FINALS = {s.value for s in FINAL_STATES}
VOs = tuple[str, ...] | None


def summaries(conn: Connection) -> dict[tuple[int, str], tuple[int, float, float, float]]:
    """``{(task, vo): (active, active_last, final_last, last)}`` as stored."""
    s = task_summaries
    return {
        (int(r.task_id), r.vo): (int(r.active), float(r.active_last), float(r.final_last), float(r.last))
        for r in conn.execute(select(s))
    }


def assert_summaries_exact(conn: Connection) -> None:
    """The summaries equal their definition over the folded task counters; with no delta
    pending, ``active`` and ``final_last`` also equal a recount of the jobs."""
    want: dict[tuple[int, str], list[float]] = {}
    for r in conn.execute(select(job_counts).where(job_counts.c.facet == "taskid")):
        slot = want.setdefault((int(r.value), r.vo), [0, 0.0, 0.0])
        if r.width == 0:
            slot[0] += int(r.n)
            if r.n:
                slot[1] = max(slot[1], float(r.last))
        elif r.n:
            slot[2] = max(slot[2], float(r.last))
    assert summaries(conn) == {k: (int(a), al, fl, max(al, fl)) for k, (a, al, fl) in want.items()}
    if conn.execute(select(job_count_deltas.c.id).limit(1)).first() is None:
        active: Counter[tuple[int, str]] = Counter()
        final_last: dict[tuple[int, str], float] = {}
        for j in conn.execute(select(jobs)):
            key = (int(j.task_id), j.vo)
            if j.status in FINALS:
                final_last[key] = max(final_last.get(key, 0.0), float(j.modification_time))
            else:
                active[key] += 1
        got = summaries(conn)
        assert {k: v[0] for k, v in got.items() if v[0]} == dict(+active)
        assert {k: v[2] for k, v in got.items() if v[2]} == final_last


def windows(conn: Connection) -> list[JobFilter]:
    """Windows from the epoch (every bucket) and starting inside the workload's hours, mid-hour and
    on an hour's first second, so the partial head hour, whole hours and days all count."""
    times = sorted(float(t) for t in conn.execute(select(jobs.c.modification_time)).scalars())
    now = times[-1] + 10.0
    starts = [times[len(times) // 3] + 0.5, times[(2 * len(times)) // 3] - 1.0, (times[len(times) // 2] // 3600) * 3600]
    return [JobFilter(hours=now / 3600.0, now=now), *(JobFilter(hours=(now - s) / 3600.0, now=now) for s in starts)]


def assert_task_pages_exact(conn: Connection, vos: VOs) -> None:
    """:func:`counts.task_page` of ``vos`` (None: all) equals ranking every task's counter rows, and a recount."""
    for flt in windows(conn):
        states, last = mcounts.facet_states_last(conn, flt, "taskid", vos=vos)
        ranked = sorted((t for t, st in states.items() if sum(st.values())), key=lambda t: (-last[t], -int(t)))
        recount: dict[str, Counter[str]] = defaultdict(Counter)
        for j in conn.execute(select(jobs)):
            if (vos is None or j.vo in vos) and (j.status not in FINALS or j.modification_time >= flt.since):
                recount[str(j.task_id)][j.status] += 1
        assert {t: dict(recount[t]) for t in ranked} == {t: states[t] for t in ranked}
        assert set(ranked) == set(recount), (vos, flt.since)
        for start, stop in ((0, 1), (0, 2), (1, 3), (2, len(ranked) + 3), (0, len(ranked) + 3)):
            rows, total = mcounts.task_page(conn, flt, start, stop, vos=vos)
            assert [t for t, _, _ in rows] == ranked[start:stop], (vos, flt.since, start)
            assert [(st, key) for _, st, key in rows] == [(states[t], last[t]) for t in ranked[start:stop]]
            assert total == len(ranked) == mcounts.count_tasks(conn, flt, vos=vos)


def task_vos(conn: Connection) -> dict[int, set[Any]]:
    """The VOs each task's jobs belong to (the workload's tasks span both VOs)."""
    out: dict[int, set[Any]] = defaultdict(set)
    for task, vo in conn.execute(select(jobs.c.task_id, jobs.c.vo).distinct()):
        out[int(task)].add(vo)
    return out
