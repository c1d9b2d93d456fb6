"""Final reports on disk until the dispatcher has acknowledged them.

A final report is the only record of how an attempt ended, so it is written durably (fsynced)
before it is sent and dropped only when the dispatcher answered OK, STALE_EPOCH or NOT_FOUND.
A pilot that starts with a spool directory holding reports resends them; so does a pilot that
reconnects. Reports the dispatcher REJECTED are moved to ``rejected/`` for a human to look at,
since sending them again cannot succeed.

Why slot files: a file per report cost a create, an fsync, a rename, an fsync of the directory and
an unlink per job (~0.45 ms of CPU here, the most expensive file-system work of a short job). Now
each pilot keeps a few pre-created *slot files* (``slot-<n>.spool``), each holding at most one
report: ``put`` overwrites a free slot in place and ``fdatasync``s it, so the report is durable
before it is sent; a slot's name was made durable (directory fsync) once, when it was created.
A record is ``MAGIC, length, crc32, JobFinal``: a slot torn by a crash while being rewritten
fails its checksum and counts as empty (that report was never sent: its write had not returned).
Dropping a report zeroes the slot's header without a sync; if that is lost in a crash, the next
pilot resends an acknowledged report, which the dispatcher answers like any duplicate.

A pilot holds an ``flock`` on each of its slots for its lifetime, so pilots sharing a spool never
write into each other's slots; a slot whose owner died is adopted (with its report, if any) by the
next pilot that looks. Reports of a live other pilot are listed by ``pending`` (as before, any
report in the directory is resent) but only their owner rewrites them. ``final-<id>-<epoch>.pb``
files (one report each, what earlier pilots wrote) are still read, resent and removed.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import struct
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path

from ailuro.v1 import pilot_pb2

log = logging.getLogger(__name__)

MAGIC = b"AFS1"
_HEADER = struct.Struct("!4sII")  # magic, payload length, crc32 of the payload
_EMPTY = bytes(_HEADER.size)


@dataclass(kw_only=True)
class _Slot:
    path: Path
    fd: int
    key: tuple[int, int] | None = None
    """(panda_id, lease_epoch) of the report it holds; ``None`` when free."""


def _record(final: pilot_pb2.JobFinal) -> bytes:
    body = final.SerializeToString()
    return _HEADER.pack(MAGIC, len(body), zlib.crc32(body)) + body


def _parse(data: bytes) -> bytes | None:
    """The report bytes of a slot's content; ``None`` for a free or torn slot."""
    if len(data) < _HEADER.size:
        return None
    magic, size, crc = _HEADER.unpack_from(data)
    body = data[_HEADER.size : _HEADER.size + size]
    if magic != MAGIC or len(body) != size or zlib.crc32(body) != crc:
        return None
    return body


def _read_fd(fd: int) -> bytes:
    size = os.fstat(fd).st_size
    return os.pread(fd, size, 0) if size else b""


