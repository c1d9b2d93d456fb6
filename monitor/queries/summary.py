"""Summary pages: tasks, sites/queues, pilots and workers, errors, users (datasets: :mod:`monitor.queries.ddm`).

All job counts are GROUP BYs over the time window (``modification_time >= since``, indexed), or
over the non-final states (few rows at any time, indexed by status); none reads every job.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from typing import Any

from sqlalchemy import BigInteger, Connection, column, func, select, values

from ailuro.vocabulary import QUEUED_WORKER_STATES
from dispatcher.convert import FINAL_WORKER_STATES
from dispatcher.states import FINAL_STATES, JobState
from dispatcher.store import errors as job_errors
from dispatcher.store import factories
from dispatcher.store.pilots import PILOT_STALE_S, connected_clause
from dispatcher.store.schema import jobs, pilots, workers
from monitor.filters import NO_ERROR, JobFilter, Viewer, job_conditions, queue_clause
from monitor.queries import counts, placement
from monitor.queries.errors import CODE_NAMES, component_name, errors_by_job

ACTIVE_STATES = tuple(s.value for s in JobState if s not in FINAL_STATES)
FINAL_STATE_VALUES = tuple(s.value for s in FINAL_STATES)
ALL_STATES = tuple(s.value for s in JobState)
ERROR_SCAN_LIMIT = 50_000
"""At most this many failed jobs (newest first) are decoded for the error summary."""
EXAMPLES_PER_ERROR = 5
LIST_LIMIT = 500


def _status_matrix(conn: Connection, key: Any, conds: list[Any]) -> dict[Any, dict[str, int]]:
    out: dict[Any, dict[str, int]] = defaultdict(dict)
    for k, status, n in conn.execute(
        select(key, jobs.c.status, func.count()).where(*conds).group_by(key, jobs.c.status)
    ):
        out[k][status] = int(n)
    return out


FAILED_STATES = ("failed", "cancelled", "closed")
"""Final states that are not success: a task's bar shows them apart from the finished jobs."""


def _task(task_id: Any, owner: str, created: Any, modified: Any, states: dict[str, int]) -> dict[str, Any]:
    n = sum(states.values())
    finished = states.get("finished", 0)
    failed = sum(states.get(s, 0) for s in FAILED_STATES)
    return {
        "taskid": int(task_id),
        "produsername": owner,
        "created": created,
        "modified": modified,
        "njobs": n,
        "states": states,
        "nfinished": finished,
        "nfailed": failed,
        # "done" is finished work only; failed jobs are counted apart, never as progress
        "progress": finished / n if n else 0.0,
        "failed_fraction": failed / n if n else 0.0,
    }


