"""The pilot factory: keeps enough pilots queued for every configured queue, and no more.

Every cycle, for each queue: poll the batch states of this factory's workers and report changes
to the dispatcher (``UpdateWorkers``); read the queue's counts (``GetQueueStats``: activated jobs,
connected and idle pilots, and the non-final workers of *every* factory by state); decide how many
pilots to add with the pure :func:`compute_new_pilots`; submit them through the queue's backend;
register them (batch id <-> pilot id) right away (``RegisterWorkers``). Counting workers from the
dispatcher's records rather than local memory is what lets several factories serve one queue
without over-submitting, and a restarted factory pick up where it was.

A queue whose submissions fail is backed off exponentially (per queue, capped) and its last
error is kept in ``factory-status.json`` in the work directory, next to the pilots' logs.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from ailuro import targets
from ailuro.queues import FactoryLimits, QueueConfig
from ailuro.v1 import factory_pb2, factory_pb2_grpc
from backends.base import (
    QUEUED_WORKER_STATES,
    BatchBackend,
    PilotSpec,
    SubmittedWorker,
    WorkerState,
    default_pilot_command,
)
from backends.registry import create_backend

log = logging.getLogger(__name__)


# --- the arithmetic --------------------------------------------------------------------------


def compute_new_pilots(*, activated: int, idle_pilots: int, queued: int, running: int, limits: FactoryLimits) -> int:
    """How many pilots to submit for one queue in this cycle (never negative).

    ``min(activated - idle_pilots, max_queued - queued, max_total - (queued + running),
    max_per_cycle)``, and zero whenever there is no activated job: a pilot for an empty queue
    would only wait and exit. ``idle_pilots`` counts pilots that will take a job without a new
    submission (connected with no job, or still waiting in the batch system).
    """
    if activated <= 0:
        return 0
    n = min(
        activated - idle_pilots,
        int(limits.max_queued) - queued,
        int(limits.max_total) - (queued + running),
        int(limits.max_per_cycle),
    )
    return max(0, n)


@dataclass(frozen=True, kw_only=True)
class QueueCounts:
    """The inputs of :func:`compute_new_pilots` for one queue, as read from the dispatcher."""

    activated: int
    idle_pilots: int
    queued: int
    running: int

    @classmethod
    def from_stats(cls, stats: factory_pb2.QueueStats) -> QueueCounts:
        """Derive the counts from ``GetQueueStats``.

        Workers waiting in the batch system (submitted, idle, held, or in a state the backend does
        not know) are queued, and each is a pilot that will take a job; workers the batch system
        runs but whose pilot has not connected yet are on their way too. Both count as idle, so a
        slow-starting pilot does not make the factory submit another one for the same job.
        """
        workers = dict(stats.workers)
        queued_names = {s.value for s in QUEUED_WORKER_STATES} | {WorkerState.UNKNOWN.value}
        queued = sum(v for k, v in workers.items() if k in queued_names)
        running = workers.get(WorkerState.RUNNING.value, 0)
        starting = max(0, running - stats.connected_pilots)
        return cls(
            activated=int(stats.activated_jobs),
            idle_pilots=int(stats.idle_pilots) + queued + starting,
            queued=queued,
            running=running,
        )


# --- backoff ---------------------------------------------------------------------------------


@dataclass(kw_only=True)
class Backoff:
    """Exponential, capped backoff per queue after failed submissions.

    The first failure blocks the queue for ``base_s``, each further one doubles it up to ``max_s``;
    one success clears it. ``clock`` is injectable so the schedule is testable without sleeping.
    """

    base_s: float = 10.0
    factor: float = 2.0
    max_s: float = 600.0
    clock: Callable[[], float] = time.monotonic
    _failures: dict[str, int] = field(default_factory=dict)
    _until: dict[str, float] = field(default_factory=dict)

    def failed(self, queue: str) -> float:
        """Record a failure; returns the delay now in force for ``queue``."""
        count = self._failures.get(queue, 0) + 1
        self._failures[queue] = count
        delay = min(self.max_s, self.base_s * self.factor ** (count - 1))
        self._until[queue] = self.clock() + delay
        return delay

    def succeeded(self, queue: str) -> None:
        """Clear the queue's backoff."""
        self._failures.pop(queue, None)
        self._until.pop(queue, None)

    def blocked_for(self, queue: str) -> float:
        """Seconds until ``queue`` may be submitted to again (0: now)."""
        return max(0.0, self._until.get(queue, 0.0) - self.clock())

    def failures(self, queue: str) -> int:
        """Consecutive failures recorded for ``queue``."""
        return self._failures.get(queue, 0)


