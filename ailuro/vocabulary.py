"""The words the parts share, defined once: worker states, pilot exit codes, identity metadata
keys, backend names, the default storage root and the dispatcher's environment variables.

Every layer may import this module (the SDK, the pilot on a bare worker node, the dispatcher,
the backends, the monitor, the CLI), so it imports the standard library and the generated stubs
only. Before it existed each wall kept its own copy, and copies drift.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from pathlib import Path
from typing import cast

from ailuro.v1 import factory_pb2

# --- pilot exit codes -------------------------------------------------------------------------


class PilotExit(enum.IntEnum):
    """Process exit codes of the pilot; the factory and the batch backends read them back."""

    OK = 0
    """Did work, stopped normally (idle timeout, max jobs, walltime)."""
    REFUSED = 65
    """The dispatcher refused the pilot (unknown queue, bad hello)."""
    NEVER_CONNECTED = 80
    """The dispatcher was never reached before the idle timeout."""
    NO_JOBS = 82
    """Connected, but no job was ever received before the idle timeout (PanDA: "no jobs")."""
    UNDELIVERED = 83
    """Final reports were left undelivered in the spool."""
    SIGINT = 130
    """Stopped by SIGINT."""
    SIGTERM = 143
    """Stopped by SIGTERM."""


PILOT_EXIT_CODES: Mapping[int, str] = {
    PilotExit.OK: "did work, stopped normally",
    PilotExit.REFUSED: "refused by the dispatcher",
    PilotExit.NEVER_CONNECTED: "never reached the dispatcher",
    PilotExit.NO_JOBS: "no jobs",
    PilotExit.UNDELIVERED: "final reports left undelivered",
    PilotExit.SIGINT: "stopped by SIGINT",
    PilotExit.SIGTERM: "stopped by SIGTERM",
}
"""One phrase per pilot exit code, for worker diagnostics and the pilot's ``--help``."""

PILOT_CLEAN_EXIT_CODES = frozenset({PilotExit.OK, PilotExit.NO_JOBS})
"""Exit codes of a pilot that ended as designed: a pilot that found no work is not a failed worker."""


def describe_exit_code(rc: int | None) -> str:
    """``exit code 82 (no jobs)``, for a worker's diag (negative: killed by that signal)."""
    if rc is None:
        return "exit code unknown"
    if rc < 0:
        return f"killed by signal {-rc}"
    meaning = PILOT_EXIT_CODES.get(rc)
    return f"exit code {rc}" + (f" ({meaning})" if meaning else "")


# --- worker (batch job) states ----------------------------------------------------------------


class WorkerState(enum.Enum):
    """A worker's batch-system state, as the dispatcher records it (``factory.proto`` WorkerState).

    The value is the name stored in the database and shown by the monitor and the CLI.
    """

    SUBMITTED = "submitted"
    IDLE = "idle"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"
    HELD = "held"
    MISSING = "missing"
    UNKNOWN = "unknown"

    @property
    def is_final(self) -> bool:
        """Whether the worker has ended (the batch system will not change it again)."""
        return self in FINAL_WORKER_STATES

    @property
    def is_queued(self) -> bool:
        """Whether the worker waits in the batch system (counts against ``max_queued``)."""
        return self in QUEUED_WORKER_STATES

    def to_proto(self) -> factory_pb2.WorkerState:
        """The ``ailuro.v1.WorkerState`` enum number."""
        return cast(factory_pb2.WorkerState, factory_pb2.WorkerState.Value(f"WORKER_STATE_{self.name}"))

    @classmethod
    def from_proto(cls, value: int) -> WorkerState:
        """Inverse of :meth:`to_proto`; UNSPECIFIED (or a newer number) reads as UNKNOWN."""
        try:
            name = factory_pb2.WorkerState.Name(value)
        except ValueError:
            return cls.UNKNOWN
        return cls.__members__.get(name.removeprefix("WORKER_STATE_"), cls.UNKNOWN)


FINAL_WORKER_STATES = frozenset({WorkerState.FINISHED, WorkerState.FAILED, WorkerState.CANCELLED, WorkerState.MISSING})
"""States a worker never leaves."""

QUEUED_WORKER_STATES = frozenset({WorkerState.SUBMITTED, WorkerState.IDLE})
"""States of a worker that waits in the batch system to run a pilot: it still occupies a queue slot.

A held worker is not one of them: it will not run a pilot unless someone releases it, so it must
not stop the factory from submitting a replacement (the factory removes held workers)."""

# --- caller identity (gRPC metadata) ----------------------------------------------------------

USER_METADATA_KEY = "ailuro-user"
"""gRPC metadata key naming the caller (recorded as job owner)."""
VO_METADATA_KEY = "ailuro-vo"
"""gRPC metadata key naming the caller's virtual organisation."""
ROLES_METADATA_KEY = "ailuro-roles"
"""gRPC metadata key with the caller's roles, comma-separated."""
FACTORY_ID_METADATA_KEY = "ailuro-factory-id"
"""Metadata key naming the calling pilot factory (FactoryService calls that change workers)."""
FACTORY_SECRET_METADATA_KEY = "ailuro-factory-secret"
"""Metadata key carrying that factory's secret (until real identities replace it)."""

# --- batch backends ---------------------------------------------------------------------------


class BackendName(enum.StrEnum):
    """The batch backends a queue may name (``backend = "slurm"`` in the queue file)."""

    LOCAL = "local"
    SLURM = "slurm"
    HTCONDOR = "htcondor"
    LSF = "lsf"


BACKEND_NAMES: tuple[str, ...] = tuple(b.value for b in BackendName)
"""Every backend name, in the order the documentation lists them."""

# --- storage and environment ------------------------------------------------------------------

DEFAULT_STORAGE_ROOT = Path("~/.ailuro/storage")
"""Where ``file://`` storage elements live when nothing else is configured (pilots and the
dispatcher must agree on it: the dispatcher reads logs back only from configured storage)."""

DB_ENV = "AILURO_DB"
"""Environment variable holding the dispatcher's database URL (``ailuro server``, ``python -m
dispatcher``, ``ailuro monitor``)."""
DB_ENV_DEPRECATED = "AILURO_DB_URL"
"""The old spelling of :data:`DB_ENV`, still read (with a deprecation warning) for one release."""
