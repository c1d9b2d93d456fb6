"""Per-task summaries of the task counters (``task_summaries``, migration 0017), for the monitor's ``/tasks/``.

The task counters (``job_counts`` rows of facet ``taskid``) say how many jobs of each task are in
each state, per VO and bucket. To rank tasks by their latest change the monitor used to sum every
task's rows of the window on each request: with ~20,000 tasks each holding a job not final yet,
that was most of a 500 ms page at a million jobs. One row per (task, VO) here holds what the
ranking needs, and nothing that depends on the window:

- ``active``: the task's jobs not final yet (its width-0 counter rows summed);
- ``active_last``: the largest ``last`` of those width-0 rows that still hold jobs (0 when none);
- ``final_last``: the largest ``last`` of its final-bucket rows, i.e. when a job of it last
  became final (0 when none; final states are terminal, so it only grows);
- ``last``: the larger of the two.

So for a window starting at ``since`` the task is in it exactly when ``active > 0`` or
``last >= since``, and its latest change in the window (what the counter rows give) is ``last``
when ``last >= since``, else ``active_last``: a final-bucket row is in the window exactly when a
job of it ended at or after ``since``, and the newest such row's ``last`` is ``final_last``.

:func:`update` is called by the fold after it upserted the counters, in the same transaction,
for the (task, VO) pairs whose deltas it folded: it recomputes ``active``/``active_last`` from
their width-0 rows (primary-key reads) and raises ``final_last`` to the newest final delta.
:func:`rebuild` recomputes every row from the counters (the counters' rebuild and migration
0017's backfill). Readers add the tasks with pending deltas themselves (``monitor/queries``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, delete, inspect, text

from dispatcher.store.schema import task_summaries

TASK_FACET = "taskid"
_CHUNK = 2000  # rows per statement: 6 bind parameters each, well under both backends' limits


def _greatest(conn: Connection) -> str:
    """The SQL function returning the largest of its arguments (PostgreSQL ``GREATEST``, SQLite ``MAX``)."""
    return "GREATEST" if conn.dialect.name == "postgresql" else "MAX"


def exists(conn: Connection) -> bool:
    """Whether migration 0017 made the table (older migrations' backfills run before it exists)."""
    return inspect(conn).has_table(task_summaries.name)


def update(conn: Connection, touched: Iterable[tuple[str, str]], final_last: dict[tuple[str, str], float]) -> None:
    """Refresh the summaries of the (task value, VO) pairs ``touched`` by a fold that already upserted
    their counter rows; ``final_last`` holds the newest ``last`` of each pair's folded final deltas."""
    keys = sorted(set(touched))
    if not keys:
        return
    actives: dict[tuple[str, str], tuple[int, float]] = {}
    for start in range(0, len(keys), _CHUNK):
        chunk = sorted({value for value, _ in keys[start : start + _CHUNK]})
        params: dict[str, Any] = {f"v{i}": v for i, v in enumerate(chunk)}
        names = ", ".join(f":v{i}" for i in range(len(chunk)))
        # the width-0 rows of a task are one primary-key range (facet, 0, 0, value)
        rows = conn.execute(
            text(
                "SELECT value, vo, SUM(n), MAX(CASE WHEN n <> 0 THEN last ELSE 0 END) FROM job_counts "
                f"WHERE facet = '{TASK_FACET}' AND width = 0 AND bucket = 0 AND value IN ({names}) GROUP BY value, vo"
            ),
            params,
        )
        for value, vo, n, last in rows:
            actives[(value, vo)] = (int(n), float(last or 0.0))
    greatest = _greatest(conn)
    for start in range(0, len(keys), _CHUNK):
        params = {}
        values = []
        for i, key in enumerate(keys[start : start + _CHUNK]):
            active, active_last = actives.get(key, (0, 0.0))
            final = final_last.get(key, 0.0)
            params.update({f"t{i}": int(key[0]), f"o{i}": key[1], f"a{i}": active, f"l{i}": active_last})
            params.update({f"f{i}": final, f"m{i}": max(active_last, final)})
            values.append(f"(:t{i}, :o{i}, :a{i}, :l{i}, :f{i}, :m{i})")
        conn.execute(
            text(
                "INSERT INTO task_summaries (task_id, vo, active, active_last, final_last, last) "
                f"VALUES {', '.join(values)} ON CONFLICT (task_id, vo) DO UPDATE SET active = excluded.active, "
                "active_last = excluded.active_last, "
                f"final_last = {greatest}(task_summaries.final_last, excluded.final_last), "
                f"last = {greatest}(excluded.active_last, excluded.final_last, task_summaries.final_last)"
            ),
            params,
        )


def rebuild(conn: Connection) -> None:
    """Recompute every summary from the folded task counters (pending deltas are folded later)."""
    if not exists(conn):
        return  # an older migration's backfill on the way up: 0017 builds the table from the counters
    conn.execute(delete(task_summaries))
    greatest = _greatest(conn)
    active_last = "MAX(CASE WHEN width = 0 AND n <> 0 THEN last ELSE 0 END)"
    final_last = "MAX(CASE WHEN width > 0 AND n <> 0 THEN last ELSE 0 END)"
    conn.execute(
        text(
            "INSERT INTO task_summaries (task_id, vo, active, active_last, final_last, last) "
            f"SELECT CAST(value AS BIGINT), vo, SUM(CASE WHEN width = 0 THEN n ELSE 0 END), {active_last}, "
            f"{final_last}, {greatest}({active_last}, {final_last}) "
            f"FROM job_counts WHERE facet = '{TASK_FACET}' GROUP BY value, vo"
        )
    )
