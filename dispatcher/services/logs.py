"""GetJobLog: fetch a job's log tarball from configured storage, verified, bounded, in chunks.

The pilot stores ``<job_name>.job.log.tgz`` as the job's LOG file and reports its pfn, size and
adler32. That pfn is data a submitter or a pilot chose, so it is resolved, never trusted
(:mod:`ddm.locations`): only a location inside a configured storage element is read, and a
refused one gets the same answer whether or not something exists there.

Reading is bounded and kept away from the database: each call runs on a small thread pool of its
own (``log_reads_in_flight`` threads; more calls at once get RESOURCE_EXHAUSTED), every blocking
step is bounded by one overall deadline (``log_deadline_s``), the tarball by ``log_max_bytes`` and
what it unpacks to by ``log_max_unpacked_bytes``. The bytes go through a temporary file and are
sent in 1 MiB chunks, so memory does not grow with the log. A copy whose adler32 differs from the
catalog is refused (a corrupted log is an error, not a log).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from sqlalchemy import select

from ailuro.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unavailable,
)
from ailuro.v1 import submission_pb2
from ddm.bounded import fetch_bounded
from ddm.locations import Location, StorageLocations
from ddm.tarballs import TarLimits, base_name, walk
from dispatcher.auth.policy import Action
from dispatcher.identity import Identity
from dispatcher.services import authz
from dispatcher.services.runtime import Runtime
from dispatcher.store.schema import files, jobs

CHUNK_BYTES = 1 << 20
MAX_MEMBER_CHARS = 255
MAX_NAMES_IN_ERROR = 20

T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class _LogFile:
    lfn: str
    pfn: str
    adler32: str
    status: str


@dataclass(frozen=True, kw_only=True)
class _Prepared:
    """What will be sent: a local temporary file, its size, and the tarball's member names."""

    path: Path
    size: int
    names: tuple[str, ...]


def locations_of(runtime: Runtime) -> StorageLocations:
    """The storage a dispatcher may read back from: its ``[[storage]]`` endpoints and storage root."""
    cfg = runtime.config
    roots = (cfg.storage_root,) if cfg.storage_root is not None else ()
    return StorageLocations.from_config(cfg.storage, roots=roots)


