"""Final reports on disk until the dispatcher has acknowledged them.

A final report is the only record of how an attempt ended, so it is written (atomically, fsynced)
before it is sent and removed only when the dispatcher answered OK, STALE_EPOCH or NOT_FOUND.
A pilot that starts with a spool directory holding reports resends them; so does a pilot that
reconnects. Reports the dispatcher REJECTED are moved to ``rejected/`` for a human to look at,
since sending them again cannot succeed.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from ailuro.v1 import pilot_pb2

log = logging.getLogger(__name__)


class FinalSpool:
    """A directory of pending ``JobFinal`` messages, one file per (panda_id, lease_epoch)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def _path(self, panda_id: int, epoch: int) -> Path:
        return self.directory / f"final-{panda_id}-{epoch}.pb"

    def put(self, final: pilot_pb2.JobFinal) -> Path:
        """Store ``final`` durably (write to a temporary name, fsync, rename, fsync the directory)."""
        path = self._path(final.panda_id, final.lease_epoch)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as fh:
            fh.write(final.SerializeToString())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return path

    def pending(self) -> list[pilot_pb2.JobFinal]:
        """All stored reports, oldest first; unreadable files are moved aside and skipped."""
        finals: list[tuple[float, pilot_pb2.JobFinal]] = []
        for path in self.directory.glob("final-*.pb"):
            try:
                final = pilot_pb2.JobFinal.FromString(path.read_bytes())
                finals.append((path.stat().st_mtime, final))
            except FileNotFoundError:
                continue  # acknowledged meanwhile
            except Exception as exc:  # a corrupt file must not block the others
                log.error("unreadable final report %s (%s): moved to rejected/", path, exc)
                self._move_to_rejected(path)
        return [f for _, f in sorted(finals, key=lambda t: t[0])]

    def contains(self, panda_id: int, epoch: int) -> bool:
        """Whether the report for this attempt is still pending."""
        return self._path(panda_id, epoch).exists()

    def remove(self, panda_id: int, epoch: int) -> bool:
        """Forget an acknowledged report; whether it was there."""
        try:
            self._path(panda_id, epoch).unlink()
            return True
        except FileNotFoundError:
            return False

    def reject(self, panda_id: int, epoch: int) -> None:
        """Move a report the dispatcher refused out of the way (kept for inspection)."""
        self._move_to_rejected(self._path(panda_id, epoch))

    def _move_to_rejected(self, path: Path) -> None:
        target = self.directory / "rejected"
        target.mkdir(exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            path.replace(target / path.name)
