"""The pilot factory: keeps enough pilots queued for every configured queue, and no more.

Every cycle, for each queue: poll the batch states of this factory's workers and report changes
to the dispatcher (``UpdateWorkers``); read the queue's counts (``GetQueueStats``: activated jobs,
connected and idle pilots, and the non-final workers of *every* factory by state); decide how many
pilots to add with the pure :func:`backends.planning.compute_new_pilots`; submit them through the queue's backend;
register them (batch id <-> pilot id) right away (``RegisterWorkers``). Counting workers from the
dispatcher's records rather than local memory is what lets several factories serve one queue
without over-submitting, and a restarted factory pick up where it was.

A queue whose submissions fail, or whose pilots die at start (:mod:`backends.health`), is backed
off exponentially (per queue, capped) and its last error is kept in ``factory-status.json`` in the
work directory, next to the pilots' logs; after ``flag_after_start_failures`` start failures in a
row the queue is flagged, and the flag reaches the dispatcher (``ReportQueueHealth``).

Ended and held workers are reported at once (``UpdateWorkers``), so the dispatcher requeues their
pilots' jobs without waiting for the leases; held workers are removed and replaced. Every batch id
read from the dispatcher is checked against its backend's form (:mod:`backends.ids`) before it
can reach a batch command, and every call carries the factory's id and secret
(:mod:`backends.credentials`), so only this factory can register or change its workers.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from ailuro import targets
from ailuro.credentials import bearer_metadata, resolve_token
from ailuro.queues import QueueConfig
from ailuro.v1 import factory_pb2, factory_pb2_grpc
from backends.base import (
    BatchBackend,
    PilotSpec,
    SubmittedWorker,
    WorkerState,
    default_pilot_command,
)
from backends.credentials import (
    check_factory_id,
    default_secret_file,
    factory_metadata,
    load_or_create_secret,
    stored_factory_id,
)
from backends.health import Backoff, StartFailures, error_line
from backends.ids import valid_batch_id
from backends.pilot_tokens import (
    DispatcherSource,
    PilotTokenSource,
    queue_token_dir,
    remove_worker_tokens,
    write_worker_tokens,
)
from backends.planning import QueueCounts, compute_new_pilots, pilot_size_args
from backends.registry import create_backend
from backends.wrapper.bundle import bundle_environment
from ddm.storage import ENV_STORAGE_ROOT

log = logging.getLogger(__name__)


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
    """Extra environment for every queue's pilots (a queue's ``pilot_environment`` wins); without
    ``AILURO_STORAGE_ROOT`` here, in the queue's or the factory's own environment, pilots get
    ``<workdir>/storage``."""
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
    """gRPC metadata sent with every call."""
    token_file: Path | None = None
    """The factory's own bearer token (role ``factory``), read once at start; else ``AILURO_TOKEN``
    or ``AILURO_TOKEN_FILE``; none: no ``authorization`` sent (a trusted-metadata dispatcher)."""
    pilot_tokens: PilotTokenSource | None = None
    """Gives each worker its own pilot token (see :mod:`backends.pilot_tokens`); None: the
    dispatcher signs them (``IssuePilotTokens``) when the factory has a token, else pilots get none."""
    pilot_token_lifetime_s: int = 0
    """Lifetime of the pilot tokens the dispatcher signs (0: its default, 2 days: queue wait plus
    walltime); at most 4 days."""
    pilot_bundle_url: str = ""
    """Base URL of the dispatcher's pilot bundle server (``http://host:port``): when set, wrappers
    download the pilot from it and check its version and sha256, instead of using ``pilot_command``."""
    pilot_python: str = "python3"
    """Python that runs a downloaded pilot bundle on the worker node."""
    secret_file: Path | None = None
    """The factory's secret (created 0600 at first start; default: per factory id in the state dir,
    see :mod:`backends.credentials`)."""
    flag_after_start_failures: int = 5
    """Flag a queue after this many pilots in a row failed at start (0: never)."""


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
    start_failures: int = 0
    """Pilots that failed at start in a row (their pilot never reached the dispatcher)."""
    start_error: str = ""
    """The error line of the last such pilot's log."""
    flagged: bool = False
    """``start_failures`` reached ``flag_after_start_failures``."""
    held_removed: int = 0
    """Held workers removed (and so replaced) in this cycle."""


