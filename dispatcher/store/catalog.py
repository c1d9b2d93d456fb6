"""The DDM catalog in the dispatcher's database: files, datasets, replicas and requests.

Names follow Rucio: a file is ``scope:lfn`` (unique), a dataset ``scope:name`` groups files, a
replica is a file on a storage element (SE). A replica is ``available`` only once a checksum
computed at that SE matched the catalog's adler32. Requests are the DDM agent's work items:
``transfer`` (copy a file to an SE), ``stage`` (bring a tape replica online), ``verify`` (compare a
replica's checksum with the catalog). Agents claim requests with a lease (``FOR UPDATE SKIP
LOCKED`` on PostgreSQL, the single writer on SQLite) so two agents never run the same request;
an agent that dies loses its lease and another agent takes the request over.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, or_, select, true, tuple_, update

from ailuro.errors import InvalidArgument, NotFound
from dispatcher.store.jobs import chunks
from dispatcher.store.schema import (
    ddm_dataset_files,
    ddm_datasets,
    ddm_files,
    ddm_replicas,
    ddm_requests,
    ddm_scopes,
)

AVAILABLE = "available"
UNVERIFIED = "unverified"
BAD = "bad"
REPLICA_STATES = (AVAILABLE, UNVERIFIED, BAD)
QUEUED, ACTIVE, DONE, FAILED, CANCELLED = "queued", "active", "done", "failed", "cancelled"
OPEN_REQUEST_STATES = (QUEUED, ACTIVE)
KINDS = ("transfer", "stage", "verify", "delete")


@dataclass(frozen=True, kw_only=True)
class FileEntry:
    """A file to register."""

    lfn: str
    size: int
    adler32: str
    guid: str


def split_did(did: str, *, field: str = "dataset") -> tuple[str, str]:
    """``"scope:name"`` -> ``(scope, name)``; ``InvalidArgument`` when either part is missing."""
    scope, sep, name = did.partition(":")
    if not sep or not scope or not name or ":" in name:
        raise InvalidArgument(f"expected scope:name, got {did!r}", field=field)
    return scope, name


def ensure_dataset(conn: Connection, scope: str, name: str, *, now: float) -> int:
    """The id of dataset ``scope:name``, creating the scope and the dataset if new."""
    if conn.execute(select(ddm_scopes.c.scope).where(ddm_scopes.c.scope == scope)).first() is None:
        conn.execute(ddm_scopes.insert().values(scope=scope, created=now))
    row = conn.execute(
        select(ddm_datasets.c.dataset_id).where(ddm_datasets.c.scope == scope, ddm_datasets.c.name == name)
    ).first()
    if row is not None:
        return int(row[0])
    res = conn.execute(ddm_datasets.insert().values(scope=scope, name=name, created=now))
    return int(res.inserted_primary_key[0])  # type: ignore[index]


def add_files(
    conn: Connection, scope: str, entries: Sequence[FileEntry], *, dataset_id: int | None, now: float
) -> dict[str, int]:
    """Register files (idempotent for identical size/adler32); ``{lfn: file_id}``.

    A file already known with another size or checksum is an ``InvalidArgument``: the same name
    must never mean two contents.
    """
    if conn.execute(select(ddm_scopes.c.scope).where(ddm_scopes.c.scope == scope)).first() is None:
        conn.execute(ddm_scopes.insert().values(scope=scope, created=now))
    known = lookup_files(conn, [(scope, e.lfn) for e in entries])
    new_rows = []
    for i, e in enumerate(entries):
        row = known.get((scope, e.lfn))
        if row is None:
            new_rows.append({"scope": scope, "lfn": e.lfn, "size": e.size, "adler32": e.adler32, "guid": e.guid})
        elif row["size"] != e.size or row["adler32"] != e.adler32:
            raise InvalidArgument(
                f"{scope}:{e.lfn} is registered with size {row['size']}, adler32 {row['adler32']}; "
                f"not {e.size}, {e.adler32}",
                field=f"files[{i}]" if len(entries) > 1 else "files",
            )
    ids = {lfn: int(row["file_id"]) for (_, lfn), row in known.items()}
    if new_rows:
        # one executemany returning the new ids (the driver batches it): no lookup of rows just
        # inserted, which PostgreSQL plans as a scan (no statistics yet) and takes seconds
        stmt = ddm_files.insert().returning(ddm_files.c.file_id, ddm_files.c.lfn, sort_by_parameter_order=True)
        for fid, lfn in conn.execute(stmt, [{**r, "created": now} for r in new_rows]):
            ids[lfn] = int(fid)
    out = {e.lfn: ids[e.lfn] for e in entries}
    if dataset_id is not None and out:
        have = {
            r[0]
            for r in conn.execute(
                select(ddm_dataset_files.c.file_id).where(ddm_dataset_files.c.dataset_id == dataset_id)
            )
        }
        new = [{"dataset_id": dataset_id, "file_id": fid} for fid in out.values() if fid not in have]
        if new:
            conn.execute(ddm_dataset_files.insert(), new)
    return out


def lookup_files(conn: Connection, names: Iterable[tuple[str, str]]) -> dict[tuple[str, str], Any]:
    """File rows by ``(scope, lfn)``; unknown names are absent."""
    wanted = sorted(set(names))
    out: dict[tuple[str, str], Any] = {}
    by_scope: dict[str, list[str]] = defaultdict(list)
    for scope, lfn in wanted:
        by_scope[scope].append(lfn)
    for scope, lfns in by_scope.items():
        for part in chunks(lfns):
            stmt = select(ddm_files).where(ddm_files.c.scope == scope, ddm_files.c.lfn.in_(list(part)))
            for row in conn.execute(stmt).mappings():
                out[(scope, row["lfn"])] = row
    return out


def files_with_replicas(
    conn: Connection, names: Iterable[tuple[str, str]]
) -> tuple[dict[tuple[str, str], Any], dict[int, list[Any]]]:
    """File rows by ``(scope, lfn)`` and their replicas by file id, in one query per chunk of names.

    A submission reads every input of its batch through this once (not two queries per job):
    the files LEFT JOIN their replicas, selected by ``(scope, lfn) IN (...)``.
    """
    wanted = sorted(set(names))
    files: dict[tuple[str, str], Any] = {}
    replicas: dict[int, list[Any]] = defaultdict(list)
    r = ddm_replicas
    cols = [*ddm_files.c, r.c.se, r.c.state, r.c.pfn, r.c.online_until]
    join = ddm_files.outerjoin(r, r.c.file_id == ddm_files.c.file_id)
    for part in chunks(wanted, _IN_CHUNK_PAIRS):
        stmt = (
            select(*cols)
            .select_from(join)
            .where(tuple_(ddm_files.c.scope, ddm_files.c.lfn).in_(list(part)))
            .order_by(ddm_files.c.file_id, r.c.se)
        )
        for row in conn.execute(stmt).mappings():
            key = (row["scope"], row["lfn"])
            files.setdefault(key, row)
            if row["se"] is not None:
                replicas[int(row["file_id"])].append(
                    {k: row[k] for k in ("file_id", "se", "state", "pfn", "online_until")}
                )
    return files, replicas


_IN_CHUNK_PAIRS = 450  # two bind parameters per name


def files_by_id(conn: Connection, ids: Iterable[int]) -> dict[int, Any]:
    """File rows by id."""
    out: dict[int, Any] = {}
    for part in chunks(sorted(set(ids))):
        for row in conn.execute(select(ddm_files).where(ddm_files.c.file_id.in_(list(part)))).mappings():
            out[int(row["file_id"])] = row
    return out


def dataset_files(conn: Connection, scope: str, name: str) -> list[Any]:
    """The files of dataset ``scope:name`` in lfn order; ``NotFound`` when the dataset is unknown."""
    ds = conn.execute(
        select(ddm_datasets.c.dataset_id).where(ddm_datasets.c.scope == scope, ddm_datasets.c.name == name)
    ).first()
    if ds is None:
        raise NotFound(f"no dataset {scope}:{name}", field="dataset")
    stmt = (
        select(ddm_files)
        .join(ddm_dataset_files, ddm_dataset_files.c.file_id == ddm_files.c.file_id)
        .where(ddm_dataset_files.c.dataset_id == ds[0])
        .order_by(ddm_files.c.lfn)
    )
    return list(conn.execute(stmt).mappings())


def list_datasets(
    conn: Connection, scope: str = "", *, limit: int | None = None, name: str = "", where: Sequence[Any] = ()
) -> list[Any]:
    """Datasets (of one scope, or all; or the one called ``name``) with their file counts and creation
    time (``where``: the caller's authorization conditions)."""
    from sqlalchemy import func

    d = ddm_datasets
    stmt = (
        select(d.c.scope, d.c.name, d.c.created, func.count(ddm_dataset_files.c.file_id).label("files"))
        .select_from(d.outerjoin(ddm_dataset_files, ddm_dataset_files.c.dataset_id == d.c.dataset_id))
        .group_by(d.c.dataset_id, d.c.scope, d.c.name, d.c.created)
        .order_by(d.c.scope, d.c.name)
        .where(true(), *where)
    )
    if scope:
        stmt = stmt.where(d.c.scope == scope)
    if name:
        stmt = stmt.where(d.c.name == name)
    if limit is not None:
        stmt = stmt.limit(limit)
    return list(conn.execute(stmt).mappings())


def dataset_files_page(conn: Connection, scope: str, name: str, *, after_lfn: str, limit: int) -> list[Any]:
    """Up to ``limit`` files of dataset ``scope:name`` after ``after_lfn``, in lfn order (``NotFound`` when unknown)."""
    ds = conn.execute(
        select(ddm_datasets.c.dataset_id).where(ddm_datasets.c.scope == scope, ddm_datasets.c.name == name)
    ).first()
    if ds is None:
        raise NotFound(f"no dataset {scope}:{name}", field="dataset")
    stmt = (
        select(ddm_files)
        .join(ddm_dataset_files, ddm_dataset_files.c.file_id == ddm_files.c.file_id)
        .where(ddm_dataset_files.c.dataset_id == ds[0], ddm_files.c.lfn > after_lfn)
        .order_by(ddm_files.c.lfn)
        .limit(limit)
    )
    return list(conn.execute(stmt).mappings())


def replicas_of(conn: Connection, file_ids: Iterable[int]) -> dict[int, list[Any]]:
    """Replica rows grouped by file id."""
    out: dict[int, list[Any]] = defaultdict(list)
    for part in chunks(sorted(set(file_ids))):
        stmt = select(ddm_replicas).where(ddm_replicas.c.file_id.in_(list(part))).order_by(ddm_replicas.c.se)
        for row in conn.execute(stmt).mappings():
            out[int(row["file_id"])].append(row)
    return out


def set_replica(
    conn: Connection,
    file_id: int,
    se: str,
    *,
    state: str,
    pfn: str,
    now: float,
    online_until: float | None = None,
) -> None:
    """Create or update the replica of ``file_id`` on ``se``."""
    values: dict[str, Any] = {"state": state, "pfn": pfn, "updated": now, "online_until": online_until}
    res = conn.execute(
        update(ddm_replicas).where(ddm_replicas.c.file_id == file_id, ddm_replicas.c.se == se).values(**values)
    )
    if res.rowcount == 0:
        conn.execute(ddm_replicas.insert().values(file_id=file_id, se=se, created=now, **values))


def set_replicas(conn: Connection, se: str, items: Sequence[tuple[int, str, str]], *, now: float) -> None:
    """Create or update many replicas on ``se`` at once; ``items`` are ``(file_id, state, pfn)``."""
    from sqlalchemy import bindparam

    have = {fid for fid, reps in replicas_of(conn, [i[0] for i in items]).items() if any(r["se"] == se for r in reps)}
    updates = [{"fid": fid, "st": state, "url": pfn} for fid, state, pfn in items if fid in have]
    inserts = [
        {"file_id": fid, "se": se, "state": state, "pfn": pfn, "online_until": None, "created": now, "updated": now}
        for fid, state, pfn in items
        if fid not in have
    ]
    if updates:
        stmt = (
            update(ddm_replicas)
            .where(ddm_replicas.c.file_id == bindparam("fid"), ddm_replicas.c.se == se)
            .values(state=bindparam("st"), pfn=bindparam("url"), updated=now)
        )
        for part in chunks(updates):
            conn.execute(stmt, list(part))
    if inserts:
        conn.execute(ddm_replicas.insert(), inserts)


def add_requests(
    conn: Connection,
    *,
    kind: str,
    file_ids: Sequence[int],
    dest_se: str,
    now: float,
    source_se: str = "",
    activity: str = "",
    not_before: float | None = None,
) -> dict[int, int]:
    """:func:`add_request` for many files at once; ``{file_id: request_id}`` (open requests are reused)."""
    if kind not in KINDS:
        raise InvalidArgument(f"kind must be one of {KINDS}", field="kind")
    r = ddm_requests

    def open_ids(fids: Sequence[int]) -> dict[int, int]:
        found: dict[int, int] = {}
        for part in chunks(sorted(set(fids))):
            stmt = select(r.c.file_id, r.c.request_id).where(
                r.c.kind == kind,
                r.c.dest_se == dest_se,
                r.c.state.in_(OPEN_REQUEST_STATES),
                r.c.file_id.in_(list(part)),
            )
            for fid, rid in conn.execute(stmt):
                found.setdefault(int(fid), int(rid))
        return found

    out = open_ids(file_ids)
    base = {
        "kind": kind,
        "source_se": source_se,
        "dest_se": dest_se,
        "state": QUEUED,
        "attempts": 0,
        "max_attempts": 5,
        "next_attempt": now if not_before is None else not_before,
        "lease_owner": "",
        "lease_expires": None,
        "last_error": "",
        "error_code": 0,
        "panda_id": 0,
        "task_id": 0,
        "activity": activity,
        "created": now,
        "updated": now,
    }
    missing = sorted({f for f in file_ids if f not in out})
    if missing:  # one executemany returning the ids (see add_files)
        stmt = r.insert().returning(r.c.file_id, r.c.request_id, sort_by_parameter_order=True)
        for fid, rid in conn.execute(stmt, [{**base, "file_id": fid} for fid in missing]):
            out[int(fid)] = int(rid)
    return out


def remove_replica(conn: Connection, file_id: int, se: str) -> None:
    """Forget the replica of ``file_id`` on ``se`` (after the file was deleted there)."""
    conn.execute(ddm_replicas.delete().where(ddm_replicas.c.file_id == file_id, ddm_replicas.c.se == se))


def set_replica_state(conn: Connection, file_id: int, se: str, state: str, *, now: float) -> None:
    """Change the state of an existing replica (no-op when there is none)."""
    conn.execute(
        update(ddm_replicas)
        .where(ddm_replicas.c.file_id == file_id, ddm_replicas.c.se == se)
        .values(state=state, updated=now)
    )


def set_online(conn: Connection, file_id: int, se: str, *, until: float, now: float) -> None:
    """Mark a tape replica staged (readable) until ``until``."""
    conn.execute(
        update(ddm_replicas)
        .where(ddm_replicas.c.file_id == file_id, ddm_replicas.c.se == se)
        .values(online_until=until, updated=now)
    )


def add_request(
    conn: Connection,
    *,
    kind: str,
    file_id: int,
    dest_se: str,
    now: float,
    source_se: str = "",
    panda_id: int = 0,
    task_id: int = 0,
    activity: str = "",
    max_attempts: int = 5,
    not_before: float | None = None,
) -> int:
    """Queue a request, or return the open one of the same kind for the same file and SE."""
    if kind not in KINDS:
        raise InvalidArgument(f"kind must be one of {KINDS}", field="kind")
    r = ddm_requests
    existing = conn.execute(
        select(r.c.request_id).where(
            r.c.kind == kind, r.c.file_id == file_id, r.c.dest_se == dest_se, r.c.state.in_(OPEN_REQUEST_STATES)
        )
    ).first()
    if existing is not None:
        return int(existing[0])
    res = conn.execute(
        r.insert().values(
            kind=kind,
            file_id=file_id,
            source_se=source_se,
            dest_se=dest_se,
            state=QUEUED,
            attempts=0,
            max_attempts=max_attempts,
            next_attempt=now if not_before is None else not_before,
            lease_owner="",
            lease_expires=None,
            last_error="",
            error_code=0,
            panda_id=panda_id,
            task_id=task_id,
            activity=activity,
            created=now,
            updated=now,
        )
    )
    return int(res.inserted_primary_key[0])  # type: ignore[index]


def claim_requests(
    conn: Connection,
    *,
    owner: str,
    limit: int,
    lease_s: float,
    now: float,
    fits: Callable[[Any], bool] = lambda row: True,
) -> list[Any]:
    """Take up to ``limit`` due requests (queued and due, or active with an expired lease).

    ``fits(row)`` lets the caller skip requests it has no room for (per-SE concurrency). The taken
    rows are returned as they are after the claim (state active, attempts not yet counted).
    """
    r = ddm_requests
    due = or_(and_(r.c.state == QUEUED, r.c.next_attempt <= now), and_(r.c.state == ACTIVE, r.c.lease_expires < now))
    stmt = select(r).where(due).order_by(r.c.next_attempt, r.c.request_id).limit(max(4 * limit, 20))
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    picked = []
    for row in conn.execute(stmt).mappings():
        if len(picked) >= limit:
            break
        if fits(row):
            picked.append(row)
    out = []
    for row in picked:
        res = conn.execute(
            update(r)
            .where(r.c.request_id == row["request_id"], r.c.state == row["state"], r.c.updated == row["updated"])
            .values(state=ACTIVE, lease_owner=owner, lease_expires=now + lease_s, updated=now)
            .returning(*r.c)
        )
        got = res.mappings().first()
        if got is not None:
            out.append(got)
    return out


def held_requests(conn: Connection, ids: Sequence[int], *, owner: str) -> set[int]:
    """Which of ``ids`` this owner still holds (active under its lease); the others were withdrawn."""
    r = ddm_requests
    held: set[int] = set()
    for part in chunks(sorted(set(ids))):
        stmt = select(r.c.request_id).where(
            r.c.request_id.in_(list(part)), r.c.state == ACTIVE, r.c.lease_owner == owner
        )
        held |= {int(x[0]) for x in conn.execute(stmt)}
    return held


def renew_leases(conn: Connection, ids: Sequence[int], *, owner: str, lease_s: float, now: float) -> None:
    """Extend the leases of requests this owner runs."""
    r = ddm_requests
    for part in chunks(sorted(set(ids))):
        conn.execute(
            update(r)
            .where(r.c.request_id.in_(list(part)), r.c.state == ACTIVE, r.c.lease_owner == owner)
            .values(lease_expires=now + lease_s)
        )


def finish_request(
    conn: Connection,
    request_id: int,
    *,
    owner: str,
    state: str,
    now: float,
    error: str = "",
    code: int = 0,
    next_attempt: float | None = None,
    count_attempt: bool = True,
    external: tuple[str, float | None] | None = None,
) -> bool:
    """End (``done``/``failed``) or requeue (``queued`` at ``next_attempt``) a held request.

    ``external`` sets (id, since) of the storage's own request (a tape recall); ``("", None)``
    forgets it. Conditional on the lease: returns False when the request was withdrawn or taken over.
    """
    r = ddm_requests
    values: dict[str, Any] = {"state": state, "updated": now, "lease_owner": "", "lease_expires": None}
    if count_attempt:
        values["attempts"] = r.c.attempts + 1
    if error or state == DONE:
        values["last_error"] = storable_text(error, limit=MAX_ERROR_TEXT)
        values["error_code"] = code
    if next_attempt is not None:
        values["next_attempt"] = next_attempt
    if external is not None:
        values["external_id"], values["external_since"] = external
    res = conn.execute(
        update(r).where(r.c.request_id == request_id, r.c.state == ACTIVE, r.c.lease_owner == owner).values(**values)
    )
    return res.rowcount == 1


MAX_ERROR_TEXT = 2000
"""Characters of a request's last error kept."""


def storable_text(text: str, *, limit: int) -> str:
    """``text`` as every database stores it: NUL escaped (PostgreSQL refuses it in text), lone
    surrogates (undecodable bytes) replaced, at most ``limit`` characters.

    Error texts come from storage servers and libraries and may contain anything; a failure that
    cannot be recorded would leave its request active with no attempt counted.
    """
    clean = text.encode("utf-8", errors="replace").decode("utf-8").replace("\x00", "\\x00")
    return clean[:limit]


def fail_open_requests(
    conn: Connection, file_id: int, *, kind: str, now: float, code: int, error: str, source_se: str = ""
) -> list[int]:
    """End the queued (not running) requests of ``kind`` for a file as failed; their ids.

    For requests that can never succeed, e.g. transfers waiting for the recall of a file that
    turned out to be lost. ``source_se``: only requests reading from there (or from any SE).
    """
    r = ddm_requests
    cond = [r.c.file_id == file_id, r.c.kind == kind, r.c.state == QUEUED]
    if source_se:
        cond.append(or_(r.c.source_se == source_se, r.c.source_se == ""))
    ids = [int(x[0]) for x in conn.execute(select(r.c.request_id).where(*cond))]
    if ids:
        conn.execute(
            update(r)
            .where(r.c.request_id.in_(ids), r.c.state == QUEUED)
            .values(state=FAILED, error_code=code, last_error=storable_text(error, limit=MAX_ERROR_TEXT), updated=now)
        )
    return ids


def cancel_requests(conn: Connection, ids: Sequence[int], *, now: float, reason: str = "withdrawn") -> int:
    """Withdraw open requests (a running agent notices at its next lease renewal)."""
    r = ddm_requests
    n = 0
    for part in chunks(sorted(set(ids))):
        res = conn.execute(
            update(r)
            .where(r.c.request_id.in_(list(part)), r.c.state.in_(OPEN_REQUEST_STATES))
            .values(state=CANCELLED, last_error=reason, updated=now, lease_owner="", lease_expires=None)
        )
        n += res.rowcount
    return n


def list_requests(
    conn: Connection,
    *,
    states: Sequence[str] = (),
    panda_id: int = 0,
    task_id: int = 0,
    limit: int = 200,
    kind: str = "",
    where: Sequence[Any] = (),
) -> list[Any]:
    """Requests with their file names, newest first (``where``: the caller's authorization conditions)."""
    r, f = ddm_requests, ddm_files
    stmt = (
        select(r, f.c.scope, f.c.lfn)
        .select_from(r.join(f, f.c.file_id == r.c.file_id))
        .where(true(), *where)
        .order_by(r.c.request_id.desc())
        .limit(limit)
    )
    if states:
        stmt = stmt.where(r.c.state.in_(list(states)))
    if panda_id:
        stmt = stmt.where(r.c.panda_id == panda_id)
    if task_id:
        stmt = stmt.where(r.c.task_id == task_id)
    if kind:
        stmt = stmt.where(r.c.kind == kind)
    return list(conn.execute(stmt).mappings())


def requests_of_file(conn: Connection, file_id: int) -> list[Any]:
    """Every request of one file."""
    return list(conn.execute(select(ddm_requests).where(ddm_requests.c.file_id == file_id)).mappings())


def requests_of_jobs(conn: Connection, panda_ids: Sequence[int]) -> dict[int, list[Any]]:
    """Requests made for jobs, grouped by panda_id."""
    out: dict[int, list[Any]] = defaultdict(list)
    for part in chunks(sorted(set(panda_ids))):
        for row in conn.execute(select(ddm_requests).where(ddm_requests.c.panda_id.in_(list(part)))).mappings():
            out[int(row["panda_id"])].append(row)
    return out