class JobLogService:
    """Reads log tarballs back for users (``ailuro job log``, the monitor)."""

    def __init__(self, runtime: Runtime, locations: StorageLocations | None = None) -> None:
        self.rt = runtime
        cfg = runtime.config
        self.locations = locations if locations is not None else locations_of(runtime)
        self.limits = TarLimits(max_unpacked_bytes=cfg.log_max_unpacked_bytes)
        self._executor = ThreadPoolExecutor(max_workers=cfg.log_reads_in_flight, thread_name_prefix="ailuro-log")
        self._active = 0  # touched on the event loop only

    def close(self) -> None:
        """Stop the log threads (each ends by its deadline at the latest)."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def stream(
        self, req: submission_pb2.GetJobLogRequest, identity: Identity
    ) -> AsyncIterator[submission_pb2.JobLogChunk]:
        """The chunks of the log (or of one member); all checks happen before the first one."""
        if req.panda_id <= 0:
            raise InvalidArgument(f"must be a positive job id, got {req.panda_id}", field="panda_id")
        if len(req.member) > MAX_MEMBER_CHARS or "/" in req.member or "\x00" in req.member:
            raise InvalidArgument("must be a base name such as payload.stdout", field="member")
        log_file = await self.rt.db_call(self._log_file, req.panda_id, identity)
        location = self._resolve(req.panda_id, log_file)
        limit = self.rt.config.log_reads_in_flight
        if self._active >= limit:
            raise ResourceExhausted(
                f"{limit} log reads are in flight, the limit (log_reads_in_flight); retry later", field="panda_id"
            )
        self._active += 1
        deadline = time.monotonic() + self.rt.config.log_deadline_s
        tmp = Path(tempfile.mkdtemp(prefix="ailuro-log-"))
        try:
            prepared = await self._run(deadline, self._prepare, location, log_file, req.member, tmp, deadline)
            with open(prepared.path, "rb") as source:
                first = True
                while True:
                    data = await self._run(deadline, source.read, CHUNK_BYTES)
                    if first:
                        yield submission_pb2.JobLogChunk(
                            data=data, lfn=log_file.lfn, pfn=log_file.pfn, size=prepared.size, members=prepared.names
                        )
                        first = False
                    elif data:
                        yield submission_pb2.JobLogChunk(data=data)
                    if not data:
                        break
        finally:
            self._active -= 1
            shutil.rmtree(tmp, ignore_errors=True)

    def _resolve(self, panda_id: int, log_file: _LogFile) -> Location:
        try:
            return self.locations.resolve(log_file.pfn, field="pfn")
        except InvalidArgument:
            raise FailedPrecondition(
                f"the log of job {panda_id} is not inside a configured storage element; it is not read", field="pfn"
            ) from None

    async def _run(self, deadline: float, fn: Callable[..., T], *args: object) -> T:
        """Run blocking ``fn`` on the log threads, giving up at ``deadline``."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise DeadlineExceeded("reading the log took longer than log_deadline_s", field="pfn")
        future = asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        try:
            return await asyncio.wait_for(future, timeout=left)
        except TimeoutError:
            raise DeadlineExceeded("reading the log took longer than log_deadline_s", field="pfn") from None

    def _log_file(self, panda_id: int, identity: Identity) -> _LogFile:
        with self.rt.db.read() as conn:
            authz.require_jobs(conn, [panda_id], identity, Action.READ, field="panda_id")
            status = conn.execute(select(jobs.c.status).where(jobs.c.panda_id == panda_id)).scalar_one_or_none()
            if status is None:
                raise NotFound(f"no job {panda_id}", field="panda_id")
            row = conn.execute(
                select(files.c.lfn, files.c.pfn, files.c.adler32, files.c.status).where(
                    files.c.panda_id == panda_id, files.c.type == "log"
                )
            ).first()
        if row is None or not row.pfn:
            raise FailedPrecondition(f"job {panda_id} ({status}) has no stored log yet", field="panda_id")
        return _LogFile(lfn=row.lfn, pfn=row.pfn, adler32=row.adler32, status=row.status)

    def _prepare(self, location: Location, log_file: _LogFile, member: str, tmp: Path, deadline: float) -> _Prepared:
        """Copy the tarball into ``tmp``, check its adler32, and extract ``member`` (blocking)."""
        tarball = tmp / "log.tgz"
        try:
            copied = fetch_bounded(location, tarball, deadline=deadline, max_bytes=self.rt.config.log_max_bytes)
            if log_file.adler32 and copied.adler32 != log_file.adler32:
                raise FailedPrecondition(
                    f"log {log_file.lfn} is corrupted: adler32 {copied.adler32}, catalog says {log_file.adler32}",
                    field="pfn",
                )
            if not member:
                scan = walk(tarball, limits=self.limits, deadline=deadline)
                return _Prepared(path=tarball, size=copied.size, names=scan.names)
            extracted = tmp / "member"
            with open(extracted, "wb") as sink:
                scan = walk(
                    tarball,
                    limits=self.limits,
                    deadline=deadline,
                    want=lambda n: base_name(n) == member,
                    sink=sink.write,
                )
        except OSError as exc:  # the temporary directory (disk full, ...), not the location
            raise Unavailable(f"could not stage the log locally ({type(exc).__name__}); retry later") from None
        if scan.found is None:
            shown = ", ".join(scan.names[:MAX_NAMES_IN_ERROR]) + (
                " ..." if len(scan.names) > MAX_NAMES_IN_ERROR else ""
            )
            raise NotFound(f"{log_file.lfn} has no {member!r} (it has {shown})", field="member")
        return _Prepared(path=extracted, size=scan.size, names=scan.names)
