"""The job's log tarball, ``<job_name>.job.log.tgz`` as in PanDA.

It holds the payload's stdout and stderr and the pilot's log for the job, under a top directory
named like the tarball without ``.tgz``, so unpacking several logs side by side never mixes them.
"""

from __future__ import annotations

import tarfile
from collections.abc import Sequence
from pathlib import Path

LOG_SUFFIX = ".job.log.tgz"


def log_lfn(job_name: str) -> str:
    """The conventional LOG file name of a job."""
    return f"{job_name}{LOG_SUFFIX}"


def make_log_tarball(path: Path, members: Sequence[tuple[Path, str]]) -> Path:
    """Write a gzip tarball at ``path`` holding ``members`` (source file, name inside); missing files are skipped.

    Member names go under ``<tarball name without .tgz>/``. Returns ``path``.
    """
    top = path.name[: -len(".tgz")] if path.name.endswith(".tgz") else path.name
    tmp = path.with_name(path.name + ".part")
    with tarfile.open(tmp, "w:gz") as tar:
        for source, name in members:
            if source.is_file():
                tar.add(source, arcname=f"{top}/{name}", recursive=False)
    tmp.replace(path)
    return path
