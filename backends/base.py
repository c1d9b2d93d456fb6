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

import logging
import os
import subprocess
import sys
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

# the shared words live in ailuro.vocabulary; re-exported here for the backends
from ailuro.vocabulary import FINAL_WORKER_STATES as FINAL_WORKER_STATES
from ailuro.vocabulary import PILOT_CLEAN_EXIT_CODES as PILOT_CLEAN_EXIT_CODES
from ailuro.vocabulary import PILOT_EXIT_CODES as PILOT_EXIT_CODES
from ailuro.vocabulary import QUEUED_WORKER_STATES as QUEUED_WORKER_STATES
from ailuro.vocabulary import WorkerState as WorkerState
from ailuro.vocabulary import describe_exit_code as describe_exit_code
from backends.ids import split_batch_ids

log = logging.getLogger(__name__)


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
    token_dir: Path | None = None
    """Where each worker's own token is, ``<token_dir>/<worker id>/ailuro-pilot.token`` (0600,
    written by the factory before ``submit``; :mod:`backends.pilot_tokens`); None: pilots get none
    this way. Local, Slurm and LSF pilots read it there (a file system shared with the factory's
    host); HTCondor ships it with its file transfer into the job's scratch directory."""

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
