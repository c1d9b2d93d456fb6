"""Reading what the wrapper leaves behind, so a batch backend can classify a vanished worker.

The wrapper writes ``<log dir>/<worker id>.batch`` (the batch system's own job id, e.g. Slurm's
raw ``SLURM_JOB_ID`` of an array element) when it starts and ``<worker id>.exit`` (the pilot's
exit code) when it ends. A backend consults these only when the batch system itself no longer
knows the worker: they are evidence, and their absence is never taken as a result.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, kw_only=True)
class WrapperEvidence:
    """What the wrapper of one worker recorded (``None``: nothing recorded)."""

    native_id: str | None = None
    """The batch system's job id as the job saw it."""
    exit_code: int | None = None
    """The pilot's exit code."""

    @property
    def started(self) -> bool:
        """Whether the wrapper ever ran."""
        return self.native_id is not None or self.exit_code is not None


def read_evidence(log_dir: str | Path, worker_id: str) -> WrapperEvidence:
    """The markers of ``worker_id`` in ``log_dir``; unreadable or garbled files count as absent."""
    base = Path(log_dir)
    native: str | None
    try:
        native = (base / f"{worker_id}.batch").read_text().strip() or None
    except OSError:
        native = None
    try:
        rc: int | None = int((base / f"{worker_id}.exit").read_text().strip())
    except (OSError, ValueError):
        rc = None
    return WrapperEvidence(native_id=native, exit_code=rc)
