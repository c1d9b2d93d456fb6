"""The batch-backend contract: what a pilot factory needs from a batch system, and nothing more.

A backend submits pilots (as batch jobs, or local processes), reports their states translated to
:class:`WorkerState`, and cancels them. Everything else — how many pilots a queue needs, which
ones to register with the dispatcher, backoff after failures — lives in the factory loop
(:mod:`backends.factory`), so a new batch system is one small class plus a state table.

Every external command a backend runs goes through :func:`run_command`: an argv list (never a
shell), a mandatory timeout, and a :class:`CommandError` that carries argv, exit code, stdout and
stderr, so an operator sees exactly what the batch system said.
"""

from __future__ import annotations

import enum
import logging
import os
import subprocess
import sys
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from ailuro.v1 import factory_pb2
from backends.ids import split_batch_ids

log = logging.getLogger(__name__)


class WorkerState(enum.Enum):
    """A worker's batch-system state, as the dispatcher records it (``factory.proto`` WorkerState)."""

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


PILOT_EXIT_CODES: Mapping[int, str] = {
    0: "did work, stopped normally",
    65: "refused by the dispatcher",
    80: "never reached the dispatcher",
    82: "no jobs",
    83: "final reports left undelivered",
    130: "stopped by SIGINT",
    143: "stopped by SIGTERM",
}
"""The pilot's exit codes (``pilot.main.ExitCode``), for worker diagnostics."""

PILOT_CLEAN_EXIT_CODES = frozenset({0, 82})
"""Exit codes of a pilot that ended as designed: a pilot that found no work is not a failed worker."""


def describe_exit_code(rc: int | None) -> str:
    """``exit code 82 (no jobs)``, for a worker's diag."""
    if rc is None:
        return "exit code unknown"
    if rc < 0:
        return f"killed by signal {-rc}"
    meaning = PILOT_EXIT_CODES.get(rc)
    return f"exit code {rc}" + (f" ({meaning})" if meaning else "")


def translate_state(native: str, table: Mapping[str, WorkerState], *, backend: str) -> WorkerState:
    """Map a batch system's native state to a :class:`WorkerState`.

    A state missing from ``table`` is logged and becomes ``UNKNOWN``: batch systems grow new
    states, and a factory must keep running (and keep counting the worker) when one appears.
    """
    state = table.get(native)
    if state is None:
        log.warning("%s: unknown native worker state %r, recorded as unknown", backend, native)
        return WorkerState.UNKNOWN
    return state


@dataclass(frozen=True, kw_only=True)
class WorkerStatus:
    """One worker's translated state, with what the batch system said about it."""

    state: WorkerState
    native_state: str = ""
    """The batch system's own word for it (``PEND``, ``R``, ``exited``), for diagnostics."""
    exit_code: int | None = None
    """The pilot's exit code once it ended, when the batch system knows it."""
    diag: str = ""
    """Hold reason, signal, error text."""


@dataclass(frozen=True, kw_only=True)
class SubmittedWorker:
    """A worker a backend just submitted."""

    worker_id: str
    """Also the pilot id the pilot says Hello with, so dispatcher records join on it."""
    batch_id: str
    """The batch system's id for it (``1234_7`` for a Slurm array element)."""
    log_path: str
    """Where the pilot's stdout and stderr go."""


def default_pilot_command() -> tuple[str, ...]:
    """The installed pilot, run by the same Python that runs the factory."""
    return (sys.executable, "-m", "pilot")


@dataclass(frozen=True, kw_only=True)
class PilotSpec:
    """What to start, for which queue: everything a backend needs to submit a batch of pilots."""

    server: str
    """Dispatcher address the pilots connect to (``host:port``)."""
    queue: str
    """Queue (computing_site) the pilots serve."""
    worker_id_prefix: str
    """Unique per submission; worker ``i`` of the batch is ``f"{worker_id_prefix}-{i}"``."""
    log_dir: Path
    """Directory for the pilots' log files (created by the backend)."""
    factory_id: str = ""
    """Which factory submitted them (exported to the pilot as ``AILURO_FACTORY_ID``)."""
    idle_timeout_s: float = 300.0
    """The pilot exits when it waited this long for work."""
    walltime_s: int = 0
    """Batch walltime request (0: the backend's default)."""
    cores: int = 1
    """Cores per pilot."""
    memory_mb: int = 0
    """Memory per pilot (0: the backend's default)."""
    pilot_command: tuple[str, ...] = field(default_factory=default_pilot_command)
    """argv that starts the pilot; the wrapper appends the pilot options and ``pilot_args``."""
    pilot_args: tuple[str, ...] = ()
    """Extra pilot options (e.g. ``("--log-level", "debug")``)."""
    environment: Mapping[str, str] = field(default_factory=dict)
    """Extra environment for the pilot."""

    def worker_id(self, index: int) -> str:
        """The id of the ``index``-th worker of this submission."""
        return f"{self.worker_id_prefix}-{index}"


