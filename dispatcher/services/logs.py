"""GetJobLog: fetch a job's log tarball from wherever the pilot stored it, verified, in chunks.

The pilot stores ``<job_name>.job.log.tgz`` as the job's LOG file and reports its pfn, size and
adler32; the dispatcher reads it back through the same ``ddm`` protocol plugins and refuses to
serve a copy whose adler32 differs from the catalog (a corrupted log is an error, not a log).
"""

from __future__ import annotations

import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from sqlalchemy import select

from ailuro.errors import FailedPrecondition, Internal, InvalidArgument, NotFound
from ailuro.v1 import submission_pb2
from ddm.protocols import protocol_for
from dispatcher.identity import Identity
from dispatcher.services.runtime import Runtime
from dispatcher.store.schema import files, jobs

CHUNK_BYTES = 1 << 20
MAX_MEMBER_CHARS = 255


@dataclass(frozen=True, kw_only=True)
class _LogFile:
    lfn: str
    pfn: str
    adler32: str
    status: str


class JobLogService:
    """Reads log tarballs back for users (``ailuro job log``, the monitor)."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime

    async def chunks(
        self, req: submission_pb2.GetJobLogRequest, identity: Identity
    ) -> Iterator[submission_pb2.JobLogChunk]:
        """The chunks to stream for ``req``; all checks happen before the first one is produced."""
        if req.panda_id <= 0:
            raise InvalidArgument(f"must be a positive job id, got {req.panda_id}", field="panda_id")
        if len(req.member) > MAX_MEMBER_CHARS or "/" in req.member:
            raise InvalidArgument("must be a base name such as payload.stdout", field="member")
        log_file = await self.rt.db_call(self._log_file, req.panda_id)
        return await self.rt.db_call(_read_verified, log_file, req.member)

    def _log_file(self, panda_id: int) -> _LogFile:
        with self.rt.db.read() as conn:
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


def _read_verified(log_file: _LogFile, member: str) -> Iterator[submission_pb2.JobLogChunk]:
    """Copy the tarball locally, check its adler32, and build the chunk list (blocking)."""
    with tempfile.TemporaryDirectory(prefix="ailuro-log-") as tmp:
        local = Path(tmp) / "log.tgz"
        try:
            copied = protocol_for(log_file.pfn).copy_in(log_file.pfn, local)
        except NotFound:
            raise NotFound(f"the log {log_file.lfn} is gone from {log_file.pfn}", field="panda_id") from None
        if log_file.adler32 and copied.adler32 != log_file.adler32:
            raise Internal(
                f"log {log_file.lfn} at {log_file.pfn} is corrupted: adler32 {copied.adler32}, "
                f"catalog says {log_file.adler32}"
            )
        try:
            with tarfile.open(local, "r:gz") as tar:
                names = {PurePosixPath(m.name).name: m for m in tar.getmembers() if m.isfile()}
                if member:
                    info = names.get(member)
                    if info is None:
                        raise NotFound(f"{log_file.lfn} has no {member!r} (it has {sorted(names)})", field="member")
                    extracted = tar.extractfile(info)
                    data = extracted.read() if extracted is not None else b""
                else:
                    data = local.read_bytes()
        except tarfile.TarError as exc:
            raise Internal(f"log {log_file.lfn} is not a readable tarball: {exc}") from None
    pieces = [data[i : i + CHUNK_BYTES] for i in range(0, len(data), CHUNK_BYTES)] or [b""]
    first = submission_pb2.JobLogChunk(
        data=pieces[0], lfn=log_file.lfn, pfn=log_file.pfn, size=len(data), members=sorted(names)
    )
    return iter([first, *(submission_pb2.JobLogChunk(data=p) for p in pieces[1:])])
