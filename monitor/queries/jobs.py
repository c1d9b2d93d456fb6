"""Jobs list with facet counts, and one job in detail."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, and_, func, select, union_all

from dispatcher import jobfields
from dispatcher.store import errors as job_errors
from dispatcher.store.schema import files, job_events, jobs, pilots, workers
from monitor.filters import (
    FACETS,
    SORT_KEYS,
    JobFilter,
    Page,
    Viewer,
    filter_conditions,
    job_conditions,
    visibility_clause,
    window_branches,
)
from monitor.queries.counts import counter_vos, facet_states, uses_counters
from monitor.queries.errors import errors_by_job

FACET_TOP = 40
"""Values shown per facet (the most frequent); the rest are summed into ``other``."""

LIST_FIELDS = jobfields.fields_by_key(
    "pandaid",
    "jobname",
    "produsername",
    "taskid",
    "transformation",
    "jobstatus",
    "creationtime",
    "starttime",
    "endtime",
    "modificationtime",
    "computingsite",
    "currentpriority",
    "attemptnr",
    "prodsourcelabel",
    "senttime",
)
"""What a row of the jobs table shows (the job page adds every other field)."""
DETAIL_FIELDS = tuple(f for f in jobfields.FIELDS if f.key and f not in LIST_FIELDS)
LIST_COLUMNS = tuple(jobs.c[f.column] for f in LIST_FIELDS)

ERROR_SCAN_LIMIT = 50_000
"""An error-filtered list decodes at most this many of the window's newest jobs (``truncated`` says so)."""
DIAG_SHORT = 80
"""Characters of the first error's diagnosis shown in the jobs table (the job page has all of it)."""


def facet_counts(conn: Connection, flt: JobFilter, viewer: Viewer) -> dict[str, list[dict[str, Any]]]:
    """``{facet: [{value, count}, ...]}`` most frequent first, over the filtered time window.

    Unfiltered and state-filtered views sum the maintained counters (:mod:`monitor.queries.counts`).
    Other filters are selective, so they count the matching rows through the jobs indexes:
    PostgreSQL all facets in one pass (GROUPING SETS), SQLite one GROUP BY of all facet columns
    per window half.
    """
    counts: dict[str, dict[str, int]] = {name: {} for name in FACETS}
    if uses_counters(flt, viewer):
        others = [name for name in FACETS if name != "jobstatus"]
        per_facet = facet_states(conn, flt, others, vos=counter_vos(viewer))
        for name, values in per_facet.items():
            for value, states in values.items():
                counts[name][value] = sum(states.values())
                if name == others[0]:  # every job has exactly one site: its rows give the state totals
                    for status, n in states.items():
                        counts["jobstatus"][status] = counts["jobstatus"].get(status, 0) + n
        return _ranked(counts)
    conds = job_conditions(flt, viewer)
    columns = list(FACETS.values())
    if conn.dialect.name == "postgresql":
        stmt = select(*columns, func.count()).where(*conds).group_by(func.grouping_sets(*columns))
        for row in conn.execute(stmt):
            # columns are NOT NULL, so the one non-NULL value names the grouping set of the row
            for name, value in zip(FACETS, row[:-1], strict=True):
                if value is not None:
                    counts[name][str(value)] = int(row[-1])
                    break
    else:
        # SQLite has no GROUPING SETS: one GROUP BY over every facet column per window half (each half
        # an index range on status, where an OR of them would scan), summed per facet here; one pass
        # over the matching rows instead of one per facet
        base = filter_conditions(flt, viewer)
        for half in window_branches(flt.since):
            for row in conn.execute(select(*columns, func.count()).where(*base, half).group_by(*columns)):
                for name, value in zip(FACETS, row[:-1], strict=True):
                    counts[name][str(value)] = counts[name].get(str(value), 0) + int(row[-1])
    return _ranked(counts)


