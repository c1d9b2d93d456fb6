"""A job's log tarball: find it, check it is safe to serve, and read payload stdout/stderr from it.

The pilot stages ``<job_name>.job.log.tgz`` out like any output and records it as the job's LOG
file with a ``pfn``. The monitor serves it only when that pfn is a local ``file://`` URL (or a
plain path) whose file name is the LOG file's name, that is a gzip tarball, and — when log roots
are configured — lies under one of them: a ``pfn`` is data a submitter could influence, so it
must not become a way to read arbitrary files of the monitor's host.
"""

from __future__ import annotations

import tarfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from sqlalchemy import Connection, select

from dispatcher.store.schema import files

MEMBERS = {"stdout": "payload.stdout", "stderr": "payload.stderr", "pilotlog": "pilot.log"}
"""View name -> member name inside the tarball (under its top directory)."""
VIEW_LIMIT = 1 << 20
"""At most the last MiB of a member is shown."""


@dataclass(frozen=True, kw_only=True)
class LogFile:
    """The LOG file row of a job and, when it can be served, its local path."""

    lfn: str
    pfn: str
    status: str
    path: Path | None
    reason: str

    def as_dict(self) -> dict[str, object]:
        """JSON form (``available`` says whether download/view links work)."""
        return {
            "lfn": self.lfn,
            "pfn": self.pfn,
            "status": self.status,
            "available": self.path is not None,
            "reason": self.reason,
        }


def _local_path(pfn: str) -> Path | None:
    if pfn.startswith("/"):
        return Path(pfn)
    parts = urlsplit(pfn)
    if parts.scheme == "file" and parts.netloc in ("", "localhost"):
        return Path(unquote(parts.path))
    return None


def find_log(conn: Connection, panda_id: int, roots: tuple[Path, ...] = ()) -> LogFile | None:
    """The job's LOG file (None if it has none) with the reason when it cannot be served."""
    row = conn.execute(
        select(files.c.lfn, files.c.pfn, files.c.status)
        .where(files.c.panda_id == panda_id, files.c.type == "log")
        .order_by(files.c.file_id.desc())
    ).first()
    if row is None:
        return None
    path, reason = _check(row.lfn, row.pfn, roots)
    return LogFile(lfn=row.lfn, pfn=row.pfn, status=row.status, path=path, reason=reason)


def _check(lfn: str, pfn: str, roots: tuple[Path, ...]) -> tuple[Path | None, str]:
    if not pfn:
        return None, "not stored yet (no pfn)"
    path = _local_path(pfn)
    if path is None:
        return None, "stored on a remote storage element (only file:// logs are served)"
    if path.name != lfn or not lfn.endswith(".tgz"):
        return None, "pfn does not name the log tarball"
    try:
        resolved = path.resolve(strict=True)
    except OSError:
        return None, "file not found on the monitor's host"
    if roots and not any(resolved.is_relative_to(r.resolve()) for r in roots):
        return None, "outside the configured log roots"
    if not resolved.is_file() or not tarfile.is_tarfile(resolved):
        return None, "not a readable tarball"
    return resolved, ""


def read_member(path: Path, view: str, *, limit: int = VIEW_LIMIT) -> tuple[str, bool] | None:
    """Text of member ``view`` (stdout/stderr/pilotlog): its last ``limit`` bytes and whether it was cut."""
    wanted = MEMBERS[view]
    with tarfile.open(path, "r:gz") as tar:
        for member in tar:
            if member.isfile() and (member.name == wanted or member.name.endswith("/" + wanted)):
                handle = tar.extractfile(member)
                if handle is None:
                    return None
                with handle:
                    cut = member.size > limit
                    if cut:
                        handle.seek(member.size - limit)
                    return handle.read(limit).decode("utf-8", errors="replace"), cut
    return None
