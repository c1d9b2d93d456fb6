"""The DDM catalog service: what ``DDMService`` calls, independent of gRPC (identity is an argument).

Validates every request (:mod:`dispatcher.ddm_validation`), then reads or writes the catalog
(:mod:`dispatcher.store.catalog`) in one transaction on the runtime's database thread pool. Only
measuring files at an SE (``RegisterFiles`` without size/adler32) leaves the dispatcher, and only
to URLs built from a configured SE endpoint and a checked ``scope``/``lfn``.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy.exc import IntegrityError

from ailuro.errors import FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted, Unavailable
from ailuro.queues import StorageElementConfig
from ailuro.v1 import ddm_pb2
from ddm.protocols import protocol_for
from ddm.storage import se_file_url
from dispatcher import ddm_validation as check
from dispatcher.identity import Identity
from dispatcher.services import authz
from dispatcher.services.runtime import Runtime
from dispatcher.store import catalog
from dispatcher.store.schema import ddm_datasets

log = logging.getLogger(__name__)

T = TypeVar("T")
PROBE_THREADS = 8
"""Files measured at an SE at once during one RegisterFiles call."""


@dataclass(frozen=True, kw_only=True)
class Registered:
    """The outcome of RegisterFiles: the stored file rows and replica states, in request order."""

    files: list[Any]
    replica_states: list[str]
    verify_requests: int


@dataclass(frozen=True, kw_only=True)
class _Measured:
    size: int
    adler32: str


def _once_more_on_conflict(fn: Callable[[], T]) -> T:
    """Run a registering transaction again if a concurrent caller inserted the same names first.

    The second run finds the other caller's rows and reuses them (registration is idempotent).
    """
    try:
        return fn()
    except IntegrityError:
        return fn()


class CatalogService:
    """Storage elements, datasets, files, replicas and DDM requests."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self.storage: dict[str, StorageElementConfig] = {se.name: se for se in runtime.config.storage}

    # --- storage elements ---------------------------------------------------------------------

    def list_storage(self) -> list[StorageElementConfig]:
        """The configured SEs by name."""
        return sorted(self.storage.values(), key=lambda s: s.name)

    def get_storage(self, name: str) -> StorageElementConfig:
        """One configured SE; ``NotFound`` when there is none of that name."""
        check.text(name, "name", required=True)
        if name not in self.storage:
            raise NotFound(f"no storage element {name!r}", field="name")
        return self.storage[name]

    # --- datasets -----------------------------------------------------------------------------

    async def create_dataset(self, dataset: str, identity: Identity) -> tuple[Any, bool]:
        """``(dataset row, created)``."""
        scope, name = check.did(dataset, "dataset")
        authz.require_scope(identity, scope, "dataset")

        def run() -> tuple[Any, bool]:
            with self.rt.db.write() as conn:
                existed = bool(catalog.list_datasets(conn, scope, name=name))
                catalog.ensure_dataset(conn, scope, name, now=self.rt.now())
                return catalog.list_datasets(conn, scope, name=name)[0], not existed

        return await self.rt.db_call(_once_more_on_conflict, run)

    async def list_datasets(self, scope: str, limit: int, identity: Identity) -> tuple[list[Any], bool]:
        """``(rows, truncated)``: datasets of the caller's VO scope (filtered in SQL)."""
        check.text(scope, "scope")
        n = check.limit(limit, "limit", default=1000)

        def run() -> list[Any]:
            with self.rt.db.read() as conn:
                where = authz.scope_filter(identity, ddm_datasets.c.scope)
                return catalog.list_datasets(conn, scope, limit=n + 1, where=where)

        rows = await self.rt.db_call(run)
        return rows[:n], len(rows) > n

    async def get_dataset(
        self, dataset: str, limit: int, after_lfn: str, identity: Identity
    ) -> tuple[Any, list[Any], str]:
        """``(dataset row, files, next_after_lfn)``; another VO's dataset is NOT_FOUND like an unknown one."""
        scope, name = check.did(dataset, "dataset")
        authz.visible_scope(identity, scope, f"no dataset {scope}:{name}", "dataset")
        n = check.limit(limit, "limit", default=check.MAX_LIST)
        check.text(after_lfn, "after_lfn")

        def run() -> tuple[Any, list[Any]]:
            with self.rt.db.read() as conn:
                rows = catalog.list_datasets(conn, scope, name=name)
                if not rows:
                    raise NotFound(f"no dataset {scope}:{name}", field="dataset")
                return rows[0], catalog.dataset_files_page(conn, scope, name, after_lfn=after_lfn, limit=n + 1)

        row, files = await self.rt.db_call(run)
        more = len(files) > n
        files = files[:n]
        return row, files, files[-1]["lfn"] if more else ""

    # --- files and replicas -------------------------------------------------------------------

    async def register_files(self, req: ddm_pb2.RegisterFilesRequest, identity: Identity) -> Registered:
        """Register files on an SE, all or nothing (see ``ddm.proto``)."""
        check.register_files(req, self.storage)
        scope, name = catalog.split_did(req.dataset)
        authz.require_scope(identity, scope, "dataset")
        se = self.storage[req.storage_element]
        measured = await self._measure(se, scope, [(i, f.lfn) for i, f in enumerate(req.files) if not f.adler32])
        entries = []
        for i, f in enumerate(req.files):
            m = measured.get(i)
            size, adler = (m.size, m.adler32) if m else (f.size, f.adler32.lower())
            entries.append(catalog.FileEntry(lfn=f.lfn, size=size, adler32=adler, guid=f.guid or str(uuid.uuid4())))

        def run() -> Registered:
            now = self.rt.now()
            with self.rt.db.write() as conn:
                ds = catalog.ensure_dataset(conn, scope, name, now=now)
                ids = catalog.add_files(conn, scope, entries, dataset_id=ds, now=now)
                reps = catalog.replicas_of(conn, ids.values())
                states, items, claimed = [], [], []
                for i, e in enumerate(entries):
                    fid = ids[e.lfn]
                    have = {r["se"]: r["state"] for r in reps.get(fid, [])}
                    url = se_file_url(se.endpoints[0], scope=scope, lfn=e.lfn)
                    # measured here, or already verified: available; given size/adler32 are a claim
                    # that the agent compares with the SE's (a verify request)
                    ok = i in measured or have.get(se.name) == catalog.AVAILABLE
                    states.append(catalog.AVAILABLE if ok else catalog.UNVERIFIED)
                    items.append((fid, states[-1], url))
                    if not ok:
                        claimed.append(fid)
                catalog.set_replicas(conn, se.name, items, now=now)
                catalog.add_requests(
                    conn, kind="verify", file_ids=claimed, dest_se=se.name, activity="register", now=now
                )
                verifies = len(claimed)
                files = catalog.files_by_id(conn, ids.values())
            return Registered(
                files=[files[ids[e.lfn]] for e in entries], replica_states=states, verify_requests=verifies
            )

        return await self.rt.db_call(_once_more_on_conflict, run)

    async def _measure(
        self, se: StorageElementConfig, scope: str, wanted: list[tuple[int, str]]
    ) -> dict[int, _Measured]:
        """Size and adler32 of files at the SE, by request index (on threads: the SE may be slow)."""
        if not wanted:
            return {}
        if not se.endpoints:
            raise FailedPrecondition(f"storage element {se.name!r} has no endpoint", field="storage_element")

        def one(item: tuple[int, str]) -> tuple[int, _Measured]:
            i, lfn = item
            url = se_file_url(se.endpoints[0], scope=scope, lfn=lfn)
            try:
                proto = protocol_for(url)
                return i, _Measured(size=proto.stat(url).size, adler32=proto.checksum(url).lower())
            except NotFound:
                raise NotFound(f"{scope}:{lfn} is not on {se.name}", field=f"files[{i}].lfn") from None
            except InvalidArgument:
                raise FailedPrecondition(f"no protocol plugin serves {se.name}", field="storage_element") from None
            except Unavailable as exc:
                # the SE's own message may name hosts and paths: log it, answer in general terms
                log.warning("measuring %s on %s failed: %s", lfn, se.name, exc)
                raise Unavailable(f"{se.name} could not be read; retry later", field=f"files[{i}].lfn") from None

        def run() -> dict[int, _Measured]:
            with ThreadPoolExecutor(max_workers=PROBE_THREADS, thread_name_prefix="ddm-probe") as pool:
                return dict(pool.map(one, wanted))

        return await asyncio.to_thread(run)

    def _resolve(self, conn: Any, did: str, field: str) -> list[Any]:
        """The file ``scope:lfn``, else the files of dataset ``scope:name``; ``NotFound`` when neither."""
        scope, name = catalog.split_did(did, field=field)
        row = catalog.lookup_files(conn, [(scope, name)]).get((scope, name))
        if row is not None:
            return [row]
        try:
            return catalog.dataset_files(conn, scope, name)
        except NotFound:
            raise NotFound(f"no file or dataset {did}", field=field) from None

    async def list_replicas(
        self, req: ddm_pb2.ListReplicasRequest, identity: Identity
    ) -> tuple[list[tuple[Any, Any]], str]:
        """``([(file row, replica row)], next_after_lfn)``; another VO's scope reads as unknown."""
        scope, name = check.did(req.did, "did")
        authz.visible_scope(identity, scope, f"no file or dataset {req.did}", "did")
        check.storage_element(req.storage_element, "storage_element", self.storage, required=False)
        n = check.limit(req.limit, "limit", default=check.MAX_LIST)
        check.text(req.after_lfn, "after_lfn")

        def run() -> tuple[list[Any], dict[int, list[Any]]]:
            with self.rt.db.read() as conn:
                row = catalog.lookup_files(conn, [(scope, name)]).get((scope, name))
                if row is not None:
                    files = [row] if not req.after_lfn else []
                else:
                    try:
                        files = catalog.dataset_files_page(conn, scope, name, after_lfn=req.after_lfn, limit=n + 1)
                    except NotFound:
                        raise NotFound(f"no file or dataset {req.did}", field="did") from None
                return files, catalog.replicas_of(conn, [int(f["file_id"]) for f in files[:n]])

        files, reps = await self.rt.db_call(run)
        more = len(files) > n
        files = files[:n]
        pairs = [
            (f, r)
            for f in files
            for r in reps.get(int(f["file_id"]), [])
            if not req.storage_element or r["se"] == req.storage_element
        ]
        return pairs, files[-1]["lfn"] if more else ""

    # --- requests -----------------------------------------------------------------------------

    async def request_transfers(self, req: ddm_pb2.RequestTransfersRequest, identity: Identity) -> list[int]:
        """One request per file (open ones reused); refused when a file cannot be served."""
        kind, dest, source = check.request_transfers(req, self.storage)
        authz.require_scope(identity, catalog.split_did(req.did, field="did")[0], "did")
        activity = req.activity or f"api-{kind}"

        def run() -> list[int]:
            now = self.rt.now()
            with self.rt.db.write() as conn:
                files = self._resolve(conn, req.did, "did")
                if len(files) > check.MAX_REQUEST_FILES:
                    raise ResourceExhausted(
                        f"{req.did} has {len(files)} files; at most {check.MAX_REQUEST_FILES} per call", field="did"
                    )
                reps = catalog.replicas_of(conn, [int(f["file_id"]) for f in files])
                for f in files:
                    self._servable(kind, dest, f, reps.get(int(f["file_id"]), []))
                by_file = catalog.add_requests(
                    conn,
                    kind=kind,
                    file_ids=[int(f["file_id"]) for f in files],
                    dest_se=dest.name,
                    source_se=source.name if source else "",
                    activity=activity,
                    now=now,
                )
                if req.lifetime_s:  # expiry: a delete request due when the lifetime is over
                    catalog.add_requests(
                        conn,
                        kind="delete",
                        file_ids=[int(f["file_id"]) for f in files],
                        dest_se=dest.name,
                        activity="expiry",
                        now=now,
                        not_before=now + req.lifetime_s,
                    )
                return [by_file[int(f["file_id"])] for f in files]

        ids = await self.rt.db_call(run)
        log.info("%s requested %d %s(s) of %s to %s", identity.name, len(ids), kind, req.did, dest.name)
        return ids

    def _servable(self, kind: str, dest: StorageElementConfig, f: Any, replicas: list[Any]) -> None:
        """Refuse a request the agent could only fail: nothing to copy, stage or verify."""
        did = f"{f['scope']}:{f['lfn']}"
        if kind == "transfer":
            if not any(r["state"] == catalog.AVAILABLE and r["se"] in self.storage for r in replicas):
                raise FailedPrecondition(f"{did} has no available replica to copy from", field="did")
        elif not any(r["se"] == dest.name for r in replicas):
            raise FailedPrecondition(f"{did} has no replica on {dest.name}", field="did")
        elif kind == "delete" and not any(r["state"] == catalog.AVAILABLE and r["se"] != dest.name for r in replicas):
            raise FailedPrecondition(f"{did}: the replica on {dest.name} is its only available copy", field="did")

    async def list_transfers(self, req: ddm_pb2.ListTransfersRequest, identity: Identity) -> list[Any]:
        """Requests the caller may see (:func:`authz.request_filter`) with file names, newest first."""
        states = check.request_states(req.states)
        kind = check.request_kind(req.kind, allow_unspecified=True)
        check.non_negative_id(req.panda_id, "panda_id")
        check.non_negative_id(req.task_id, "task_id")
        n = check.limit(req.limit, "limit", default=200)

        def run() -> list[Any]:
            with self.rt.db.read() as conn:
                return catalog.list_requests(
                    conn,
                    states=states,
                    panda_id=req.panda_id,
                    task_id=req.task_id,
                    limit=n,
                    kind=kind,
                    where=authz.request_filter(identity),
                )

        return await self.rt.db_call(run)

    async def cancel_transfers(self, req: ddm_pb2.CancelTransfersRequest, identity: Identity) -> int:
        """Withdraw open requests; how many were open."""
        check.cancel_transfers(req)
        reason = req.reason or f"withdrawn by {identity.name}"

        def run() -> int:
            with self.rt.db.write() as conn:
                ids = authz.cancellable_requests(conn, list(req.request_ids), identity)
                return catalog.cancel_requests(conn, ids, now=self.rt.now(), reason=reason)

        return await self.rt.db_call(run)
