"""Pages for one thing: a site (queue), a task, a pilot, a worker; and the header search box.

Each is a handful of indexed reads (site: the claim index on ``computing_site``; task:
``ix_jobs_task``; pilot: ``ix_jobs_pilot``), composed from the list and summary queries so the
numbers agree with the list pages they link to.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote, urlencode

from sqlalchemy import Connection, func, select

from dispatcher.store.schema import files, jobs, pilots, workers
from monitor.filters import MAX_HOURS, JobFilter, Page, Viewer, queue_clause, visibility_clause, window_clause
from monitor.queries import jobs as jobq
from monitor.queries import summary

RECENT_FAILURES = 20
"""Newest failed jobs shown on a site page (the count links to all of them)."""
PILOT_JOBS = 200
"""Jobs listed on a pilot page (newest first; a pilot runs jobs one after another)."""
SEARCH_LIMIT = 20
"""Candidates listed per kind when a search is ambiguous."""
NAME_SEARCH_HOURS = 24.0 * 7
"""Job names have no index: a name is looked up among the jobs of this window (index ranges on state)."""


def site_detail(conn: Connection, site: str, flt: JobFilter, viewer: Viewer) -> dict[str, Any] | None:
    """One queue: its row of the sites page, errors, recent failures and pilots (None if unknown)."""
    scoped = flt.with_value("computingsite", site)
    rows = summary.sites_page(conn, scoped, viewer)["sites"]
    if not rows:
        return None
    failed = scoped.with_value("jobstatus", "failed")
    recent = jobq.list_jobs(conn, failed, Page(sort="modified", limit=RECENT_FAILURES), viewer)
    return {
        "filter": scoped.as_dict(),
        "computingsite": site,
        "site": rows[0],
        "errors": summary.errors_page(conn, failed, viewer)["errors"],
        "recent_failures": recent,
        "pilots": summary.pilots_page(conn, scoped, viewer),
    }


def task_detail(conn: Connection, task_id: int, page: Page, viewer: Viewer) -> dict[str, Any] | None:
    """One task over its whole life: progress (failed apart), jobs by state, files, retry chains, jobs."""
    flt = JobFilter(hours=MAX_HOURS, taskid=task_id)
    conds = [visibility_clause(viewer), jobs.c.task_id == task_id]
    states = {
        str(s): int(n)
        for s, n in conn.execute(select(jobs.c.status, func.count()).where(*conds).group_by(jobs.c.status))
    }
    if not states:
        return None
    first = conn.execute(
        select(jobs.c.owner, jobs.c.creation_time).where(*conds).order_by(jobs.c.panda_id).limit(1)
    ).first()
    last = conn.execute(select(func.max(jobs.c.modification_time)).where(*conds)).scalar_one()
    task = summary._task(task_id, first.owner if first else "", first.creation_time if first else None, last, states)
    ids = select(jobs.c.panda_id).where(*conds).scalar_subquery()
    file_stats = [
        {"type": t, "status": st, "count": int(n), "bytes": int(b or 0)}
        for t, st, n, b in conn.execute(
            select(files.c.type, files.c.status, func.count(), func.sum(files.c.size))
            .where(files.c.panda_id.in_(ids))
            .group_by(files.c.type, files.c.status)
            .order_by(files.c.type, files.c.status)
        )
    ]
    retries = [
        {
            "pandaid": int(r.panda_id),
            "parent": int(r.parent_panda_id),
            "attemptnr": int(r.attempt_nr),
            "jobstatus": r.status,
        }
        for r in conn.execute(
            select(jobs.c.panda_id, jobs.c.parent_panda_id, jobs.c.attempt_nr, jobs.c.status)
            .where(*conds, jobs.c.parent_panda_id != 0)
            .order_by(jobs.c.panda_id.desc())
            .limit(PILOT_JOBS)
        )
    ]
    listing = jobq.jobs_page(conn, flt, page, viewer)
    return {
        "filter": flt.as_dict(),
        "task": task,
        "files": file_stats,
        "retries": retries,
        "jobs": listing["jobs"],
        "total": listing["total"],
        "pagenum": page.page,
        "pages": listing["pages"],
        "limit": page.limit,
    }


def _pilot_row(p: Any) -> dict[str, Any]:
    return {
        "pilotid": p.pilot_id,
        "queue": p.queue,
        "node": p.node,
        "batchid": p.batch_id,
        "version": p.version,
        "dispatcherid": p.dispatcher_id,
        "connected": bool(p.connected),
        "firstseen": p.first_seen,
        "lastseen": p.last_seen,
    }


def _worker_row(w: Any) -> dict[str, Any]:
    return {
        "workerid": w.worker_id,
        "queue": w.queue,
        "backend": w.backend,
        "factoryid": w.factory_id,
        "batchid": w.batch_id,
        "state": w.state,
        "diag": w.diag,
        "submittime": w.submit_time,
        "updatetime": w.update_time,
        "logpath": w.log_path,
    }


def pilot_detail(conn: Connection, pilot_id: str, viewer: Viewer) -> dict[str, Any] | None:
    """One pilot: where it ran (node, batch id, its worker), and the jobs it ran with their logs.

    A pilot whose row is gone (or never came: jobs name pilots the dispatcher may not keep) still
    has a page while jobs name it, so the job page's pilot link never leads nowhere.
    """
    p = conn.execute(select(pilots).where(pilots.c.pilot_id == pilot_id, queue_clause(pilots.c.queue, viewer))).first()
    # a viewer sees a pilot of a queue serving their VO, or one that ran a job they may see
    ran = _jobs_where(conn, [visibility_clause(viewer), jobs.c.pilot_id == pilot_id])
    if p is None and not ran:
        return None
    seen = None
    if p is None:  # where it ran, as its newest job recorded it
        last = conn.execute(
            select(jobs.c.computing_site, jobs.c.node, jobs.c.batch_id)
            .where(jobs.c.pilot_id == pilot_id, visibility_clause(viewer))
            .order_by(jobs.c.panda_id.desc())
            .limit(1)
        ).first()
        seen = {"queue": last.computing_site, "node": last.node, "batchid": last.batch_id} if last else None
    if p is not None:
        queue, batch_id = p.queue, p.batch_id
    else:
        queue, batch_id = (seen["queue"], seen["batchid"]) if seen else ("", "")
    w = None
    if queue and batch_id:
        w = conn.execute(select(workers).where(workers.c.queue == queue, workers.c.batch_id == batch_id)).first()
    return {
        "pilotid": pilot_id,
        "seen": seen,
        "pilot": None if p is None else _pilot_row(p),
        "worker": None if w is None else _worker_row(w),
        "jobs": ran,
    }


def worker_detail(conn: Connection, worker_id: str, viewer: Viewer) -> dict[str, Any] | None:
    """One batch worker: its state and log path, the pilot(s) it started and their jobs."""
    w = conn.execute(select(workers).where(workers.c.worker_id == worker_id)).first()
    if w is None:
        return None
    found: list[Any] = []
    if w.batch_id:
        found = list(
            conn.execute(select(pilots).where(pilots.c.queue == w.queue, pilots.c.batch_id == w.batch_id)).all()
        )
    ids = [p.pilot_id for p in found]
    ran = _jobs_where(conn, [visibility_clause(viewer), jobs.c.pilot_id.in_(ids)]) if ids else []
    # a viewer sees a worker of a queue serving their VO, or one whose pilot ran a job they may see
    if not viewer.is_admin and w.queue not in viewer.queues and not ran:
        return None
    return {"worker": _worker_row(w), "pilots": [_pilot_row(p) for p in found], "jobs": ran}


def _jobs_where(conn: Connection, conds: list[Any]) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(*jobq.LIST_COLUMNS).where(*conds).order_by(jobs.c.panda_id.desc()).limit(PILOT_JOBS)
    ).all()
    return jobq.job_rows(conn, rows)


def search(conn: Connection, query: str, viewer: Viewer) -> dict[str, Any]:
    """What ``q`` names: a job (PandaID), task, site, user or job name; ``go`` when exactly one.

    Every probe is an exact match on an indexed column, a bounded prefix match on the small
    pilots table for queue names, or (job names, which have no index) a match inside the
    :data:`NAME_SEARCH_HOURS` window, so a search never scans the whole jobs table.
    """
    q = query.strip()
    hits: list[dict[str, str]] = []
    vis = visibility_clause(viewer)
    if q.isdigit() and len(q) < 19:
        number = int(q)
        if conn.execute(select(jobs.c.panda_id).where(jobs.c.panda_id == number, vis)).first():
            hits.append({"kind": "job", "label": f"job {number}", "href": f"/job/{number}"})
        if conn.execute(select(jobs.c.panda_id).where(jobs.c.task_id == number, vis).limit(1)).first():
            hits.append({"kind": "task", "label": f"task {number}", "href": f"/task/{number}"})
    elif q:
        site = conn.execute(select(jobs.c.computing_site).where(jobs.c.computing_site == q, vis).limit(1)).first()
        queues = {
            str(r[0])
            for r in conn.execute(
                select(pilots.c.queue).where(pilots.c.queue == q, queue_clause(pilots.c.queue, viewer)).limit(1)
            )
        }
        if site is not None or queues:
            hits.append({"kind": "site", "label": f"site {q}", "href": f"/site/{quote(q, safe='')}"})
        if conn.execute(select(jobs.c.panda_id).where(jobs.c.owner == q, vis).limit(1)).first():
            hits.append({"kind": "user", "label": f"user {q}", "href": "/jobs/?" + urlencode({"produsername": q})})
        for (pid,) in conn.execute(
            select(jobs.c.panda_id)
            .where(jobs.c.job_name == q, vis, window_clause(time.time() - NAME_SEARCH_HOURS * 3600))
            .order_by(jobs.c.panda_id.desc())
            .limit(SEARCH_LIMIT)
        ):
            hits.append({"kind": "job", "label": f"job {pid} ({q})", "href": f"/job/{int(pid)}"})
        if conn.execute(
            select(pilots.c.pilot_id).where(pilots.c.pilot_id == q, queue_clause(pilots.c.queue, viewer))
        ).first():
            hits.append({"kind": "pilot", "label": f"pilot {q}", "href": f"/pilot/{quote(q, safe='')}"})
        like = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        for (queue,) in conn.execute(
            select(pilots.c.queue)
            .where(pilots.c.queue.like(like, escape="\\"), pilots.c.queue != q, queue_clause(pilots.c.queue, viewer))
            .distinct()
            .limit(SEARCH_LIMIT)
        ):
            hits.append({"kind": "site", "label": f"site {queue}", "href": f"/site/{quote(str(queue), safe='')}"})
    return {"q": q, "results": hits, "go": hits[0]["href"] if len(hits) == 1 else None}
