"""Keeping every file the pilot writes for a job inside the job's work directory, whatever the job says.

Names in a job (its ``job_name``, its files' LFNs) come from a submitter, and a dispatcher of an
older version may have let through names that the current one rejects. The pilot does not rely
on the dispatcher: every file it places in a work directory goes through :func:`workdir_file`
(one plain file name directly below the work directory, never ``..``, ``/`` or a control
character), the log tarball is named by :func:`pilot.logtar.log_lfn` (the job name made into a
valid LFN, so the final report that carries it is accepted), and files the pilot creates where the
payload could have planted a symlink are opened with :func:`create_new` (never following one).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import BinaryIO

from ailuro.names import is_plain_file_name


class UnsafeName(ValueError):
    """A name from the job that cannot be a file directly inside the work directory."""


def workdir_file(workdir: Path, name: str) -> Path:
    """``workdir/name`` when ``name`` is a plain file name; :class:`UnsafeName` otherwise."""
    if not is_plain_file_name(name) or "\x00" in name:
        raise UnsafeName(f"{name!r} is not a plain file name")
    path = workdir / name
    if path.parent != workdir:  # belt and braces: the name above cannot do this
        raise UnsafeName(f"{name!r} leaves the work directory")
    return path


def create_new(path: Path) -> BinaryIO:
    """Open ``path`` for writing as a new regular file, replacing whatever was there.

    An existing entry (file or symlink) is unlinked first, then the file is created with
    ``O_EXCL | O_NOFOLLOW``: a symlink the payload put at this name is removed, never followed.
    """
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    return os.fdopen(fd, "wb")
