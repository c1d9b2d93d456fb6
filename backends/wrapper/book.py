"""The small JSON file every batch backend keeps: which workers it submitted, where they log.

A batch system forgets finished jobs (Slurm after ``MinJobAge``, LSF after ``CLEAN_PERIOD``,
HTCondor moves them to its history), and a factory may restart in between. The book keeps, per
batch id, the worker id, the log directory (where the wrapper's evidence lands), the native id
once known, whether the factory cancelled it, and a settled final state, so ``status`` can
always answer from evidence. Entries of ended workers are dropped after ``keep_final_s``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from backends.base import (
    PILOT_CLEAN_EXIT_CODES,
    PilotSpec,
    SubmittedWorker,
    WorkerState,
    WorkerStatus,
    describe_exit_code,
)
from backends.wrapper.evidence import read_evidence

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class BookEntry:
    """What a backend remembers about one submitted worker."""

    worker_id: str
    log_dir: str
    submitted_at: float
    native_id: str = ""
    """The batch system's own id when it differs from the batch id (a Slurm array element's job id)."""
    cancelled: bool = False
    final_state: str = ""
    """A settled :class:`~backends.base.WorkerState` value ("" while the worker may still change)."""
    exit_code: int | None = None
    diag: str = ""
    ended_at: float = 0.0


class WorkerBook:
    """Thread-safe, file-backed map batch id -> :class:`BookEntry`."""

    def __init__(self, path: Path, *, keep_final_s: float = 86400.0) -> None:
        self.path = path
        self.keep_final_s = keep_final_s
        self._lock = threading.Lock()
        self._entries: dict[str, BookEntry] = self._load()

    def get(self, batch_id: str) -> BookEntry | None:
        """The entry of ``batch_id``, if this backend submitted it."""
        with self._lock:
            return self._entries.get(batch_id)

    def add(self, entries: dict[str, BookEntry]) -> None:
        """Record newly submitted workers."""
        with self._lock:
            self._entries.update(entries)
            self._save()

    def record_array(
        self, spec: PilotSpec, log_dir: Path, batch_ids: Sequence[str], log_paths: Sequence[str]
    ) -> list[SubmittedWorker]:
        """Record the ``len(batch_ids)`` workers of one array submission (element ``i`` is
        ``spec.worker_id(i)``); the :class:`SubmittedWorker` list the backend returns."""
        now = time.time()
        workers = [
            SubmittedWorker(worker_id=spec.worker_id(i), batch_id=bid, log_path=path)
            for i, (bid, path) in enumerate(zip(batch_ids, log_paths, strict=True))
        ]
        self.add(
            {w.batch_id: BookEntry(worker_id=w.worker_id, log_dir=str(log_dir), submitted_at=now) for w in workers}
        )
        return workers

    def update(self, batch_ids: Iterable[str], **changes: object) -> None:
        """Set fields of the given entries (unknown ids are ignored) and save."""
        with self._lock:
            for bid in batch_ids:
                entry = self._entries.get(bid)
                if entry is not None:
                    for key, value in changes.items():
                        setattr(entry, key, value)
            self._save()

    def save(self) -> None:
        """Write the book (after entries were changed in place)."""
        with self._lock:
            self._save()

    def mark_cancelled(self, batch_ids: Iterable[str]) -> list[str]:
        """Record that the factory cancels ``batch_ids``; return those still worth cancelling.

        Workers whose end is already settled are left out; the mark is what later lets a worker
        that vanished from the batch system be classified ``cancelled`` rather than ``missing``.
        """
        ids = [b for b in batch_ids if not ((e := self.get(b)) and e.final_state)]
        if ids:
            self.update(ids, cancelled=True)
        return ids

    def open_ids(self) -> list[str]:
        """Batch ids whose final state is not settled yet."""
        with self._lock:
            return [b for b, e in self._entries.items() if not e.final_state]

    def _load(self) -> dict[str, BookEntry]:
        try:
            raw = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.error("unreadable worker book %s (%s); starting empty", self.path, exc)
            return {}
        entries: dict[str, BookEntry] = {}
        for bid, data in raw.get("workers", {}).items():
            try:
                entries[bid] = BookEntry(**data)
            except TypeError:
                log.warning("skipping malformed worker book entry %s", bid)
        return entries

    def _save(self) -> None:
        horizon = time.time() - self.keep_final_s
        self._entries = {b: e for b, e in self._entries.items() if not (e.final_state and e.ended_at < horizon)}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"workers": {b: asdict(e) for b, e in self._entries.items()}}, indent=1))
        tmp.replace(self.path)


def settle(entry: BookEntry | None, status: WorkerStatus) -> WorkerStatus:
    """Remember a worker's final state in its book entry, so later polls answer without the batch system."""
    if entry is not None and status.state.is_final and not entry.final_state:
        entry.final_state, entry.exit_code, entry.diag = status.state.value, status.exit_code, status.diag
        entry.ended_at = time.time()
    return status


def status_without_batch_record(entry: BookEntry | None, *, system: str) -> WorkerStatus:
    """Classify a worker that ``system`` (e.g. ``"squeue"``, ``"bjobs"``) no longer knows.

    Evidence only: the wrapper's exit record, then the factory's own cancel; with neither the
    worker is ``missing``, never guessed finished.
    """
    if entry is None:
        return WorkerStatus(state=WorkerState.MISSING, diag=f"not known to {system}, and not submitted here")
    rc = read_evidence(entry.log_dir, entry.worker_id).exit_code
    if rc is not None:
        state = WorkerState.FINISHED if rc in PILOT_CLEAN_EXIT_CODES else WorkerState.FAILED
        return WorkerStatus(
            state=state, exit_code=rc, diag=f"{describe_exit_code(rc)} (wrapper record; gone from {system})"
        )
    if entry.cancelled:
        return WorkerStatus(state=WorkerState.CANCELLED, diag=f"cancelled by the factory; gone from {system}")
    return WorkerStatus(state=WorkerState.MISSING, diag=f"gone from {system} with no wrapper record")