class BatchBackend(ABC):
    """A batch system the factory submits pilots to (like Parsl's ExecutionProvider, smaller).

    Implementations are constructed with keyword arguments ``workdir`` (a directory the backend
    owns: wrapper scripts, state files) and ``options`` (the queue's ``backend_options``), and must
    be safe to re-create after a factory restart: ``status`` of workers submitted by an earlier
    process must still be answered (from the batch system, or from the backend's state file).
    """

    name: str = ""
    """Registry name (``local``, ``slurm``, ``htcondor``, ``lsf``)."""
    poll_interval: float = 10.0
    """How often (seconds) querying ``status`` is worthwhile; the factory never polls faster."""

    @abstractmethod
    def submit(self, n: int, spec: PilotSpec) -> list[SubmittedWorker]:
        """Submit ``n`` pilots (in bulk where the system allows); raises on failure, submits none then."""

    @abstractmethod
    def status(self, batch_ids: Sequence[str]) -> dict[str, WorkerStatus]:
        """Current state of each given worker; every requested id is in the answer."""

    @abstractmethod
    def cancel(self, batch_ids: Sequence[str]) -> None:
        """Remove the given workers; ids that already ended are ignored."""

    def own_ids(self, batch_ids: Iterable[str]) -> list[str]:
        """The ids that have this backend's form (:mod:`backends.ids`), in order.

        Every other id is logged and dropped: ids come from the dispatcher's records, and only an
        id of the right form may reach a batch command line.
        """
        valid, refused = split_batch_ids(self.name, batch_ids)
        if refused:
            log.error("%s: refusing %d batch id(s) not of its form: %r", self.name, len(refused), refused[:5])
        return valid


# --- the one seam for external commands ------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class CommandResult:
    """Outcome of a command that exited with status 0."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


class CommandError(RuntimeError):
    """A command failed, timed out, or could not be started; carries everything it said."""

    def __init__(self, message: str, *, argv: Sequence[str], returncode: int | None, stdout: str, stderr: str) -> None:
        self.argv = tuple(argv)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        tail = stderr.strip()[-500:] or stdout.strip()[-500:]
        super().__init__(f"{message}: {' '.join(self.argv)}" + (f": {tail}" if tail else ""))


def run_command(
    argv: Sequence[str],
    *,
    timeout: float,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    check: bool = True,
) -> CommandResult:
    """Run ``argv`` (no shell) and capture its output.

    ``env`` is added to the factory's environment rather than replacing it, because batch client
    tools need ``PATH`` and their own configuration variables. With ``check`` (the default) a
    non-zero exit raises :class:`CommandError`; without it the result is returned either way.
    """
    if isinstance(argv, str) or not argv:
        raise ValueError("argv must be a non-empty sequence of strings")
    full_env = {**os.environ, **env} if env is not None else None
    try:
        proc = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=full_env,
            cwd=cwd,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise CommandError(
            f"timed out after {timeout:g} s",
            argv=argv,
            returncode=None,
            stdout=_text(exc.stdout),
            stderr=_text(exc.stderr),
        ) from None
    except OSError as exc:
        raise CommandError(f"cannot run ({exc})", argv=argv, returncode=None, stdout="", stderr="") from None
    if check and proc.returncode != 0:
        raise CommandError(
            f"exit code {proc.returncode}",
            argv=argv,
            returncode=proc.returncode,
            stdout=proc.stdout,
            stderr=proc.stderr,
        )
    return CommandResult(argv=tuple(argv), returncode=proc.returncode, stdout=proc.stdout, stderr=proc.stderr)


def _text(data: str | bytes | None) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data