class Factory:
    """The factory loop over all configured queues (see the module docstring)."""

    def __init__(self, config: FactoryConfig, *, channel: grpc.Channel | None = None) -> None:
        self.config = config
        self.workdir = Path(config.workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.factory_id = check_factory_id(config.factory_id or self._stored_factory_id())
        secret = load_or_create_secret(config.secret_file or default_secret_file(self.factory_id))
        token = resolve_token(token_file=config.token_file)
        self._metadata = (*config.metadata, *bearer_metadata(token), *factory_metadata(self.factory_id, secret))
        self._own_channel = channel is None
        self._channel = channel or targets.channel(config.server)
        self._stub = factory_pb2_grpc.FactoryServiceStub(self._channel)
        self.pilot_tokens: PilotTokenSource | None = config.pilot_tokens
        if self.pilot_tokens is None and token is not None:
            # the default with a factory token: the dispatcher signs one token per worker
            self.pilot_tokens = DispatcherSource(
                stub=self._stub,
                metadata=self._metadata,
                timeout_s=config.rpc_timeout_s,
                lifetime_s=config.pilot_token_lifetime_s,
            )
        self.backoff = Backoff(base_s=config.backoff_base_s, max_s=config.backoff_max_s)
        self.start_backoff = Backoff(base_s=config.backoff_base_s, max_s=config.backoff_max_s)
        self.start_failures: dict[str, StartFailures] = {q.name: StartFailures() for q in config.queues}
        self._seen_connected: dict[str, set[str]] = {}
        self._reported_health: dict[str, tuple[int, bool, str]] = {}
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
        """Cancel every non-final worker of this factory; returns how many were asked to end.

        The count is of cancel requests, not of workers already seen gone: a busy batch system
        takes a while to act on ``scancel``/``condor_rm``, and the factory's next polls record the
        end (the poll here records whatever has ended already)."""
        total = 0
        for queue in self.config.queues:
            workers = self._my_workers(queue)
            if not workers:
                continue
            backend = self.backend_for(queue)
            backend.cancel([w.batch_id for w in workers])
            self._poll(queue, backend, workers, force=True)
            total += len(workers)
        return total

    # --- one cycle -------------------------------------------------------------------------

    def run_cycle(self) -> dict[str, QueueReport]:
        """One pass over all queues; errors are recorded per queue and never escape."""
        for queue in self.config.queues:
            report = self.reports[queue.name]
            report.submitted = report.updated = report.cancelled = report.held_removed = 0
            try:
                self._retry_registrations(queue.name)
                workers = self._my_workers(queue)
                if workers:
                    report.updated = self._poll(queue, self.backend_for(queue), workers)
                self._note_start_health(queue.name, report)
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
        self._report_health()
        self._save_status()
        return self.reports

    def _serve_queue(self, queue: QueueConfig, stats: factory_pb2.QueueStats | None, report: QueueReport) -> None:
        if stats is None:
            # GetQueueStats answers only the queues this factory may see: absent means unknown there
            # or, with a token, not among the token's queues
            self._record_error(
                report,
                "the dispatcher sent no statistics for this queue: it is not in the dispatcher's "
                "queues.toml, or this factory's token does not cover it (PERMISSION_DENIED for its stats)",
            )
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
        report.backoff_s = max(self.backoff.blocked_for(queue.name), self.start_backoff.blocked_for(queue.name))
        if n == 0 or report.backoff_s > 0:
            return
        if self.start_failures[queue.name].count:
            # pilots die at start: one probe at a time, until one connects
            probing = counts.queued + max(0, counts.running - int(stats.connected_pilots))
            n = 0 if probing else 1
        if n == 0:
            return
        try:
            # constructing the backend (and fetching the bundle's checksum) belongs here: a queue
            # whose backend cannot even start is backed off too
            spec = self._spec(queue)
            tokens = self._write_pilot_tokens(queue, spec, n)
            try:
                submitted = self.backend_for(queue).submit(n, spec)
            except Exception:
                if spec.token_dir is not None:  # no worker will ever read them
                    remove_worker_tokens(spec.token_dir, tokens)
                raise
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
        environment = {**self.config.pilot_environment, **queue.pilot_environment}
        # file:// storage (job log tarballs included) under the work dir unless configured: a
        # path the factory's host (and the dispatcher next to it) can read, never the home of
        # whichever user the batch system runs the pilot as
        environment.setdefault(ENV_STORAGE_ROOT, os.environ.get(ENV_STORAGE_ROOT) or str(self.workdir / "storage"))
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
            pilot_args=(*self.config.pilot_args, *(f"--pass-env={p}" for p in queue.pass_env), *pilot_size_args(queue)),
            environment=environment,
            cores=queue.pilot_cores or 1,
            memory_mb=queue.pilot_memory_mb,
            token_dir=queue_token_dir(self.workdir, queue.name) if self.pilot_tokens is not None else None,
        )

    def _write_pilot_tokens(self, queue: QueueConfig, spec: PilotSpec, n: int) -> list[str]:
        """One token per worker about to be submitted, into its own directory (0600), before the
        batch system can start it; returns the workers. A failure fails (and backs off) the submission."""
        if self.pilot_tokens is None or spec.token_dir is None:
            return []
        workers = [spec.worker_id(i) for i in range(n)]
        write_worker_tokens(spec.token_dir, workers, self.pilot_tokens(queue, workers))
        return workers

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
            metadata=self._metadata,
        )
        self._unregistered[queue] = []

    def _my_workers(self, queue: QueueConfig) -> list[factory_pb2.Worker]:
        """This factory's non-final workers of ``queue``, whatever work dir submitted them.

        A worker whose batch id is not of the queue's backend's form is left out (and logged):
        such an id was not written by this factory, and must never reach a batch command.
        """
        resp = self._stub.ListWorkers(
            factory_pb2.ListWorkersRequest(queue=queue.name, factory_id=self.factory_id, limit=5000),
            timeout=self.config.rpc_timeout_s,
            metadata=self._metadata,
        )
        workers = []
        for w in resp.workers:
            if valid_batch_id(queue.backend, w.batch_id):
                workers.append(w)
            else:
                log.error(
                    "queue %s: ignoring worker %s: batch id %r is not a %s id",
                    queue.name,
                    w.worker_id,
                    w.batch_id,
                    queue.backend,
                )
        return workers

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
        held: list[str] = []
        # a pilot newly seen connected proves the queue's pilots can start (bounded: live workers only)
        connected = {w.worker_id for w in workers if w.node}
        if connected - self._seen_connected.get(queue.name, set()):
            self.start_failures[queue.name].connected()
            self.start_backoff.succeeded(queue.name)
        self._seen_connected[queue.name] = connected
        for w in workers:
            st = statuses.get(w.batch_id)
            if st is None:
                continue
            if st.state == WorkerState.HELD:
                held.append(w.batch_id)
            state = st.state.to_proto()
            if state != w.state:
                updates.append(factory_pb2.WorkerUpdate(worker_id=w.worker_id, state=state, diag=st.diag))
                if st.state == WorkerState.FAILED and not w.node:  # ended in error, never said Hello
                    self._start_failed(queue.name, w, st.diag)
        ended = [w.worker_id for w in workers if w.batch_id in statuses and statuses[w.batch_id].state.is_final]
        if ended:
            remove_worker_tokens(queue_token_dir(self.workdir, queue.name), ended)
        if updates:
            resp = self._stub.UpdateWorkers(
                factory_pb2.UpdateWorkersRequest(updates=updates),
                timeout=self.config.rpc_timeout_s,
                metadata=self._metadata,
            )
            if resp.released_jobs:
                log.info("queue %s: the dispatcher released %d job(s) of ended pilots", queue.name, resp.released_jobs)
        if held:
            # a held pilot runs nothing and may stay held for ever: remove it, so it is replaced now
            log.warning("queue %s: removing %d held pilot(s): %s", queue.name, len(held), ", ".join(held[:5]))
            backend.cancel(held)
            self.reports[queue.name].held_removed += len(held)
        return len(updates)

    def _start_failed(self, queue: str, worker: factory_pb2.Worker, diag: str) -> None:
        """A worker ended without its pilot ever reaching the dispatcher: back the queue off."""
        line = error_line(worker.log_path, diag or "ended before its pilot connected")
        streak = self.start_failures[queue].failed(line, now=time.time())
        delay = self.start_backoff.failed(queue)
        log.error(
            "queue %s: pilot %s failed at start (%d in a row; next pilot in %g s): %s",
            queue,
            worker.worker_id,
            streak,
            delay,
            line,
        )

    def _note_start_health(self, queue: str, report: QueueReport) -> None:
        failures = self.start_failures[queue]
        report.start_failures, report.start_error = failures.count, failures.last_error
        report.flagged = failures.flagged(self.config.flag_after_start_failures)

    def _report_health(self) -> None:
        """Tell the dispatcher each queue's start-failure streak, when it changed."""
        items = []
        for name, report in self.reports.items():
            key = (report.start_failures, report.flagged, report.start_error)
            if self._reported_health.get(name) == key:
                continue
            until = time.time() + self.start_backoff.blocked_for(name)
            items.append(
                factory_pb2.QueueHealth(
                    queue=name,
                    start_failures=report.start_failures,
                    flagged=report.flagged,
                    last_error=report.start_error,
                    backoff_until=until if report.start_failures else 0.0,
                )
            )
        if not items:
            return
        try:
            self._stub.ReportQueueHealth(
                factory_pb2.ReportQueueHealthRequest(queues=items),
                timeout=self.config.rpc_timeout_s,
                metadata=self._metadata,
            )
        except grpc.RpcError as exc:
            log.warning("ReportQueueHealth failed (retried next cycle): %s", _describe(exc))
            return
        for h in items:
            self._reported_health[h.queue] = (h.start_failures, h.flagged, h.last_error)

    def _cancel_stale_queued(self, queue: QueueConfig) -> int:
        """Cancel workers waiting in the batch system too long for a queue that has no work."""
        limit = self.config.cancel_queued_after_s
        now = time.time()
        stale = [
            w
            for w in self._my_workers(queue)
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
            metadata=self._metadata,
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
        return stored_factory_id(self.workdir)

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


def _describe(exc: BaseException) -> str:
    if isinstance(exc, grpc.RpcError) and hasattr(exc, "code"):
        return f"{exc.code().name}: {exc.details()}"  # type: ignore[attr-defined]
    return f"{type(exc).__name__}: {exc}"