# --- configuration and state -----------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class FactoryConfig:
    """How one factory process runs."""

    server: str
    """Dispatcher address (``host:port``, or several comma-separated) for FactoryService calls and the pilots."""
    queues: tuple[QueueConfig, ...]
    """Queues to serve; each names its backend and limits."""
    workdir: Path
    """Wrappers, backend state files, pilot logs and ``factory-status.json`` live here."""
    factory_id: str = ""
    """Identifies this factory's workers (default: a random id, stored in the work dir)."""
    cycle_s: float = 10.0
    """Seconds between cycles."""
    pilot_command: tuple[str, ...] = field(default_factory=default_pilot_command)
    """argv that starts a pilot on the worker (the installed pilot by default)."""
    pilot_args: tuple[str, ...] = ()
    """Extra pilot options, appended by the wrapper."""
    pilot_environment: Mapping[str, str] = field(default_factory=dict)
    """Extra environment for pilots."""
    cancel_queued_after_s: float = 900.0
    """Cancel workers still waiting in the batch system after this long while their queue has no
    activated jobs (0: never)."""
    rpc_timeout_s: float = 10.0
    """Deadline of each dispatcher call."""
    backoff_base_s: float = 10.0
    """First backoff delay after a failed submission."""
    backoff_max_s: float = 600.0
    """Longest backoff delay."""
    metadata: tuple[tuple[str, str], ...] = ()
    """gRPC metadata sent with every call (e.g. an authorization token)."""
    pilot_bundle_url: str = ""
    """Base URL of the dispatcher's pilot bundle server (``http://host:port``): when set, wrappers
    download the pilot from it and check its version and sha256, instead of using ``pilot_command``."""
    pilot_python: str = "python3"
    """Python that runs a downloaded pilot bundle on the worker node."""


@dataclass(kw_only=True)
class QueueReport:
    """What a cycle did for one queue (returned by :meth:`Factory.run_cycle`, and saved)."""

    queue: str
    activated: int = 0
    idle_pilots: int = 0
    queued: int = 0
    running: int = 0
    submitted: int = 0
    updated: int = 0
    cancelled: int = 0
    backoff_s: float = 0.0
    last_submission_time: float = 0.0
    last_submission_count: int = 0
    last_error: str = ""
    last_error_time: float = 0.0


