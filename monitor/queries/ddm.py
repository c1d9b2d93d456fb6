"""Data management pages: the DDM catalog's datasets, one dataset's files, transfer requests.

Everything here reads the catalog tables the DDM writes (``ddm_*``, migration 0003) through their
indexes (migrations 0003 and 0007):

- datasets: one page of datasets (newest first, by primary key), then their file and replica
  aggregates over ``ddm_dataset_files`` for those datasets only;
- transfers: "every open request, plus the requests that ended in the window" (the jobs pages'
  window rule), read per state newest change first from ``ix_ddm_requests_window``;
- without a catalog (a dispatcher without storage), the datasets named by the files of the newest
  :data:`JOB_SCAN_LIMIT` jobs of the window, labelled as such.

Visibility: the catalog has no VO column, so a viewer who is not an admin sees the datasets whose
scope is one of their VOs (the VO's own scope, as the COMPASS chain names them); a transfer
request is seen when its job or its DDM task belongs to one of the viewer's VOs; DDM tasks by
their ``vo``.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Connection, case, exists, false, func, or_, select, true, union_all

from ailuro.errors import InvalidArgument, NotFound
from dispatcher.store import catalog
from dispatcher.store.schema import (
    ddm_dataset_files,
    ddm_datasets,
    ddm_files,
    ddm_job_links,
    ddm_replicas,
    ddm_requests,
    ddm_tasks,
    files,
    jobs,
)
from monitor.filters import DEFAULT_HOURS, JobFilter, Page, Viewer, parse_hours, parse_int, visibility_clause
from monitor.queries import jobs as jobq
from monitor.queries.errors import CODE_NAMES

OPEN_STATES = catalog.OPEN_REQUEST_STATES
ENDED_STATES = (catalog.DONE, catalog.FAILED, catalog.CANCELLED)
REQUEST_STATES = (*OPEN_STATES, *ENDED_STATES)
TASK_OPEN_STATES = ("submitted", "processing", "merging", "archiving")
JOB_SCAN_LIMIT = 1000
"""Without a catalog, datasets come from the files of at most this many jobs (newest change first)."""
DATASETS_PER_PAGE = 50
FILES_PER_PAGE = 500
TRANSFERS_PER_PAGE = 100
MAX_PER_PAGE = 1000
TASK_LIMIT = 500


def _page(params: Mapping[str, str], default_limit: int) -> tuple[int, int]:
    return (
        parse_int(params, "page", 1, minimum=1, maximum=1_000_000),
        parse_int(params, "limit", default_limit, minimum=1, maximum=MAX_PER_PAGE),
    )


def scope_clause(column: Any, viewer: Viewer) -> ColumnElement[bool]:
    """Catalog rows (by their ``scope`` column) the viewer may see: an admin all, others their VOs' scopes."""
    if viewer.is_admin:
        return true()
    return column.in_(sorted(viewer.vos)) if viewer.vos else false()


def request_clause(viewer: Viewer) -> ColumnElement[bool]:
    """Transfer requests the viewer may see: those of a job or a DDM task of one of the viewer's VOs."""
    if viewer.is_admin:
        return true()
    if not viewer.vos:
        return false()
    r = ddm_requests
    # both probes are primary-key lookups per request (jobs.panda_id, ddm_tasks.task_id)
    by_job = exists().where(jobs.c.panda_id == r.c.panda_id, visibility_clause(viewer))
    by_task = exists().where(ddm_tasks.c.task_id == r.c.task_id, ddm_tasks.c.vo.in_(sorted(viewer.vos)))
    return or_(by_job, by_task)


# --- datasets ---------------------------------------------------------------------------------


def has_catalog(conn: Connection) -> bool:
    """Whether the DDM catalog holds any dataset (one primary-key probe)."""
    return conn.execute(select(ddm_datasets.c.dataset_id).limit(1)).first() is not None


def _online(online_until: float | None, now: float) -> bool | None:
    """A tape replica's staging: True while staged, False once expired, None when never staged."""
    return None if online_until is None else online_until > now


