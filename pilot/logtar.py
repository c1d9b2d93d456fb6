"""The job's log tarball, ``<job_name>.job.log.tgz`` as in PanDA.

It holds the payload's stdout and stderr and the pilot's log for the job, under a top directory
named like the tarball without ``.tgz``, so unpacking several logs side by side never mixes them.
"""

from __future__ import annotations

import tarfile
from collections.abc import Sequence
from pathlib import Path

from ailuro.names import safe_file_name
from pilot.sandbox import create_new

LOG_SUFFIX = ".job.log.tgz"


def log_lfn(job_name: str, panda_id: int = 0) -> str:
    """The conventional LOG file name of a job, ``<job_name>.job.log.tgz``.

    The job name is made a valid LFN first (``ailuro.names.safe_file_name``: ``../../x`` becomes
    ``_.._x.job.log.tgz``, an empty name the panda id), so the tarball always lands inside the
    work directory and the final report naming it is accepted by the dispatcher.
    """
    return safe_file_name(job_name, fallback=str(panda_id or "job"), suffix=LOG_SUFFIX)


def make_log_tarball(path: Path, members: Sequence[tuple[Path, str]]) -> Path:
    """Write a gzip tarball at ``path`` holding ``members`` (source file, name inside); missing files are skipped.

    Member names go under ``<tarball name without .tgz>/``. Returns ``path``. The file is written
    as ``<path>.part`` (a symlink planted there is replaced, not followed) and renamed into place.
    """
    top = path.name[: -len(".tgz")] if path.name.endswith(".tgz") else path.name
    tmp = path.with_name(path.name + ".part")
    with create_new(tmp) as fh, tarfile.open(fileobj=fh, mode="w:gz") as tar:
        for source, name in members:
            if source.is_file():
                tar.add(source, arcname=f"{top}/{name}", recursive=False)
    tmp.replace(path)
    return path