class Factory:
    """The factory loop over all configured queues (see the module docstring)."""

    def __init__(self, config: FactoryConfig, *, channel: grpc.Channel | None = None) -> None:
        self.config = config
        self.workdir = Path(config.workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.factory_id = config.factory_id or self._stored_factory_id()
        self._own_channel = channel is None
        self._channel = channel or targets.channel(config.server)
        self._stub = factory_pb2_grpc.FactoryServiceStub(self._channel)
        self.backoff = Backoff(base_s=config.backoff_base_s, max_s=config.backoff_max_s)
        self._backends: dict[str, BatchBackend] = {}
        self._last_poll: dict[str, float] = {}
        self._unregistered: dict[str, list[factory_pb2.Worker]] = {}
        self.reports: dict[str, QueueReport] = {q.name: QueueReport(queue=q.name) for q in config.queues}
        self._load_status()

    # --- lifecycle -------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Run cycles every ``cycle_s`` until ``stop`` is set."""
        log.info("factory %s serving %s", self.factory_id, ", ".join(q.name for q in self.config.queues))
        while not stop.is_set():
            started = time.monotonic()
            self.run_cycle()
            stop.wait(max(0.0, self.config.cycle_s - (time.monotonic() - started)))

    def close(self) -> None:
        """Close the dispatcher channel (pilots keep running; see :meth:`cancel_all`)."""
        if self._own_channel:
            self._channel.close()

    def backend_for(self, queue: QueueConfig) -> BatchBackend:
        """The backend instance serving ``queue`` (one per queue, with its own work dir)."""
        backend = self._backends.get(queue.name)
        if backend is None:
            backend = create_backend(
                queue.backend, workdir=self.workdir / "backends" / queue.name, options=queue.backend_options
            )
            self._backends[queue.name] = backend
        return backend

    def cancel_all(self) -> int:
        """Cancel every non-final worker of this factory and record it; returns how many."""
        total = 0
        for queue in self.config.queues:
            workers = self._my_workers(queue.name)
            if not workers:
                continue
            backend = self.backend_for(queue)
            backend.cancel([w.batch_id for w in workers])
            total += self._poll(queue, backend, workers, force=True)
        return total

    # --- one cycle -------------------------------------------------------------------------

    def run_cycle(self) -> dict[str, QueueReport]:
        """One pass over all queues; errors are recorded per queue and never escape."""
        for queue in self.config.queues:
            report = self.reports[queue.name]
            report.submitted = report.updated = report.cancelled = 0
            try:
                self._retry_registrations(queue.name)
                workers = self._my_workers(queue.name)
                if workers:
                    report.updated = self._poll(queue, self.backend_for(queue), workers)
            except Exception as exc:  # one broken queue must not stop the others
                self._record_error(report, f"polling: {_describe(exc)}")
        try:
            stats = self._queue_stats()
        except grpc.RpcError as exc:
            for report in self.reports.values():
                self._record_error(report, f"GetQueueStats: {_describe(exc)}")
            self._save_status()
            return self.reports
        for queue in self.config.queues:
            report = self.reports[queue.name]
            try:
                self._serve_queue(queue, stats.get(queue.name), report)
            except Exception as exc:
                self._record_error(report, _describe(exc))
        self._save_status()
        return self.reports

    def _serve_queue(self, queue: QueueConfig, stats: factory_pb2.QueueStats | None, report: QueueReport) -> None:
        if stats is None:
            self._record_error(report, "the dispatcher does not know this queue (check its queues.toml)")
            return
        counts = QueueCounts.from_stats(stats)
        report.activated, report.idle_pilots = counts.activated, counts.idle_pilots
        report.queued, report.running = counts.queued, counts.running
        if counts.activated == 0 and self.config.cancel_queued_after_s > 0:
            report.cancelled = self._cancel_stale_queued(queue)
        if not queue.enabled:
            return
        n = compute_new_pilots(
            activated=counts.activated,
            idle_pilots=counts.idle_pilots,
            queued=counts.queued,
            running=counts.running,
            limits=queue.factory,
        )
        report.backoff_s = self.backoff.blocked_for(queue.name)
        if n == 0 or report.backoff_s > 0:
            return
        try:
            # constructing the backend (and fetching the bundle's checksum) belongs here: a queue
            # whose backend cannot even start is backed off too
            spec = self._spec(queue)
            submitted = self.backend_for(queue).submit(n, spec)
        except Exception as exc:
            delay = self.backoff.failed(queue.name)
            report.backoff_s = delay
            self._record_error(report, f"submitting {n} pilot(s): {_describe(exc)} (retry in {delay:g} s)")
            log.error("queue %s: submission failed, backing off %g s: %s", queue.name, delay, exc)
            return
        self.backoff.succeeded(queue.name)
        report.submitted = len(submitted)
        report.last_submission_time, report.last_submission_count = time.time(), len(submitted)
        log.info(
            "queue %s: submitted %d pilot(s) (activated %d, idle %d)",
            queue.name,
            n,
            counts.activated,
            counts.idle_pilots,
        )
        self._register(queue, submitted)

    # --- pieces ----------------------------------------------------------------------------

    def _spec(self, queue: QueueConfig) -> PilotSpec:
        environment = dict(self.config.pilot_environment)
        if self.config.pilot_bundle_url:
            environment.update(bundle_environment(self.config.pilot_bundle_url, python=self.config.pilot_python))
        return PilotSpec(
            server=self.config.server,
            queue=queue.name,
            worker_id_prefix=f"{queue.name}.{uuid.uuid4().hex[:10]}",
            log_dir=self.workdir / "logs" / queue.name,
            factory_id=self.factory_id,
            idle_timeout_s=float(queue.factory.idle_timeout_s),
            pilot_command=self.config.pilot_command,
            pilot_args=(*self.config.pilot_args, *(f"--pass-env={p}" for p in queue.pilot_env)),
            environment=environment,
        )

    def _register(self, queue: QueueConfig, submitted: Sequence[SubmittedWorker]) -> None:
        now = Timestamp()
        now.GetCurrentTime()
        records = [
            factory_pb2.Worker(
                worker_id=w.worker_id,
                queue=queue.name,
                backend=queue.backend,
                factory_id=self.factory_id,
                batch_id=w.batch_id,
                state=WorkerState.SUBMITTED.to_proto(),
                submit_time=now,
                log_path=w.log_path,
            )
            for w in submitted
        ]
        self._unregistered.setdefault(queue.name, []).extend(records)
        self._retry_registrations(queue.name)

    def _retry_registrations(self, queue: str) -> None:
        """Register workers whose registration failed before: unregistered workers are not counted."""
        pending = self._unregistered.get(queue)
        if not pending:
            return
        self._stub.RegisterWorkers(
            factory_pb2.RegisterWorkersRequest(workers=pending),
            timeout=self.config.rpc_timeout_s,
            metadata=self.config.metadata,
        )
        self._unregistered[queue] = []

    def _my_workers(self, queue: str) -> list[factory_pb2.Worker]:
        resp = self._stub.ListWorkers(
            factory_pb2.ListWorkersRequest(queue=queue, factory_id=self.factory_id, limit=5000),
            timeout=self.config.rpc_timeout_s,
            metadata=self.config.metadata,
        )
        return list(resp.workers)

    def _poll(
        self, queue: QueueConfig, backend: BatchBackend, workers: Sequence[factory_pb2.Worker], *, force: bool = False
    ) -> int:
        """Ask the backend about this factory's workers and report changed states; returns how many."""
        now = time.monotonic()
        if not workers or (not force and now - self._last_poll.get(queue.name, -1e9) < backend.poll_interval):
            return 0
        self._last_poll[queue.name] = now
        statuses = backend.status([w.batch_id for w in workers])
        updates = []
        for w in workers:
            st = statuses.get(w.batch_id)
            if st is None:
                continue
            state = st.state.to_proto()
            if state != w.state:
                updates.append(factory_pb2.WorkerUpdate(worker_id=w.worker_id, state=state, diag=st.diag))
        if updates:
            self._stub.UpdateWorkers(
                factory_pb2.UpdateWorkersRequest(updates=updates),
                timeout=self.config.rpc_timeout_s,
                metadata=self.config.metadata,
            )
        return len(updates)

    def _cancel_stale_queued(self, queue: QueueConfig) -> int:
        """Cancel workers waiting in the batch system too long for a queue that has no work."""
        limit = self.config.cancel_queued_after_s
        now = time.time()
        stale = [
            w
            for w in self._my_workers(queue.name)
            if WorkerState.from_proto(w.state) in (WorkerState.SUBMITTED, WorkerState.IDLE)
            and w.HasField("submit_time")
            and now - w.submit_time.ToSeconds() > limit
        ]
        if not stale:
            return 0
        backend = self.backend_for(queue)
        backend.cancel([w.batch_id for w in stale])
        log.info("queue %s: cancelled %d pilot(s) queued for over %g s with no work", queue.name, len(stale), limit)
        self._poll(queue, backend, stale, force=True)
        return len(stale)

    def _queue_stats(self) -> dict[str, factory_pb2.QueueStats]:
        # Ask for every queue: naming one the dispatcher does not know would fail the whole call.
        resp = self._stub.GetQueueStats(
            factory_pb2.GetQueueStatsRequest(),
            timeout=self.config.rpc_timeout_s,
            metadata=self.config.metadata,
        )
        return {s.queue: s for s in resp.queues}

    def _record_error(self, report: QueueReport, message: str) -> None:
        report.last_error, report.last_error_time = message, time.time()
        log.warning("queue %s: %s", report.queue, message)

    # --- work-dir files --------------------------------------------------------------------

    @property
    def status_file(self) -> Path:
        """``factory-status.json``: per-queue last submission and last error, for ``ailuro factory status``."""
        return self.workdir / "factory-status.json"

    def _stored_factory_id(self) -> str:
        path = self.workdir / "factory-id"
        try:
            return path.read_text().strip()
        except FileNotFoundError:
            factory_id = f"factory-{uuid.uuid4().hex[:8]}"
            path.write_text(factory_id + "\n")
            return factory_id

    def _save_status(self) -> None:
        data: dict[str, Any] = {
            "factory_id": self.factory_id,
            "server": self.config.server,
            "time": time.time(),
            "queues": {name: vars(r) for name, r in self.reports.items()},
        }
        tmp = self.status_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1))
        tmp.replace(self.status_file)

    def _load_status(self) -> None:
        """Keep the last submission/error across restarts (the rest is recomputed every cycle)."""
        try:
            data = json.loads(self.status_file.read_text())
        except (OSError, ValueError):
            return
        for name, saved in data.get("queues", {}).items():
            report = self.reports.get(name)
            if report is None:
                continue
            for key in ("last_submission_time", "last_submission_count", "last_error", "last_error_time"):
                if key in saved:
                    setattr(report, key, saved[key])