def datasets_page(conn: Connection, params: Mapping[str, str], flt: JobFilter, viewer: Viewer) -> dict[str, Any]:
    """``/datasets/``: the catalog's datasets, or (no catalog) the datasets named by recent jobs' files."""
    if not has_catalog(conn):
        return jobs_datasets(conn, flt, viewer)
    scope = params.get("scope", "").strip()
    page, limit = _page(params, DATASETS_PER_PAGE)
    d = ddm_datasets
    where = [scope_clause(d.c.scope, viewer), *([d.c.scope == scope] if scope else [])]
    total = int(conn.execute(select(func.count()).select_from(d).where(*where)).scalar_one())
    rows = conn.execute(
        select(d).where(*where).order_by(d.c.dataset_id.desc()).limit(limit).offset((page - 1) * limit)
    ).all()
    ids = [int(r.dataset_id) for r in rows]
    sizes: dict[int, tuple[int, int]] = {}
    replicas: dict[int, dict[str, dict[str, Any]]] = defaultdict(dict)
    if ids:
        df, f, r = ddm_dataset_files, ddm_files, ddm_replicas
        for ds, n, size in conn.execute(
            select(df.c.dataset_id, func.count(), func.coalesce(func.sum(f.c.size), 0))
            .select_from(df.join(f, f.c.file_id == df.c.file_id))
            .where(df.c.dataset_id.in_(ids))
            .group_by(df.c.dataset_id)
        ):
            sizes[int(ds)] = (int(n), int(size))
        online = func.sum(case((r.c.online_until > flt.now, 1), else_=0))
        staged = func.count(r.c.online_until)
        for ds, se, state, n, n_online, n_staged in conn.execute(
            select(df.c.dataset_id, r.c.se, r.c.state, func.count(), online, staged)
            .select_from(df.join(r, r.c.file_id == df.c.file_id))
            .where(df.c.dataset_id.in_(ids))
            .group_by(df.c.dataset_id, r.c.se, r.c.state)
        ):
            entry = replicas[int(ds)].setdefault(se, {"se": se, "states": {}, "online": 0, "staged": 0})
            entry["states"][state] = int(n)
            entry["online"] += int(n_online or 0)
            entry["staged"] += int(n_staged or 0)
    datasets = []
    for row in rows:
        n, size = sizes.get(int(row.dataset_id), (0, 0))
        datasets.append(
            {
                "did": f"{row.scope}:{row.name}",
                "scope": row.scope,
                "name": row.name,
                "created": row.created,
                "nfiles": n,
                "bytes": size,
                "replicas": sorted(replicas.get(int(row.dataset_id), {}).values(), key=lambda e: e["se"]),
            }
        )
    return {
        "filter": {**flt.as_dict(), "scope": scope},
        "source": "catalog",
        "total": total,
        "pagenum": page,
        "limit": limit,
        "pages": max(1, -(-total // limit)),
        "datasets": datasets,
    }


def jobs_datasets(conn: Connection, flt: JobFilter, viewer: Viewer) -> dict[str, Any]:
    """Datasets named by the files of the newest :data:`JOB_SCAN_LIMIT` jobs of the window.

    The jobs come from the jobs list's own index-backed window reading (newest change first), and
    their files by the ``(panda_id, lfn)`` unique index, so the page costs the same at a million
    jobs as at a thousand. ``truncated`` says when the window held more jobs than were read.
    """
    newest = jobq.list_jobs(conn, flt, Page(sort="modified", descending=True, limit=JOB_SCAN_LIMIT + 1), viewer)
    ids = [j["pandaid"] for j in newest[:JOB_SCAN_LIMIT]]
    groups: dict[tuple[str, str, str], dict[str, Any]] = {}
    for start in range(0, len(ids), 500):
        stmt = (
            select(
                files.c.dataset,
                files.c.scope,
                files.c.type,
                func.count(),
                func.coalesce(func.sum(files.c.size), 0),
                func.count(func.distinct(files.c.panda_id)),
            )
            .where(files.c.panda_id.in_(ids[start : start + 500]), files.c.dataset != "")
            .group_by(files.c.dataset, files.c.scope, files.c.type)
        )
        for dataset, scope, ftype, n, size, njobs in conn.execute(stmt):
            g = groups.setdefault(
                (dataset, scope, ftype),
                {"dataset": dataset, "scope": scope, "type": ftype, "nfiles": 0, "bytes": 0, "njobs": 0},
            )
            g["nfiles"] += int(n)
            g["bytes"] += int(size)
            g["njobs"] += int(njobs)  # a job's files are all in one chunk: no job counted twice
    datasets = sorted(groups.values(), key=lambda g: (-g["nfiles"], g["scope"], g["dataset"], g["type"]))
    return {
        "filter": flt.as_dict(),
        "source": "jobs",
        "job_limit": JOB_SCAN_LIMIT,
        "jobs_scanned": len(ids),
        "truncated": len(newest) > JOB_SCAN_LIMIT,
        "datasets": datasets,
    }


def dataset_detail(
    conn: Connection, did: str, params: Mapping[str, str], viewer: Viewer, *, now: float
) -> dict[str, Any]:
    """``/dataset/<scope>:<name>``: one page of its files (by lfn) with every replica, and per-SE totals."""
    scope, name = catalog.split_did(did)
    d, df, f, r = ddm_datasets, ddm_dataset_files, ddm_files, ddm_replicas
    ds = conn.execute(select(d).where(d.c.scope == scope, d.c.name == name, scope_clause(d.c.scope, viewer))).first()
    if ds is None:
        raise NotFound(f"no dataset {scope}:{name} in the catalog")
    page, limit = _page(params, FILES_PER_PAGE)
    nfiles, size = conn.execute(
        select(func.count(), func.coalesce(func.sum(f.c.size), 0))
        .select_from(df.join(f, f.c.file_id == df.c.file_id))
        .where(df.c.dataset_id == ds.dataset_id)
    ).one()
    per_se: dict[str, dict[str, Any]] = {}
    online = func.sum(case((r.c.online_until > now, 1), else_=0))
    for se, state, n, n_online, n_staged in conn.execute(
        select(r.c.se, r.c.state, func.count(), online, func.count(r.c.online_until))
        .select_from(df.join(r, r.c.file_id == df.c.file_id))
        .where(df.c.dataset_id == ds.dataset_id)
        .group_by(r.c.se, r.c.state)
    ):
        entry = per_se.setdefault(se, {"se": se, "states": {}, "online": 0, "staged": 0})
        entry["states"][state] = int(n)
        entry["online"] += int(n_online or 0)
        entry["staged"] += int(n_staged or 0)
    file_rows = conn.execute(
        select(f)
        .select_from(df.join(f, f.c.file_id == df.c.file_id))
        .where(df.c.dataset_id == ds.dataset_id)
        .order_by(f.c.lfn)
        .limit(limit)
        .offset((page - 1) * limit)
    ).all()
    reps = catalog.replicas_of(conn, [int(x.file_id) for x in file_rows])
    return {
        "did": f"{scope}:{name}",
        "scope": scope,
        "name": name,
        "created": ds.created,
        "nfiles": int(nfiles),
        "bytes": int(size),
        "pagenum": page,
        "limit": limit,
        "pages": max(1, -(-int(nfiles) // limit)),
        "replicas": sorted(per_se.values(), key=lambda e: e["se"]),
        "files": [
            {
                "lfn": x.lfn,
                "scope": x.scope,
                "size": int(x.size),
                "adler32": x.adler32,
                "guid": x.guid,
                "replicas": [
                    {
                        "se": rep["se"],
                        "state": rep["state"],
                        "pfn": rep["pfn"],
                        "online_until": rep["online_until"],
                        "online": _online(rep["online_until"], now),
                        "updated": rep["updated"],
                    }
                    for rep in reps.get(int(x.file_id), [])
                ],
            }
            for x in file_rows
        ],
    }


# --- transfers --------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class TransferFilter:
    """``/transfers/`` filters from the URL; the window keeps open requests and those ended since T."""

    hours: float = DEFAULT_HOURS
    now: float = field(default_factory=time.time)
    state: tuple[str, ...] = ()
    kind: tuple[str, ...] = ()
    source: str = ""
    dest: str = ""
    task: int | None = None
    job: int | None = None
    code: int | None = None
    dataset: str = ""

    @property
    def since(self) -> float:
        """Start of the window (epoch seconds)."""
        return self.now - self.hours * 3600.0

    def query_params(self) -> dict[str, str]:
        """The URL parameters that reproduce this filter."""
        out: dict[str, str] = {}
        if self.state:
            out["state"] = "|".join(self.state)
        if self.kind:
            out["kind"] = "|".join(self.kind)
        for key in ("source", "dest", "dataset"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        for key in ("task", "job", "code"):
            if getattr(self, key) is not None:
                out[key] = str(getattr(self, key))
        if self.hours != DEFAULT_HOURS:
            out["hours"] = str(int(self.hours)) if self.hours == int(self.hours) else str(self.hours)
        return out

    def as_dict(self) -> dict[str, Any]:
        """The filter in the JSON twin (stable keys)."""
        return {
            "hours": self.hours,
            "since": self.since,
            "now": self.now,
            "state": list(self.state),
            "kind": list(self.kind),
            "source": self.source,
            "dest": self.dest,
            "task": self.task,
            "job": self.job,
            "code": self.code,
            "dataset": self.dataset,
        }


def _choices(params: Mapping[str, str], name: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
    raw = params.get(name, "").strip()
    values = tuple(v for v in (p.strip() for p in raw.split("|")) if v)
    bad = [v for v in values if v not in allowed]
    if bad:
        raise InvalidArgument(f"unknown value {bad[0]!r} (one of: {', '.join(allowed)})", field=name)
    return values


def parse_transfer_filter(params: Mapping[str, str], *, now: float | None = None) -> TransferFilter:
    """A :class:`TransferFilter` from URL parameters (``InvalidArgument`` names a bad one: HTTP 400)."""

    def opt_int(name: str) -> int | None:
        return parse_int(params, name, 0, minimum=0, maximum=2**63 - 1) if params.get(name, "").strip() else None

    dataset = params.get("dataset", "").strip()
    if dataset:
        catalog.split_did(dataset)
    return TransferFilter(
        hours=parse_hours(params),
        now=time.time() if now is None else now,
        state=_choices(params, "state", REQUEST_STATES),
        kind=_choices(params, "kind", catalog.KINDS),
        source=params.get("source", "").strip(),
        dest=params.get("dest", "").strip(),
        task=opt_int("task"),
        job=opt_int("job"),
        code=opt_int("code"),
        dataset=dataset,
    )


def _request_conditions(conn: Connection, tf: TransferFilter, viewer: Viewer) -> list[ColumnElement[bool]] | None:
    """WHERE terms of visibility and every filter except state and kind; None when the dataset does not exist."""
    r = ddm_requests
    conds: list[ColumnElement[bool]] = [request_clause(viewer)]
    if tf.source:
        conds.append(r.c.source_se == tf.source)
    if tf.dest:
        conds.append(r.c.dest_se == tf.dest)
    if tf.task is not None:
        conds.append(r.c.task_id == tf.task)
    if tf.job is not None:
        conds.append(r.c.panda_id == tf.job)
    if tf.code is not None:
        conds.append(r.c.error_code == tf.code)
    if tf.dataset:
        scope, name = catalog.split_did(tf.dataset)
        ds = conn.execute(
            select(ddm_datasets.c.dataset_id).where(ddm_datasets.c.scope == scope, ddm_datasets.c.name == name)
        ).first()
        if ds is None:
            return None
        members = select(ddm_dataset_files.c.file_id).where(ddm_dataset_files.c.dataset_id == ds[0])
        conds.append(r.c.file_id.in_(members))
    return conds


def _in_window(state: str, tf: TransferFilter) -> list[ColumnElement[bool]]:
    """One state's part of the window: open states whole, ended states since the window start."""
    r = ddm_requests
    return [r.c.state == state] if state in OPEN_STATES else [r.c.state == state, r.c.updated >= tf.since]


def _request_row(row: Any, now: float) -> dict[str, Any]:
    return {
        "requestid": int(row.request_id),
        "kind": row.kind,
        "scope": row.scope,
        "lfn": row.lfn,
        "sourcese": row.source_se,
        "destse": row.dest_se,
        "state": row.state,
        "attempts": int(row.attempts),
        "maxattempts": int(row.max_attempts),
        "nextattempt": row.next_attempt if row.state == catalog.QUEUED else None,
        "due": row.state == catalog.QUEUED and row.next_attempt <= now,
        "lasterror": row.last_error,
        "errorcode": int(row.error_code),
        "errorname": CODE_NAMES.get(int(row.error_code), "") if row.error_code else "",
        "pandaid": int(row.panda_id),
        "taskid": int(row.task_id),
        "activity": row.activity,
        "leaseowner": row.lease_owner,
        "created": row.created,
        "updated": row.updated,
    }


def _read_requests(conn: Connection, ids: list[int], now: float) -> list[dict[str, Any]]:
    r, f = ddm_requests, ddm_files
    if not ids:
        return []
    stmt = (
        select(r, f.c.scope, f.c.lfn).select_from(r.join(f, f.c.file_id == r.c.file_id)).where(r.c.request_id.in_(ids))
    )
    rows = {int(x.request_id): x for x in conn.execute(stmt)}
    return [_request_row(rows[i], now) for i in ids if i in rows]


def transfers_page(conn: Connection, tf: TransferFilter, params: Mapping[str, str], viewer: Viewer) -> dict[str, Any]:
    """``/transfers/``: counts by state and kind (every filter but those two), and one page of requests."""
    page, limit = _page(params, TRANSFERS_PER_PAGE)
    counts: dict[str, dict[str, int]] = {s: {} for s in REQUEST_STATES}
    rows: list[dict[str, Any]] = []
    conds = _request_conditions(conn, tf, viewer)
    r = ddm_requests
    if conds is not None:
        # one index range per state (ix_ddm_requests_window): never a scan of every request ever made
        parts = [
            select(r.c.state, r.c.kind, func.count()).where(*_in_window(s, tf), *conds).group_by(r.c.state, r.c.kind)
            for s in REQUEST_STATES
        ]
        for state, kind, n in conn.execute(union_all(*parts)):
            counts[state][kind] = int(n)
    states = tf.state or REQUEST_STATES
    kinds = tf.kind or catalog.KINDS
    total = sum(n for s in states for k, n in counts[s].items() if k in kinds)
    if conds is not None and total:
        depth = page * limit
        kind_cond = [r.c.kind.in_(list(tf.kind))] if tf.kind else []
        halves = [
            select(r.c.request_id, r.c.updated)
            .where(*_in_window(s, tf), *conds, *kind_cond)
            .order_by(r.c.updated.desc(), r.c.request_id.desc())
            .limit(depth)
            .subquery()
            for s in states
        ]
        both = union_all(*(select(h.c.request_id, h.c.updated) for h in halves)).subquery("window")
        ids_stmt = (
            select(both.c.request_id)
            .order_by(both.c.updated.desc(), both.c.request_id.desc())
            .limit(limit)
            .offset((page - 1) * limit)
        )
        rows = _read_requests(conn, [int(i) for i in conn.execute(ids_stmt).scalars()], tf.now)
    by_kind: dict[str, int] = defaultdict(int)
    for per_kind in counts.values():
        for kind, n in per_kind.items():
            by_kind[kind] += n
    return {
        "filter": tf.as_dict(),
        "counts": {s: counts[s] for s in REQUEST_STATES},
        "by_state": {s: sum(counts[s].values()) for s in REQUEST_STATES},
        "by_kind": {k: by_kind.get(k, 0) for k in catalog.KINDS},
        "total": total,
        "pagenum": page,
        "limit": limit,
        "pages": max(1, -(-total // limit)),
        "requests": rows,
    }


def job_requests(conn: Connection, panda_id: int, *, now: float) -> dict[str, Any]:
    """The DDM side of one job: where it reads and writes (if the DDM manages it) and its requests."""
    link = conn.execute(select(ddm_job_links).where(ddm_job_links.c.panda_id == panda_id)).first()
    ids = [
        int(i)
        for i in conn.execute(
            select(ddm_requests.c.request_id)
            .where(ddm_requests.c.panda_id == panda_id)
            .order_by(ddm_requests.c.request_id)
        ).scalars()
    ]
    return {
        "managed": link is not None,
        "inputse": link.input_se if link is not None else "",
        "outputse": link.output_se if link is not None else "",
        "requests": _read_requests(conn, ids, now),
    }


def ddm_tasks_of(conn: Connection, flt: JobFilter, viewer: Viewer) -> list[dict[str, Any]]:
    """DDM tasks (the COMPASS chain) still open, or changed in the window, newest change first.

    Each carries its requests' counts by state (``ix_ddm_requests_task``). A viewer who is not an
    admin sees the tasks of their VOs.
    """
    t = ddm_tasks
    vo = true() if viewer.is_admin else (t.c.vo.in_(sorted(viewer.vos)) if viewer.vos else false())
    parts = [
        select(t.c.task_id, t.c.updated).where(t.c.state.in_(TASK_OPEN_STATES), vo),
        select(t.c.task_id, t.c.updated).where(t.c.updated >= flt.since, vo),
    ]
    both = union_all(*parts).subquery("window")  # a task in both halves is deduplicated below
    ranked = (
        select(both.c.task_id).group_by(both.c.task_id).order_by(func.max(both.c.updated).desc(), both.c.task_id.desc())
    )
    ids = [int(i) for i in conn.execute(ranked.limit(TASK_LIMIT)).scalars()]
    if not ids:
        return []
    rows = {int(x.task_id): x for x in conn.execute(select(t).where(t.c.task_id.in_(ids)))}
    req: dict[int, dict[str, int]] = defaultdict(dict)
    r = ddm_requests
    for task_id, state, n in conn.execute(
        select(r.c.task_id, r.c.state, func.count()).where(r.c.task_id.in_(ids)).group_by(r.c.task_id, r.c.state)
    ):
        req[int(task_id)][state] = int(n)
    return [
        {
            "taskid": i,
            "name": rows[i].name,
            "owner": rows[i].owner,
            "vo": rows[i].vo,
            "state": rows[i].state,
            "diag": rows[i].diag,
            "mergepandaid": int(rows[i].merge_panda_id),
            "created": rows[i].created,
            "updated": rows[i].updated,
            "requests": req.get(i, {}),
        }
        for i in ids
        if i in rows
    ]
