"""The job's log tarball, ``<job_name>.job.log.tgz`` as in PanDA.

It holds the payload's stdout and stderr and the pilot's log for the job, under a top directory
named like the tarball without ``.tgz``, so unpacking several logs side by side never mixes them.
The pilot's log of a job is kept in memory (:class:`JobLog`) and written straight into the
tarball: no file to create and delete per job.
"""

from __future__ import annotations

import io
import logging
import tarfile
import time
from collections.abc import Sequence
from pathlib import Path

from ailuro.names import safe_file_name
from pilot.sandbox import create_new

LOG_SUFFIX = ".job.log.tgz"
JOB_LOG_LIMIT = 1024 * 1024
"""Most bytes of pilot messages one job's log keeps (later ones are counted, not kept)."""
COMPRESS_LEVEL = 6
"""gzip level of the tarball: zlib's default, much faster than tarfile's 9 on large payload output."""
_FORMAT = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")


class JobLog(logging.Handler):
    """A logging handler keeping one job's formatted messages in memory, up to ``limit`` bytes."""

    def __init__(self, limit: int = JOB_LOG_LIMIT) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(_FORMAT)
        self.limit = limit
        self._lines: list[str] = []
        self._size = 0
        self._dropped = 0

    def emit(self, record: logging.LogRecord) -> None:
        """Keep the formatted record (or count it once the limit is reached)."""
        try:
            line = self.format(record) + "\n"
        except Exception:  # a broken message must not break the job
            self.handleError(record)
            return
        if self._size + len(line) > self.limit:
            self._dropped += 1
            return
        self._lines.append(line)
        self._size += len(line)

    def text(self) -> str:
        """Everything kept, plus a note of what was dropped."""
        note = f"... {self._dropped} more messages dropped (over {self.limit} bytes)\n" if self._dropped else ""
        return "".join(self._lines) + note


class ToPilotLog(logging.Handler):
    """Hands a job's messages on to the pilot's own log: warnings and errors always, the rest at ``-v``.

    Why: a job's routine messages (started, ended, staged out, tarball) are all in its pilot.log;
    writing each a second time to the pilot's stderr cost a formatting and a write per line. The
    pilot's log keeps a line when a job comes and one when it ends (:mod:`pilot.main`).
    """

    _shared: ToPilotLog | None = None

    @classmethod
    def shared(cls) -> ToPilotLog:
        """The one instance every job logger uses, its level set by the pilot's (``-v``) now."""
        if cls._shared is None:
            cls._shared = cls()
        verbose = logging.getLogger("pilot.job").isEnabledFor(logging.DEBUG)
        cls._shared.level = logging.DEBUG if verbose else logging.WARNING
        return cls._shared

    def emit(self, record: logging.LogRecord) -> None:
        """Pass ``record`` to the handlers of the pilot's ``pilot.job`` logger."""
        logging.getLogger("pilot.job").handle(record)


def log_lfn(job_name: str, panda_id: int = 0) -> str:
    """The conventional LOG file name of a job, ``<job_name>.job.log.tgz``.

    The job name is made a valid LFN first (``ailuro.names.safe_file_name``: ``../../x`` becomes
    ``_.._x.job.log.tgz``, an empty name the panda id), so the tarball always lands inside the
    work directory and the final report naming it is accepted by the dispatcher.
    """
    return safe_file_name(job_name, fallback=str(panda_id or "job"), suffix=LOG_SUFFIX)


def make_log_tarball(path: Path, members: Sequence[tuple[Path | bytes, str]]) -> Path:
    """Write a gzip tarball at ``path`` holding ``members`` (source file or content, name inside).

    Missing files are skipped. Member names go under ``<tarball name without .tgz>/``. Returns
    ``path``. The file is written as ``<path>.part`` (a symlink planted there is replaced, not
    followed) and renamed into place.
    """
    top = path.name[: -len(".tgz")] if path.name.endswith(".tgz") else path.name
    tmp = path.with_name(path.name + ".part")
    with create_new(tmp) as fh, tarfile.open(fileobj=fh, mode="w:gz", compresslevel=COMPRESS_LEVEL) as tar:
        for source, name in members:
            if isinstance(source, bytes):
                info = tarfile.TarInfo(f"{top}/{name}")
                info.size, info.mtime, info.mode = len(source), int(time.time()), 0o644
                tar.addfile(info, io.BytesIO(source))
            elif source.is_file():
                tar.add(source, arcname=f"{top}/{name}", recursive=False)
    tmp.replace(path)
    return path