def _ranked(counts: dict[str, dict[str, int]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for name, values in counts.items():
        ranked = sorted(values.items(), key=lambda kv: (-kv[1], kv[0]))
        shown = [{"value": v, "count": n} for v, n in ranked[:FACET_TOP]]
        rest = sum(n for _, n in ranked[FACET_TOP:])
        if rest:
            shown.append({"value": None, "count": rest, "other_values": len(ranked) - FACET_TOP})
        out[name] = shown
    return out


def job_rows(conn: Connection, rows: list[Any]) -> list[dict[str, Any]]:
    """Rows of :data:`LIST_COLUMNS` as the jobs table shows them (their errors read in one go)."""
    errs = errors_by_job(conn, [int(r.panda_id) for r in rows])
    return [_job_row(r, errs.get(int(r.panda_id), [])) for r in rows]


def _job_row(r: Any, errors: list[dict[str, Any]]) -> dict[str, Any]:
    first = errors[0] if errors else None
    return {
        **jobfields.monitor_json(r, LIST_FIELDS),
        # a job that went straight from sent to its end never reported running: its start is when it was sent
        "startedsent": r.start_time is None and r.sent_time is not None,
        "duration_s": _duration(r),
        "error": None if first is None else {**first, "diag": first["diag"][:DIAG_SHORT], "more": len(errors) - 1},
    }


def _duration(r: Any) -> float | None:
    """Seconds from start (or sent, when the job never reported running) to end (or last change)."""
    start = r.start_time if r.start_time is not None else r.sent_time
    if start is None:
        return None
    end = r.end_time if r.end_time is not None else r.modification_time
    return max(0.0, float(end) - float(start)) if end is not None else None


def _ordered(key: Any, pid: Any, descending: bool) -> list[Any]:
    return [key.desc(), pid.desc()] if descending else [key.asc(), pid.asc()]


def list_jobs(conn: Connection, flt: JobFilter, page: Page, viewer: Viewer) -> list[dict[str, Any]]:
    """One page of jobs, sorted by ``page.sort`` (PandaID breaks ties).

    The window's two halves (non-final jobs; jobs final since the window start) are disjoint, so
    the page is the top of the union of each half's own top ``offset + limit``. Each half sorts
    through its own index (for ``sort=created``: the partial index of live jobs and an index-only
    range of the final ones, migration 0006) instead of sorting the whole window; the PandaIDs
    found first, the page's rows are then read by primary key.
    """
    key = SORT_KEYS[page.sort]
    base = filter_conditions(flt, viewer)
    depth = page.offset + page.limit
    halves = [
        select(jobs.c.panda_id, key.label("k"))
        .where(*base, half)
        .order_by(*_ordered(key, jobs.c.panda_id, page.descending))
        .limit(depth)
        .subquery()
        for half in window_branches(flt.since)
    ]
    both = union_all(*(select(h.c.panda_id, h.c.k) for h in halves)).subquery("window")
    ids_stmt = (
        select(both.c.panda_id)
        .order_by(*_ordered(both.c.k, both.c.panda_id, page.descending))
        .limit(page.limit)
        .offset(page.offset)
    )
    ids = [int(pid) for pid in conn.execute(ids_stmt).scalars()]
    if not ids:
        return []
    rows = {int(r.panda_id): r for r in conn.execute(select(*LIST_COLUMNS).where(jobs.c.panda_id.in_(ids)))}
    return job_rows(conn, [rows[pid] for pid in ids if pid in rows])


def error_filtered(conn: Connection, flt: JobFilter, viewer: Viewer) -> tuple[list[Any], bool]:
    """The window's jobs with the filter's error (newest :data:`ERROR_SCAN_LIMIT` scanned), and if cut.

    The window's jobs (those with errors, unless the filter also matches jobs without) are read
    newest first (bounded), and matched with their ``job_errors`` rows here.
    """
    conds = job_conditions(flt, viewer)
    if not flt.may_match_no_error:
        conds.append(job_errors.has_errors())
    stmt = select(*LIST_COLUMNS).where(*conds).order_by(jobs.c.modification_time.desc()).limit(ERROR_SCAN_LIMIT + 1)
    rows = conn.execute(stmt).all()
    truncated = len(rows) > ERROR_SCAN_LIMIT
    rows = rows[:ERROR_SCAN_LIMIT]
    errs = errors_by_job(conn, [int(r.panda_id) for r in rows])
    return [r for r in rows if flt.error_matches(errs.get(int(r.panda_id), []))], truncated


def _error_page(conn: Connection, flt: JobFilter, page: Page, viewer: Viewer) -> tuple[Any, list[Any], bool]:
    """Facets and one sorted page of an error-filtered view, from :func:`error_filtered`."""
    rows, truncated = error_filtered(conn, flt, viewer)
    counts: dict[str, dict[str, int]] = {name: {} for name in FACETS}
    attrs = {name: col.name for name, col in FACETS.items()}
    for r in rows:
        for name, attr in attrs.items():
            value = str(getattr(r, attr))
            counts[name][value] = counts[name].get(value, 0) + 1
    key = SORT_KEYS[page.sort].name
    # a NULL sort key (a job not started yet) sorts below every value
    rows.sort(key=lambda r: (getattr(r, key) is not None, getattr(r, key) or 0, r.panda_id), reverse=page.descending)
    return _ranked(counts), rows[page.offset : page.offset + page.limit], truncated


def jobs_page(conn: Connection, flt: JobFilter, page: Page, viewer: Viewer) -> dict[str, Any]:
    """The jobs page: facets, the total in the window, and one page of rows."""
    truncated = False
    if flt.has_error_filter:
        facets, rows, truncated = _error_page(conn, flt, page, viewer)
        listed = job_rows(conn, rows)
    else:
        facets = facet_counts(conn, flt, viewer)
        listed = list_jobs(conn, flt, page, viewer)
    total = sum(f["count"] for f in facets["jobstatus"])
    return {
        "filter": flt.as_dict(),
        "sort": page.sort,
        "order": "desc" if page.descending else "asc",
        "pagenum": page.page,
        "limit": page.limit,
        "total": total,
        "pages": max(1, -(-total // page.limit)),
        "facets": facets,
        "jobs": listed,
        "truncated": truncated,
    }


def _file_row(r: Any) -> dict[str, Any]:
    return {
        "lfn": r.lfn,
        "type": r.type,
        "size": int(r.size),
        "status": r.status,
        "dataset": r.dataset,
        "scope": r.scope,
        "adler32": r.adler32,
        "guid": r.guid,
        "pfn": r.pfn,
        "destination_se": r.destination_se,
    }


def job_detail(conn: Connection, panda_id: int, viewer: Viewer) -> dict[str, Any] | None:
    """Everything about one job, or None when it does not exist (or the viewer may not see it)."""
    row = conn.execute(select(jobs).where(jobs.c.panda_id == panda_id, visibility_clause(viewer))).first()
    if row is None:
        return None
    errors = errors_by_job(conn, [panda_id]).get(panda_id, [])
    job = _job_row(row, errors)
    job.update(jobfields.monitor_json(row, DETAIL_FIELDS))
    file_rows = conn.execute(select(files).where(files.c.panda_id == panda_id).order_by(files.c.file_id)).all()
    events = conn.execute(
        select(job_events).where(job_events.c.panda_id == panda_id).order_by(job_events.c.event_id)
    ).all()
    worker = None
    if row.pilot_id:
        p = conn.execute(select(pilots).where(pilots.c.pilot_id == row.pilot_id)).first()
        if p is not None:
            worker = conn.execute(
                select(workers.c.worker_id, workers.c.backend, workers.c.state).where(
                    and_(workers.c.queue == p.queue, workers.c.batch_id == p.batch_id, p.batch_id != "")
                )
            ).first()
    return {
        "job": job,
        "errors": errors,
        "files": [_file_row(f) for f in file_rows],
        "events": [
            {
                "time": e.time,
                "from": e.from_status,
                "to": e.to_status,
                "actor": e.actor,
                "reason": e.reason,
                "attemptnr": int(e.attempt_nr),
                "leaseepoch": int(e.lease_epoch),
            }
            for e in events
        ],
        "worker": None
        if worker is None
        else {"workerid": worker.worker_id, "backend": worker.backend, "state": worker.state},
    }