class FinalSpool:
    """A directory of pending ``JobFinal`` messages, one per (panda_id, lease_epoch)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._slots: list[_Slot] = []
        self._by_key: dict[tuple[int, int], _Slot] = {}
        self._dropped: set[tuple[int, int]] = set()
        """Reports of another live pilot's slots acknowledged here (its owner still holds them)."""
        self._adopt()

    # --- slots ---------------------------------------------------------------------------------

    def _adopt(self) -> list[tuple[Path, bytes]]:
        """Take over slots nobody holds (their pilot died); return the reports of slots others hold."""
        foreign: list[tuple[Path, bytes]] = []
        mine = {s.path for s in self._slots}
        for path in sorted(self.directory.glob("slot-*.spool")):
            if path in mine:
                continue
            try:
                fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                with contextlib.suppress(OSError):
                    body = _parse(_read_fd(fd))
                    if body is not None:
                        foreign.append((path, body))
                os.close(fd)
                continue
            slot = _Slot(path=path, fd=fd)
            body = _parse(_read_fd(fd))
            if body is not None:
                try:
                    final = pilot_pb2.JobFinal.FromString(body)
                    slot.key = (final.panda_id, final.lease_epoch)
                    self._by_key[slot.key] = slot
                except Exception as exc:  # a valid checksum over a bad message: keep it for a human
                    log.error("unreadable final report in %s (%s): moved to rejected/", path, exc)
                    self._write_rejected(path.with_suffix(".pb").name, body)
                    os.pwrite(fd, _EMPTY, 0)
            self._slots.append(slot)
        return foreign

    def _new_slot(self) -> _Slot:
        """Create a slot file (its name made durable once, with an fsync of the directory)."""
        n = len(self._slots)
        while True:
            path = self.directory / f"slot-{n}.spool"
            n += 1
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            except FileExistsError:
                continue
            try:  # another pilot's scan may have locked the new file first: it is then theirs
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                os.close(fd)
        os.fsync(fd)
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        slot = _Slot(path=path, fd=fd)
        self._slots.append(slot)
        return slot

    def _legacy_path(self, panda_id: int, epoch: int) -> Path:
        return self.directory / f"final-{panda_id}-{epoch}.pb"

    # --- the spool's operations ----------------------------------------------------------------

    def put(self, final: pilot_pb2.JobFinal) -> Path:
        """Store ``final`` durably (in a slot, ``fdatasync``ed); returns the slot's path.

        Thread-safe: the pilot spools from worker threads.
        """
        key = (final.panda_id, final.lease_epoch)
        record = _record(final)
        with self._lock:
            slot = self._by_key.get(key)
            if slot is None:
                slot = next((s for s in self._slots if s.key is None), None) or self._new_slot()
                slot.key = key
                self._by_key[key] = slot
            self._dropped.discard(key)
        os.pwrite(slot.fd, record, 0)
        os.fdatasync(slot.fd)
        return slot.path

    def pending(self) -> list[pilot_pb2.JobFinal]:
        """All stored reports, oldest first; unreadable files are moved aside and skipped."""
        finals: list[tuple[float, pilot_pb2.JobFinal]] = []
        with self._lock:
            foreign = self._adopt()
            own = [(s.path, _parse(_read_fd(s.fd))) for s in self._slots if s.key is not None]
        for path, body in [*own, *foreign]:
            if body is None:
                continue
            with contextlib.suppress(Exception):  # a foreign slot rewritten or gone meanwhile
                final = pilot_pb2.JobFinal.FromString(body)
                if (final.panda_id, final.lease_epoch) not in self._dropped:
                    finals.append((path.stat().st_mtime, final))
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
        key = (panda_id, epoch)
        if key in self._by_key or self._legacy_path(panda_id, epoch).exists():
            return True
        with self._lock:
            return key in self._foreign_keys()

    def remove(self, panda_id: int, epoch: int) -> bool:
        """Forget an acknowledged report; whether it was there."""
        key = (panda_id, epoch)
        with self._lock:
            slot = self._by_key.pop(key, None)
            if slot is not None:
                os.pwrite(slot.fd, _EMPTY, 0)  # no sync: a lost zeroing only resends an acked report
                slot.key = None
                return True
            if any(k == key for k in self._foreign_keys()):
                self._dropped.add(key)
                return True
        try:
            self._legacy_path(panda_id, epoch).unlink()
            return True
        except FileNotFoundError:
            return False

    def _foreign_keys(self) -> list[tuple[int, int]]:
        keys = []
        for _, body in self._adopt():
            with contextlib.suppress(Exception):
                final = pilot_pb2.JobFinal.FromString(body)
                if (final.panda_id, final.lease_epoch) not in self._dropped:
                    keys.append((final.panda_id, final.lease_epoch))
        return keys

    def reject(self, panda_id: int, epoch: int) -> None:
        """Move a report the dispatcher refused out of the way (kept for inspection)."""
        key = (panda_id, epoch)
        with self._lock:
            slot = self._by_key.pop(key, None)
            if slot is not None:
                body = _parse(_read_fd(slot.fd))
                if body is not None:
                    self._write_rejected(self._legacy_path(panda_id, epoch).name, body)
                os.pwrite(slot.fd, _EMPTY, 0)
                slot.key = None
                return
        self._move_to_rejected(self._legacy_path(panda_id, epoch))

    def close(self) -> None:
        """Close the slot files (their reports stay on disk; the locks go)."""
        with self._lock:
            for slot in self._slots:
                with contextlib.suppress(OSError):
                    os.close(slot.fd)
            self._slots.clear()
            self._by_key.clear()

    def __del__(self) -> None:
        if hasattr(self, "_slots"):
            self.close()

    def _write_rejected(self, name: str, body: bytes) -> None:
        target = self.directory / "rejected"
        target.mkdir(exist_ok=True)
        (target / name).write_bytes(body)

    def _move_to_rejected(self, path: Path) -> None:
        target = self.directory / "rejected"
        target.mkdir(exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            path.replace(target / path.name)