def tasks_page(conn: Connection, flt: JobFilter, viewer: Viewer, page: int = 1) -> dict[str, Any]:
    """Tasks with jobs in the window, latest change first, :data:`LIST_LIMIT` a page, with the total."""
    depth = page * LIST_LIMIT
    if counts.uses_counters(flt, viewer):
        tasks, total = _tasks_from_counters(conn, flt, depth, counts.counter_vos(viewer))
    else:
        tasks, total = _tasks_from_jobs(conn, flt, viewer, depth)
    return {
        "filter": flt.as_dict(),
        "tasks": tasks,
        "total": total,
        "pagenum": page,
        "limit": LIST_LIMIT,
        "pages": max(1, -(-total // LIST_LIMIT)),
    }


def _tasks_from_jobs(conn: Connection, flt: JobFilter, viewer: Viewer, depth: int) -> tuple[list[dict[str, Any]], int]:
    """One page (the last :data:`LIST_LIMIT` of the top ``depth``) of tasks counted from ``jobs``, and the total."""
    conds = job_conditions(flt, viewer)
    total = int(conn.execute(select(func.count(func.distinct(jobs.c.task_id))).where(*conds)).scalar_one())
    stmt = (
        select(
            jobs.c.task_id,
            func.min(jobs.c.owner),
            func.min(jobs.c.creation_time),
            func.max(jobs.c.modification_time),
        )
        .where(*conds)
        .group_by(jobs.c.task_id)
        .order_by(func.max(jobs.c.modification_time).desc(), jobs.c.task_id.desc())
        .limit(depth)
    )
    rows = conn.execute(stmt).all()[depth - LIST_LIMIT :]
    matrix = _status_matrix(conn, jobs.c.task_id, [*conds, jobs.c.task_id.in_([r[0] for r in rows])]) if rows else {}
    tasks = [
        _task(task_id, owner, created, modified, matrix.get(task_id, {})) for task_id, owner, created, modified in rows
    ]
    return tasks, total


def _tasks_from_counters(
    conn: Connection, flt: JobFilter, depth: int, vos: counts.VOs
) -> tuple[list[dict[str, Any]], int]:
    """One page of tasks (of ``vos``) from the task counters, and the total.

    Unfiltered, the page ranks the per-task summaries (:func:`counts.task_page`); filtered by
    state, it sums the task counters of those states. A task's owner and creation come from its
    first job."""
    if counts.all_statuses(flt) is None:
        rows, total = counts.task_page(conn, flt, depth - LIST_LIMIT, depth, vos=vos)
        ranked = [(task, states) for task, states, _ in rows]
        last = {task: latest for task, _, latest in rows}
    else:
        matrix, last = counts.latest_tasks(conn, flt, depth, vos=vos)
        ranked = sorted(
            ((task, states) for task, states in matrix.items() if sum(states.values())),
            key=lambda kv: (-last.get(kv[0], 0.0), -int(kv[0])),
        )[depth - LIST_LIMIT : depth]
        total = counts.count_tasks(conn, flt, vos=vos)
    ids = [int(task) for task, _ in ranked]
    first: dict[int, Any] = {}
    if ids:
        if conn.dialect.name == "postgresql":
            # each task's first job by one index probe (ix_jobs_task), not a GROUP BY over all its jobs
            task = values(column("id", BigInteger), name="page_tasks").data([(i,) for i in ids])
            probe = select(jobs.c.panda_id).where(jobs.c.task_id == task.c.id).order_by(jobs.c.panda_id).limit(1)
            probes = select(probe.correlate(task).scalar_subquery()).select_from(task)
            firsts: Any = [int(i) for i in conn.execute(probes).scalars() if i is not None]
        else:  # SQLite has no column names for a VALUES alias; its MIN per group reads the index anyway
            firsts = (
                select(func.min(jobs.c.panda_id))
                .where(jobs.c.task_id.in_(ids))
                .group_by(jobs.c.task_id)
                .scalar_subquery()
            )
        stmt = select(jobs.c.task_id, jobs.c.owner, jobs.c.creation_time).where(jobs.c.panda_id.in_(firsts))
        first = {int(r.task_id): r for r in conn.execute(stmt)}
    tasks = []
    for task, states in ranked:
        row = first.get(int(task))
        tasks.append(
            _task(
                task,
                row.owner if row is not None else "",
                row.creation_time if row is not None else None,
                last.get(task),
                states,
            )
        )
    return tasks, total


def sites_page(conn: Connection, flt: JobFilter, viewer: Viewer) -> dict[str, Any]:
    """Per queue: jobs in every non-final state (now), finished/failed in the window, pilots and workers."""
    vos = counts.counter_vos(viewer)
    by_site = counts.facet_states(conn, flt, ["computingsite"], statuses=ALL_STATES, vos=vos)["computingsite"]
    active = {site: {s: n for s, n in st.items() if s in ACTIVE_STATES} for site, st in by_site.items()}
    final = {site: {s: n for s, n in st.items() if s in FINAL_STATE_VALUES} for site, st in by_site.items()}
    connected: dict[str, int] = {
        q: int(n)
        for q, n in conn.execute(
            select(pilots.c.queue, func.count())
            .where(connected_clause(now=flt.now), queue_clause(pilots.c.queue, viewer))
            .group_by(pilots.c.queue)
        )
    }
    by_backend: dict[str, dict[str, dict[str, int]]] = defaultdict(lambda: defaultdict(dict))
    for queue, backend, state, n in conn.execute(
        select(workers.c.queue, workers.c.backend, workers.c.state, func.count())
        .where(workers.c.state.notin_(FINAL_WORKER_STATES), queue_clause(workers.c.queue, viewer))
        .group_by(workers.c.queue, workers.c.backend, workers.c.state)
    ):
        by_backend[queue][backend or "?"][state] = int(n)
    health = factories.queue_health(conn)
    if not viewer.is_admin:  # a factory's health of a queue serving other VOs is theirs
        health = {q: h for q, h in health.items() if q in viewer.queues}
    names = sorted(set(active) | set(final) | set(connected) | set(by_backend) | set(health))
    wanted = flt.values.get("computingsite")
    if wanted:
        names = [n for n in names if n in wanted]
    status = placement.queue_statuses(conn, names)
    sites = []
    for name in names:
        states = {**active.get(name, {}), **final.get(name, {})}
        finished, failed = states.get("finished", 0), states.get("failed", 0)
        backends = {b: dict(s) for b, s in by_backend.get(name, {}).items()}
        sites.append(
            {
                "computingsite": name,
                "states": states,
                "activated": states.get("activated", 0),
                "running": sum(states.get(s, 0) for s in ("sent", "starting", "running", "holding", "transferring")),
                "finished": finished,
                "failed": failed,
                "failure_rate": failed / (finished + failed) if finished + failed else None,
                "pilots_connected": connected.get(name, 0),
                "workers": backends,
                "pilots_queued": sum(sum(s.get(w.value, 0) for w in QUEUED_WORKER_STATES) for s in backends.values()),
                "pilots_running": sum(s.get("running", 0) for s in backends.values()),
                # pilots that died at start in a row, as the factories report them (flagged at their threshold)
                "start_failures": health.get(name, (0, False, ""))[0],
                "flagged": health.get(name, (0, False, ""))[1],
                "flag_reason": health.get(name, (0, False, ""))[2],
                # online/offline/test/brokeroff with who, when and why it was last changed
                "queue_status": status[name],
            }
        )
    return {"filter": flt.as_dict(), "sites": sites}


def pilots_page(conn: Connection, flt: JobFilter, viewer: Viewer, page: int = 1) -> dict[str, Any]:
    """Pilots seen in the window and workers updated in it, newest first, :data:`LIST_LIMIT` a page.

    ``computingsite`` narrows both to those queues (a pilot's queue is the site it serves); a
    viewer who is not an admin sees the queues that serve their VOs (:attr:`Viewer.queues`).
    """
    queues = flt.values.get("computingsite", ())
    p_where = [
        pilots.c.last_seen >= flt.since,
        queue_clause(pilots.c.queue, viewer),
        *([pilots.c.queue.in_(queues)] if queues else []),
    ]
    w_where = [
        workers.c.update_time >= flt.since,
        queue_clause(workers.c.queue, viewer),
        *([workers.c.queue.in_(queues)] if queues else []),
    ]
    offset = (page - 1) * LIST_LIMIT
    pilot_total = int(conn.execute(select(func.count()).select_from(pilots).where(*p_where)).scalar_one())
    worker_total = int(conn.execute(select(func.count()).select_from(workers).where(*w_where)).scalar_one())
    pilot_rows = conn.execute(
        select(pilots).where(*p_where).order_by(pilots.c.last_seen.desc()).limit(LIST_LIMIT).offset(offset)
    ).all()
    worker_rows = conn.execute(
        select(workers).where(*w_where).order_by(workers.c.update_time.desc()).limit(LIST_LIMIT).offset(offset)
    ).all()
    worker_states: dict[str, dict[str, int]] = defaultdict(dict)
    for backend, state, n in conn.execute(
        select(workers.c.backend, workers.c.state, func.count())
        .where(*w_where)
        .group_by(workers.c.backend, workers.c.state)
    ):
        worker_states[backend or "?"][state] = int(n)
    return {
        "filter": flt.as_dict(),
        "pagenum": page,
        "limit": LIST_LIMIT,
        "pilots_total": pilot_total,
        "workers_total": worker_total,
        "pages": max(1, -(-max(pilot_total, worker_total) // LIST_LIMIT)),
        "pilots": [
            {
                "pilotid": p.pilot_id,
                "queue": p.queue,
                "node": p.node,
                "batchid": p.batch_id,
                "version": p.version,
                "dispatcherid": p.dispatcher_id,
                "connected": bool(p.connected) and p.last_seen >= flt.now - PILOT_STALE_S,
                "firstseen": p.first_seen,
                "lastseen": p.last_seen,
            }
            for p in pilot_rows
        ],
        "workers": [
            {
                "workerid": w.worker_id,
                "queue": w.queue,
                "backend": w.backend,
                "factoryid": w.factory_id,
                "batchid": w.batch_id,
                "state": w.state,
                "diag": w.diag,
                "submittime": w.submit_time,
                "updatetime": w.update_time,
            }
            for w in worker_rows
        ],
        "worker_states": {b: dict(s) for b, s in worker_states.items()},
    }


def errors_page(conn: Connection, flt: JobFilter, viewer: Viewer) -> dict[str, Any]:
    """Failed jobs in the window summarized by (component, code), with sites and example jobs.

    Without counters, the newest :data:`ERROR_SCAN_LIMIT` failed jobs of the window are read with
    their ``job_errors`` rows (``truncated`` says when there were more).
    """
    values = dict(flt.values)
    values.setdefault("jobstatus", ("failed",))
    scoped = replace(flt, values=values)
    data = (
        _errors_from_counters(conn, scoped, counts.counter_vos(viewer))
        if counts.uses_counters(scoped, viewer)
        else _errors_scanned(conn, scoped, viewer)
    )
    if scoped.has_error_filter:
        data["errors"] = [g for g in data["errors"] if scoped.error_matches([g])]
    return data


def _errors_scanned(conn: Connection, scoped: JobFilter, viewer: Viewer) -> dict[str, Any]:
    """The error summary decoded from the newest :data:`ERROR_SCAN_LIMIT` matching jobs."""
    stmt = (
        select(jobs.c.panda_id, jobs.c.computing_site, jobs.c.owner)
        .where(*job_conditions(scoped, viewer))
        .order_by(jobs.c.modification_time.desc())
        .limit(ERROR_SCAN_LIMIT + 1)
    )
    rows = conn.execute(stmt).all()
    truncated = len(rows) > ERROR_SCAN_LIMIT
    groups: dict[tuple[str, int], dict[str, Any]] = {}
    rows = rows[:ERROR_SCAN_LIMIT]
    by_job = errors_by_job(conn, [int(r.panda_id) for r in rows])
    for r in rows:
        errs = by_job.get(int(r.panda_id)) or [NO_ERROR]
        for e in errs:
            g = groups.setdefault(
                (e["component"], e["code"]),
                {
                    "component": e["component"],
                    "code": e["code"],
                    "name": e["name"],
                    "count": 0,
                    "sites": {},
                    "users": {},
                    "examples": [],
                },
            )
            g["count"] += 1
            g["sites"][r.computing_site] = g["sites"].get(r.computing_site, 0) + 1
            g["users"][r.owner] = g["users"].get(r.owner, 0) + 1
            if len(g["examples"]) < EXAMPLES_PER_ERROR:
                g["examples"].append({"pandaid": int(r.panda_id), "computingsite": r.computing_site, "diag": e["diag"]})
    summary = sorted(groups.values(), key=lambda g: (-g["count"], g["component"], g["code"]))
    return {
        "filter": scoped.as_dict(),
        "jobs_scanned": len(rows),
        "truncated": truncated,
        "errors": summary,
    }


def _errors_from_counters(conn: Connection, flt: JobFilter, vos: counts.VOs) -> dict[str, Any]:
    """The error summary (of ``vos``) from the error counters, plus the window's partial first hour from ``jobs``."""
    statuses = [st for st in flt.values["jobstatus"] if st in FINAL_STATE_VALUES]
    groups: dict[tuple[int, int], dict[str, Any]] = {}
    candidates: dict[tuple[int, int], set[int]] = defaultdict(set)

    def group(comp: int, code: int) -> dict[str, Any]:
        g = groups.get((comp, code))
        if g is None:
            name = CODE_NAMES.get(code, "") if comp or code else "no_error_recorded"
            g = groups[(comp, code)] = {
                "component": component_name(comp) if comp or code else "unknown",
                "code": code,
                "name": name,
                "count": 0,
                "sites": {},
                "users": {},
                "examples": [],
            }
        return g

    rows, window = counts.error_rows(conn, flt, statuses, vos=vos)
    for facet, _status, comp, code, value, n, example in rows:
        g = group(int(comp), int(code))
        key = "sites" if facet == "computingsite" else "users"
        g[key][value] = g[key].get(value, 0) + int(n)
        if facet == "computingsite":
            g["count"] += int(n)
        candidates[(int(comp), int(code))].add(int(example))
    head = window.head_rows(conn, [jobs.c.panda_id, jobs.c.computing_site, jobs.c.owner], statuses, vos=vos)
    head_errors = job_errors.fetch(conn, [int(r.panda_id) for r in head])
    for r in head:
        errs = {(int(e.component), int(e.code)) for e in head_errors.get(int(r.panda_id), [])} or {(0, 0)}
        for comp, code in errs:
            g = group(comp, code)
            g["count"] += 1
            g["sites"][r.computing_site] = g["sites"].get(r.computing_site, 0) + 1
            g["users"][r.owner] = g["users"].get(r.owner, 0) + 1
            candidates[(comp, code)].add(int(r.panda_id))
    # examples: the newest jobs seen per (error, site or owner); their diagnostics from the jobs rows
    wanted = {key: sorted(ids, reverse=True)[:EXAMPLES_PER_ERROR] for key, ids in candidates.items()}
    ids = sorted({pid for chosen in wanted.values() for pid in chosen})
    details: dict[int, Any] = {}
    for start in range(0, len(ids), 900):
        stmt = select(jobs.c.panda_id, jobs.c.computing_site).where(jobs.c.panda_id.in_(ids[start : start + 900]))
        details.update({int(r.panda_id): r for r in conn.execute(stmt)})
    example_errors = job_errors.fetch(conn, ids)
    for key, chosen in wanted.items():
        for pid in chosen:
            r = details.get(pid)
            if r is None:
                continue
            diag = next((e.diag for e in example_errors.get(pid, []) if (e.component, e.code) == key), "")
            groups[key]["examples"].append({"pandaid": pid, "computingsite": r.computing_site, "diag": diag})
    jobs_counted = sum(
        n
        for states in counts.facet_states(conn, flt, ["computingsite"], vos=vos)["computingsite"].values()
        for n in states.values()
    )
    summary = sorted(groups.values(), key=lambda g: (-g["count"], g["component"], g["code"]))
    return {"filter": flt.as_dict(), "jobs_scanned": jobs_counted, "truncated": False, "errors": summary}


def users_page(conn: Connection, flt: JobFilter, viewer: Viewer) -> dict[str, Any]:
    """Users with jobs in the window: counts per state and the last activity."""
    if counts.uses_counters(flt, viewer):
        matrix, last = counts.facet_states_last(conn, flt, "produsername", vos=counts.counter_vos(viewer))
        return {"filter": flt.as_dict(), "users": _users(matrix, last)}
    conds = job_conditions(flt, viewer)
    matrix = _status_matrix(conn, jobs.c.owner, conds)
    last = dict(
        conn.execute(
            select(jobs.c.owner, func.max(jobs.c.modification_time)).where(*conds).group_by(jobs.c.owner)
        ).all()
    )
    return {"filter": flt.as_dict(), "users": _users(matrix, last)}


def _users(matrix: dict[Any, dict[str, int]], last: dict[Any, Any]) -> list[dict[str, Any]]:
    users = [
        {"produsername": name, "njobs": sum(states.values()), "states": states, "lastactivity": last.get(name)}
        for name, states in matrix.items()
        if sum(states.values())
    ]
    users.sort(key=lambda u: (-u["njobs"], u["produsername"]))
    return users