def bundle_environment(base_url: str, *, python: str = "python3", timeout: float = 10.0) -> dict[str, str]:
    """The wrapper's bundle settings: ``bundle.json`` from ``base_url`` says what to expect.

    Asked at every submission, so pilots always get the bundle the dispatcher serves now; the
    wrapper refuses a download whose sha256 or version differs.
    """
    from backends.wrapper import BUNDLE_PYTHON_ENV, BUNDLE_SHA256_ENV, BUNDLE_URL_ENV, BUNDLE_VERSION_ENV

    base = base_url.rstrip("/")
    with urllib.request.urlopen(f"{base}/pilot/bundle.json", timeout=timeout) as resp:
        info = json.loads(resp.read())
    return {
        BUNDLE_URL_ENV: f"{base}{info.get('url_path', '/pilot/bundle.pyz')}",
        BUNDLE_SHA256_ENV: str(info["sha256"]),
        BUNDLE_VERSION_ENV: str(info["version"]),
        BUNDLE_PYTHON_ENV: python,
    }


def _describe(exc: BaseException) -> str:
    if isinstance(exc, grpc.RpcError) and hasattr(exc, "code"):
        return f"{exc.code().name}: {exc.details()}"  # type: ignore[attr-defined]
    return f"{type(exc).__name__}: {exc}"
