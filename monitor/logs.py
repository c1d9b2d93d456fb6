"""A job's log tarball: find it, check it is safe to serve, and read payload stdout/stderr from it.

The pilot stages ``<job_name>.job.log.tgz`` out like any output and records it as the job's LOG
file with a ``pfn``. A ``pfn`` is data a submitter could influence, so the monitor resolves it the
way the dispatcher does (:mod:`ddm.locations`): it serves a log only when the pfn lies inside
configured storage (the queue file's ``[[storage]]`` endpoints and the ``--log-root``
directories; with neither, no log is served), is a local ``file://`` location whose file name is
the LOG file's name, and is a regular file holding a gzip tarball. Reading it is bounded too
(:mod:`ddm.tarballs`): a gzip bomb stops at the unpacked-size limit.
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO
from urllib.parse import unquote, urlsplit

from sqlalchemy import Connection, select

from ailuro.errors import AiluroError, FailedPrecondition, InvalidArgument
from ddm.locations import Location, StorageLocations, open_regular_file
from ddm.tarballs import TarLimits, walk
from dispatcher.store.schema import files

MEMBERS = {"stdout": "payload.stdout", "stderr": "payload.stderr", "pilotlog": "pilot.log"}
"""View name -> member name inside the tarball (under its top directory)."""
VIEW_LIMIT = 1 << 20
"""At most the last MiB of a member is shown."""
TAR_LIMITS = TarLimits()
"""How much of a tarball the monitor unpacks before giving up (a gzip bomb stops here)."""
READ_CHUNK = 1 << 20


@dataclass(frozen=True, kw_only=True)
class LogFile:
    """The LOG file row of a job and, when it can be served, its checked location."""

    lfn: str
    pfn: str
    status: str
    path: Path | None
    reason: str
    location: Location | None = None

    def as_dict(self) -> dict[str, object]:
        """JSON form (``available`` says whether download/view links work)."""
        return {
            "lfn": self.lfn,
            "pfn": self.pfn,
            "status": self.status,
            "available": self.path is not None,
            "reason": self.reason,
        }


def find_log(conn: Connection, panda_id: int, locations: StorageLocations) -> LogFile | None:
    """The job's LOG file (None if it has none) with the reason when it cannot be served."""
    row = conn.execute(
        select(files.c.lfn, files.c.pfn, files.c.status)
        .where(files.c.panda_id == panda_id, files.c.type == "log")
        .order_by(files.c.file_id.desc())
    ).first()
    if row is None:
        return None
    location, reason = _check(row.lfn, row.pfn, locations)
    path = Path(location.path) if location is not None else None
    return LogFile(lfn=row.lfn, pfn=row.pfn, status=row.status, path=path, reason=reason, location=location)


def _name_of(pfn: str) -> str:
    """The file name a pfn ends with (no access to the host)."""
    return PurePosixPath(unquote(urlsplit(pfn).path if "://" in pfn else pfn)).name


def _check(lfn: str, pfn: str, locations: StorageLocations) -> tuple[Location | None, str]:
    if not pfn:
        return None, "not stored yet (no pfn)"
    if _name_of(pfn) != lfn or not lfn.endswith(".tgz"):
        return None, "pfn does not name the log tarball"
    if not locations.configured:
        return None, "no storage is configured for the monitor (--queues or --log-root)"
    try:
        location = locations.resolve(pfn)
    except InvalidArgument:
        return None, "outside the configured storage (--queues, --log-root)"
    if location.scheme != "file":
        return None, "stored on a remote storage element (only file:// logs are served)"
    try:
        with open_file(location) as handle:
            if not tarfile.is_tarfile(handle):
                return None, "not a readable tarball"
    except FileNotFoundError:
        return None, "file not found in storage"
    except AiluroError:
        return None, "not a regular file in storage"
    return location, ""


def open_file(location: Location) -> BinaryIO:
    """The resolved log opened for reading (regular file inside storage, checked after opening)."""
    return os.fdopen(open_regular_file(location), "rb")


def iter_file(location: Location) -> Iterator[bytes]:
    """The log's bytes in chunks (for a download), from a descriptor checked when opened."""
    with open_file(location) as handle:
        while chunk := handle.read(READ_CHUNK):
            yield chunk


def read_member(location: Location, view: str, *, limit: int = VIEW_LIMIT) -> tuple[str, bool] | None:
    """Text of member ``view`` (stdout/stderr/pilotlog): its last ``limit`` bytes and whether it was cut."""
    wanted = MEMBERS[view]
    tail = bytearray()

    def keep_tail(chunk: bytes) -> None:
        tail.extend(chunk)
        if len(tail) > 2 * limit:
            del tail[: len(tail) - limit]

    try:
        with open_file(location) as handle:
            scan = walk(
                handle,
                limits=TAR_LIMITS,
                want=lambda name: name == wanted or name.endswith("/" + wanted),
                sink=keep_tail,
                stop_at_match=True,
            )
    except FailedPrecondition:
        return None
    if scan.found is None:
        return None
    return bytes(tail[-limit:]).decode("utf-8", errors="replace"), scan.size > limit
