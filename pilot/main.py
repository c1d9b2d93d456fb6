"""The pilot's job loop: ask for work, run jobs, heartbeat, report, exit with a PanDA-style code.

The link to the dispatcher is the ``Connect`` stream (:mod:`pilot.connection`), or unary
``GetJob``/``UpdateJob`` polls (:mod:`pilot.unary`) with ``--unary`` / ``AILURO_PILOT_UNARY=1``;
the loop below sees the same messages either way. It asks for as many jobs as it has free job
slots (``--jobs-in-parallel``) and free cores (``--cores``, each job using ``job.cores``).
Commands: KILL stops the job (reported cancelled with error {PILOT, 1144}); DEBUG answers with a
``DebugReport`` (process tree, tails of stdout and stderr, cut to ``limits.debug_report_bytes``),
also written into the work directory and the job's pilot log, so it lands in the log tarball.

The dispatcher answers each stream's Hello with a ``Welcome``: the pilot heartbeats at the period
it is told (``--heartbeat-s`` may only make it shorter), asks for at most
``limits.max_jobs_per_request`` jobs at once, and renews its held jobs' leases to ``lease_s``. A
JobRequest carries a fresh ``request_id``; it is answered by its assignments and, when fewer than
asked came, a ``NoJob`` saying so, so the pilot never waits for jobs that are not coming.

What a job costs on the link: a ``JobRequest`` (for as many jobs as there are free slots), its
assignment, the final report and its ack. Status changes go out ``status_delay_s`` after they
happen, batched, and only for jobs still running then; every held job is heartbeaten every
``heartbeat_s``. Final reports are written to the spool (fsynced) in a worker thread, so the
event loop never waits on the disk, and sent once they are on disk.

Exit codes (:class:`ExitCode`):

====  ===========================================================================
0     did work, then stopped normally (idle timeout, walltime or ``--max-jobs``)
65    the dispatcher refused the pilot (unknown queue, no permission, ...)
80    never reached the dispatcher before the idle timeout
82    connected, but no job was ever received before the idle timeout (PanDA: "no jobs")
83    stopped normally, but some final reports are still undelivered in the spool
      (the next pilot started with the same ``--spool`` resends them)
130   stopped by SIGINT; running jobs were killed and reported failed (1201, retryable)
143   stopped by SIGTERM (same)
====  ===========================================================================
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import signal
import time
from importlib import metadata

from ailuro import errorcodes
from ailuro.aio import wait_event
from ailuro.v1 import job_pb2, pilot_pb2
from ailuro.vocabulary import PilotExit as ExitCode
from ddm.storage import StorageConfig, StorageResolver
from pilot.config import DEFAULT_HEARTBEAT_S, PilotConfig
from pilot.connection import Backoff, Connection, DispatcherRefused, Transport
from pilot.job import PILOT_SIGNALLED, JobContext, JobServices, KillKind, run_job
from pilot.spawner import guard_server
from pilot.spool import FinalSpool
from pilot.unary import UnaryConnection

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_S = 30.0
"""A JobRequest with no complete answer after this long is given up (and asked again)."""
MAX_JOBS_PER_REQUEST = 100
"""Jobs asked for at once until the dispatcher's ``Welcome.limits`` says otherwise."""
DEBUG_REPORT_BYTES = 64 * 1024
"""Largest DebugReport snapshot until the dispatcher's ``Welcome.limits`` says otherwise."""


def pilot_version() -> str:
    """The installed Ailuro version (reported in Hello)."""
    try:
        return metadata.version("ailuro")
    except metadata.PackageNotFoundError:
        return "unknown"


AR = pilot_pb2.AckResult


class Pilot:
    """One pilot process's state: the connection, the jobs it holds, the spool of final reports."""

    def __init__(self, config: PilotConfig, *, resolver: StorageResolver | None = None) -> None:
        self.config = config
        if resolver is None:
            storage = StorageConfig.from_env()
            if config.storage_root is not None:
                storage = dataclasses.replace(storage, storage_root=config.storage_root)
            resolver = StorageResolver(storage)
        self.resolver = resolver
        self.spool = FinalSpool(config.spool_dir)
        self.jobs: dict[int, JobContext] = {}
        self.jobs_taken = 0
        self.jobs_done = 0
        self._started = time.monotonic()
        self._idle_since = self._started
        self._last_connected = self._started
        self._request_pending = False
        self._request_deadline = 0.0
        """When a pending request without a complete answer is given up (and asked again)."""
        self._request_left = 0
        """Assignments still expected for the pending request."""
        self._request_id = 0
        self._request_sent = 0.0
        """``time.monotonic()`` when the last JobRequest was sent (a job's ``requested`` mark)."""
        """``request_id`` of the last JobRequest sent (answers to older ones do not end it)."""
        self.welcome: pilot_pb2.Welcome | None = None
        """What the dispatcher said in answer to the last Hello (lease, heartbeat period, limits)."""
        self._next_request_at = 0.0
        self._signal: int | None = None
        self._wake = asyncio.Event()
        self._period_changed = asyncio.Event()
        """Set by a Welcome: the heartbeat loop re-reads its period at once."""
        self._status_changed: set[int] = set()
        """Jobs whose status changed since their last heartbeat."""
        self._status_timer: asyncio.TimerHandle | None = None
        self._spooling: set[asyncio.Task[None]] = set()
        """Final reports being written to the spool (then sent)."""
        self._services = JobServices(
            config=config,
            resolver=self.resolver,
            notify_status=self._on_status,
            report_final=self._report_final,
            cores_freed=lambda _ctx: self._wake.set(),
        )
        backoff = Backoff(minimum_s=config.reconnect_min_s, maximum_s=config.reconnect_max_s)
        self.conn: Transport
        if config.use_unary:
            self.conn = UnaryConnection(
                target=config.server,
                pilot_id=config.pilot_id,
                make_hello=self._hello,
                on_message=self._on_message,
                on_connect=self._on_connect,
                backoff=backoff,
                poll_s=config.heartbeat_s or DEFAULT_HEARTBEAT_S,
                token_file=config.token_file,
            )
        else:
            self.conn = Connection(
                target=config.server,
                make_hello=self._hello,
                on_message=self._on_message,
                on_connect=self._on_connect,
                backoff=backoff,
                token_file=config.token_file,
            )

    # --- lifetime -----------------------------------------------------------------------------

    def walltime_left(self) -> float | None:
        """Seconds this pilot may still run; ``None`` when unlimited."""
        if not self.config.walltime_s:
            return None
        return self.config.walltime_s - (time.monotonic() - self._started)

    def _may_take_more(self) -> bool:
        if self._signal is not None:
            return False
        if self.config.max_jobs and self.jobs_taken >= self.config.max_jobs:
            return False
        left = self.walltime_left()
        return left is None or left > self.config.walltime_margin_s

    def _held(self) -> list[JobContext]:
        return [c for c in self.jobs.values() if not c.reported and not c.abandoned]

    async def run(self) -> int:
        """Run until there is no more work to do; returns the process exit code."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)
        stop = asyncio.Event()
        try:  # from this (the event-loop) thread, before the first job
            guard_server().ensure_started()
        except OSError as exc:  # each payload start tries again, and fails its job if it must
            log.warning("cannot start the payload guard server: %s", exc)
        conn_task = asyncio.create_task(self.conn.run(stop))
        hb_task = asyncio.create_task(self._heartbeat_loop())
        log.info(
            "pilot %s for queue %s on %s (batch id %r, %d cores), dispatcher %s%s",
            self.config.pilot_id,
            self.config.queue,
            self.config.node,
            self.config.batch_id,
            self.config.cores,
            self.config.server,
            " (unary)" if self.config.use_unary else "",
        )
        try:
            code = await self._main_loop(conn_task)
            await self._wait_jobs()
            if not conn_task.done():
                await self._flush_finals()
        finally:
            stop.set()
            hb_task.cancel()
            if self._status_timer is not None:
                self._status_timer.cancel()
            with contextlib.suppress(asyncio.CancelledError, DispatcherRefused):
                await conn_task
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
        if code == ExitCode.OK and self.spool.pending():
            code = ExitCode.UNDELIVERED
        log.info("pilot exits with code %d (%s): %d jobs taken", code, ExitCode(code).name, self.jobs_taken)
        return int(code)

    async def _main_loop(self, conn_task: asyncio.Task[None]) -> ExitCode:
        while True:
            now = time.monotonic()
            if self._signal is not None:
                for ctx in self._held():
                    ctx.kill(KillKind.SHUTDOWN, f"pilot received {signal.Signals(self._signal).name}")
                return ExitCode.SIGTERM if self._signal == signal.SIGTERM else ExitCode.SIGINT
            if conn_task.done():
                exc = conn_task.exception()
                for ctx in self._held():
                    ctx.abandon("the connection to the dispatcher ended")
                if isinstance(exc, DispatcherRefused):
                    log.error("dispatcher refused this pilot: %s", exc)
                    return ExitCode.REFUSED
                raise RuntimeError("the connection task ended unexpectedly") from exc
            if self.conn.connected.is_set():
                self._last_connected = now
            left = self.walltime_left()
            if left is not None and left <= 0:
                for ctx in self._held():
                    ctx.kill(KillKind.PILOT_WALLTIME, "the pilot's walltime ran out")
            active = self._active()
            if self._request_pending and now > self._request_deadline:
                self._request_pending = False
            want = self._room(active)
            if self._may_take_more() and want > 0 and not self._request_pending and now >= self._next_request_at:
                self._request_job(want, left)
            if not active:
                if not self._may_take_more():
                    return ExitCode.OK if self.jobs_taken else ExitCode.NO_JOBS
                if now - self._idle_since >= self.config.idle_timeout_s and not self._request_pending:
                    log.info("idle for %.0fs: exiting", now - self._idle_since)
                    if self.jobs_taken:
                        return ExitCode.OK
                    return ExitCode.NO_JOBS if self.conn.ever_connected else ExitCode.NEVER_CONNECTED
            self._wake.clear()
            await wait_event(self._wake, 0.5)  # never asyncio.wait_for: see ailuro/aio.py

    def _active(self) -> list[JobContext]:
        """Jobs holding a slot: from assignment until their payload phase is over (a job storing its
        outputs and log no longer uses its cores, so the next job may start meanwhile)."""
        return [c for c in self.jobs.values() if c.task is not None and not c.task.done() and not c.payload_done]

    def free_cores(self, active: list[JobContext] | None = None) -> int:
        """Cores not used by running jobs (a job uses ``job.cores``, at least 1)."""
        if active is None:
            active = self._active()
        return self.config.cores - sum(max(1, c.job.cores) for c in active)

    def _room(self, active: list[JobContext]) -> int:
        """How many more jobs to ask for: free job slots, but no more than free cores."""
        room = min(self.config.jobs_in_parallel - len(active), self.free_cores(active))
        if self.config.max_jobs:
            room = min(room, self.config.max_jobs - self.jobs_taken)
        most = MAX_JOBS_PER_REQUEST
        if self.welcome is not None and self.welcome.limits.max_jobs_per_request > 0:
            most = self.welcome.limits.max_jobs_per_request
        return max(0, min(room, most))

    @property
    def heartbeat_s(self) -> float:
        """The heartbeat period: the dispatcher's, or ``--heartbeat-s`` when that is shorter."""
        told = self.welcome.heartbeat_s if self.welcome is not None and self.welcome.heartbeat_s > 0 else None
        own = self.config.heartbeat_s
        if told is None:
            return own or DEFAULT_HEARTBEAT_S
        return told if own is None else min(own, told)

    def _request_job(self, n: int, left: float | None) -> None:
        walltime_left_s = 0 if left is None else max(1, int(left))
        self._request_id += 1
        # what is free, so the dispatcher carves jobs out of it (a partitionable pilot): several
        # narrow jobs or one wide one; never more cores or memory than are left
        active = self._active()
        memory_free = self.config.memory_mb - sum(c.job.memory_mb for c in active)
        disk_free = self.config.disk_mb - sum(c.job.disk_mb for c in active)
        request = pilot_pb2.JobRequest(
            n=n,
            walltime_left_s=walltime_left_s,
            request_id=self._request_id,
            cores_free=max(1, self.free_cores(active)),
            memory_mb_free=max(1, memory_free) if self.config.memory_mb else 0,
            disk_mb_free=max(1, disk_free) if self.config.disk_mb else 0,
        )
        msg = pilot_pb2.PilotMessage(job_request=request)
        if self.conn.send(msg):
            self._request_sent = time.monotonic()
            self._request_pending = True
            self._request_left = n
            self._request_deadline = time.monotonic() + REQUEST_TIMEOUT_S

    async def _wait_jobs(self) -> None:
        # loop: an assignment answering a request sent just before the exit decision still runs
        while tasks := [c.task for c in self.jobs.values() if c.task is not None and not c.task.done()]:
            await asyncio.gather(*tasks, return_exceptions=True)
        while self._spooling:
            await asyncio.gather(*self._spooling, return_exceptions=True)

    async def _flush_finals(self) -> None:
        deadline = time.monotonic() + self.config.final_flush_timeout_s
        while self.spool.pending() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)

    def _on_signal(self, sig: int) -> None:
        log.warning("received %s: stopping", signal.Signals(sig).name)
        self._signal = sig
        self._wake.set()

    # --- messages -----------------------------------------------------------------------------

    def _hello(self) -> pilot_pb2.Hello:
        left = self.walltime_left()
        return pilot_pb2.Hello(
            pilot_id=self.config.pilot_id,
            queue=self.config.queue,
            node=self.config.node,
            batch_id=self.config.batch_id,
            cores=self.config.cores,
            memory_mb=self.config.memory_mb,
            disk_mb=self.config.disk_mb,
            tags=list(self.config.tags),
            walltime_left_s=0 if left is None else max(1, int(left)),
            version=pilot_version(),
            held_jobs=[pilot_pb2.HeldJob(panda_id=c.panda_id, lease_epoch=c.epoch) for c in self._held()],
        )

    async def _on_connect(self) -> None:
        self._request_pending = False
        self._next_request_at = 0.0
        self._last_connected = time.monotonic()
        for final in self.spool.pending():
            log.info("sending spooled final report of job %d (epoch %d)", final.panda_id, final.lease_epoch)
            self.conn.send(pilot_pb2.PilotMessage(final=final))
        self._send_heartbeats()
        self._wake.set()

    def _on_message(self, msg: pilot_pb2.DispatcherMessage) -> None:
        kind = msg.WhichOneof("msg")
        if kind == "assignment":
            self._on_assignment(msg.assignment)
        elif kind == "no_job":
            self._on_no_job(msg.no_job)
        elif kind == "welcome":
            self._on_welcome(msg.welcome)
        elif kind == "command":
            self._on_command(msg.command)
        elif kind == "acks":
            for ack in msg.acks.acks:
                self._on_ack(ack)
        self._wake.set()

    def _answers_current(self, request_id: int) -> bool:
        """Whether an answer belongs to the pending request (0: a dispatcher that echoes no id)."""
        return self._request_pending and request_id in (0, self._request_id)

    def _on_welcome(self, hi: pilot_pb2.Welcome) -> None:
        """The dispatcher's answer to Hello: follow its heartbeat period, lease and limits."""
        self.welcome = hi
        if isinstance(self.conn, UnaryConnection):
            self.conn.poll_s = self.heartbeat_s
        self._period_changed.set()
        if hi.lease_s > 0:  # held jobs were renewed for this long
            for ctx in self._held():
                ctx.lease_s = float(hi.lease_s)
        log.info(
            "dispatcher %s: session %s, lease %ds, heartbeat every %.1fs",
            hi.dispatcher_id,
            hi.session_id or "-",
            hi.lease_s,
            self.heartbeat_s,
        )

    def _on_no_job(self, no_job: pilot_pb2.NoJob) -> None:
        """No more jobs for a request now (``n_given`` of ``n_requested`` came): ask again later."""
        if not self._answers_current(no_job.request_id):
            return
        if no_job.invalid_field:
            log.error("job request rejected: %s", no_job.reason)
        self._request_pending = False
        self._request_left = 0
        self._next_request_at = time.monotonic() + max(0.1, no_job.retry_after_s or 1.0)

    def _on_assignment(self, a: pilot_pb2.JobAssignment) -> None:
        if self._answers_current(a.request_id):
            self._request_left -= 1
            if self._request_left <= 0:
                self._request_pending = False
        job = a.job
        held = self.jobs.get(job.panda_id)
        if held is not None:
            log.warning(
                "job %d assigned again (epoch %d, held with %d): ignored", job.panda_id, a.lease_epoch, held.epoch
            )
            return
        if self._signal is not None:
            self._refuse(a, f"the pilot is stopping ({signal.Signals(self._signal).name})", code=PILOT_SIGNALLED)
            return
        left = self.walltime_left()
        if left is not None and job.max_walltime_s and job.max_walltime_s > left:
            self._refuse(a, f"the pilot has {left:.0f}s of walltime left, the job needs up to {job.max_walltime_s}s")
            return
        free = self.free_cores()
        if max(1, job.cores) > free:
            # the lease is granted: giving the job back would cost it an attempt, so it runs
            log.warning("job %d needs %d cores, %d free: the node is oversubscribed", job.panda_id, job.cores, free)
        self.jobs_taken += 1
        ctx = JobContext(
            job=job,
            epoch=a.lease_epoch,
            lease_s=float(a.lease_s),
            workdir=self.config.workdir / f"{job.panda_id}-{job.attempt_nr}",
        )
        ctx.marks.update(requested=self._request_sent, assigned=time.monotonic())
        self.jobs[job.panda_id] = ctx
        log.info("got job %d attempt %d (epoch %d, lease %ds)", job.panda_id, job.attempt_nr, a.lease_epoch, a.lease_s)
        ctx.task = asyncio.create_task(run_job(ctx, self._services), name=f"job-{job.panda_id}")
        ctx.task.add_done_callback(functools.partial(self._job_done, job.panda_id))

    def _refuse(self, a: pilot_pb2.JobAssignment, why: str, *, code: int = errorcodes.MAX_WALLTIME) -> None:
        """Give back a job this pilot cannot run, as a retryable failure (it never started)."""
        log.warning("refusing job %d: %s", a.job.panda_id, why)
        final = pilot_pb2.JobFinal(
            panda_id=a.job.panda_id,
            lease_epoch=a.lease_epoch,
            status=job_pb2.JOB_STATUS_FAILED,
            errors=[job_pb2.JobError(component=job_pb2.ERROR_COMPONENT_PILOT, code=code, diag=why[:1000])],
            retryable=True,
        )
        self.spool.put(final)
        self.conn.send(pilot_pb2.PilotMessage(final=final))

    def _job_done(self, panda_id: int, _task: asyncio.Task[None]) -> None:
        ctx = self.jobs.pop(panda_id, None)
        if ctx is not None and ctx.task is not None and not ctx.task.cancelled() and ctx.task.exception():
            log.error("job %d task crashed: %r", panda_id, ctx.task.exception())
        self.jobs_done += 1
        self._idle_since = time.monotonic()
        self._wake.set()

    def _on_command(self, cmd: pilot_pb2.Command) -> None:
        ctx = self.jobs.get(cmd.panda_id)
        if cmd.type == pilot_pb2.COMMAND_TYPE_KILL:
            if ctx is None or ctx.reported:
                log.info("kill for job %d, which this pilot does not run: nothing to do", cmd.panda_id)
                return
            log.info("kill command for job %d: %s", cmd.panda_id, cmd.reason)
            ctx.kill(KillKind.COMMAND, cmd.reason or "killed on request")
        elif cmd.type == pilot_pb2.COMMAND_TYPE_DEBUG:
            if ctx is None or ctx.reported:
                log.info("debug for job %d, which this pilot does not run: nothing to do", cmd.panda_id)
                return
            path = ctx.debug_snapshot(cmd.reason)
            log.info("debug snapshot of job %d written to %s", cmd.panda_id, path)
            self._send_debug_report(ctx, cmd.command_id)
        else:
            log.info("command %s for job %d not supported: ignored", pilot_pb2.CommandType.Name(cmd.type), cmd.panda_id)

    def _send_debug_report(self, ctx: JobContext, command_id: int) -> None:
        """Answer a DEBUG command with the snapshot, cut to the dispatcher's size limit."""
        limit = DEBUG_REPORT_BYTES
        if self.welcome is not None and self.welcome.limits.debug_report_bytes > 0:
            limit = self.welcome.limits.debug_report_bytes
        text = ctx.last_snapshot
        if len(text.encode()) > limit:
            marker = "\n[cut to the dispatcher's debug_report_bytes]\n"
            text = text.encode()[: limit - len(marker)].decode(errors="ignore") + marker
        report = pilot_pb2.DebugReport(
            panda_id=ctx.panda_id, lease_epoch=ctx.epoch, command_id=command_id, snapshot=text
        )
        self.conn.send(pilot_pb2.PilotMessage(debug_report=report))

    def _on_ack(self, ack: pilot_pb2.Ack) -> None:
        result_name = AR.Name(ack.result)
        if ack.is_final:
            if ack.result in (AR.ACK_RESULT_OK, AR.ACK_RESULT_STALE_EPOCH, AR.ACK_RESULT_NOT_FOUND):
                self.spool.remove(ack.panda_id, ack.lease_epoch)
                level = logging.INFO if ack.result == AR.ACK_RESULT_OK else logging.WARNING
                log.log(level, "final report of job %d: %s %s", ack.panda_id, result_name, ack.message)
            else:
                log.error(
                    "final report of job %d refused (%s): %s; kept in rejected/", ack.panda_id, result_name, ack.message
                )
                self.spool.reject(ack.panda_id, ack.lease_epoch)
            return
        ctx = self.jobs.get(ack.panda_id)
        if ctx is None or ctx.epoch != ack.lease_epoch:
            return
        if ack.result == AR.ACK_RESULT_OK:
            ctx.last_ok_ack = time.monotonic()
        elif ack.result in (AR.ACK_RESULT_STALE_EPOCH, AR.ACK_RESULT_NOT_FOUND):
            log.warning("job %d: heartbeat answered %s (%s): the lease is lost", ack.panda_id, result_name, ack.message)
            ctx.abandon(f"dispatcher answered {result_name}: {ack.message}")
        else:
            log.warning("job %d: heartbeat %s: %s", ack.panda_id, result_name, ack.message)

    # --- heartbeats and final reports ---------------------------------------------------------

    def _send_heartbeats(self, only: set[int] | None = None) -> None:
        """Heartbeat every held job (or those in ``only``) in one batch."""
        beats = [c.heartbeat() for c in self._held() if only is None or c.panda_id in only]
        self._status_changed = set() if only is None else self._status_changed - only
        if beats:
            self.conn.send(pilot_pb2.PilotMessage(heartbeats=pilot_pb2.HeartbeatBatch(heartbeats=beats)))

    def _on_status(self, ctx: JobContext) -> None:
        """A job's status changed: report it ``status_delay_s`` from now, with the others changed by then."""
        self._status_changed.add(ctx.panda_id)
        if self.config.status_delay_s <= 0:
            self._send_status()
        elif self._status_timer is None:
            loop = asyncio.get_running_loop()
            self._status_timer = loop.call_later(self.config.status_delay_s, self._send_status)

    def _send_status(self) -> None:
        self._status_timer = None
        if self._status_changed:  # jobs that ended meanwhile are no longer held: their final says it all
            self._send_heartbeats(only=set(self._status_changed))

    async def _heartbeat_loop(self) -> None:
        last = time.monotonic()
        while True:
            self._period_changed.clear()
            wait_s = last + self.heartbeat_s - time.monotonic()
            if wait_s > 0:
                await wait_event(self._period_changed, wait_s)
                continue  # a Welcome changed the period (look again), or the beat is due now
            now = last = time.monotonic()
            if self.conn.connected.is_set():
                self._last_connected = now
            self._check_leases(now)
            self._send_heartbeats()

    def _check_leases(self, now: float) -> None:
        """Stop jobs whose lease must have lapsed: no contact with the dispatcher for longer than it."""
        for ctx in self._held():
            contact = max(ctx.last_ok_ack, self._last_connected)
            if ctx.lease_s > 0 and now - contact > ctx.lease_s:
                log.warning(
                    "job %d: no contact with the dispatcher for %.0fs > lease: stopping it", ctx.panda_id, now - contact
                )
                ctx.abandon(f"lease of {ctx.lease_s:.0f}s lapsed without contact")

    def _report_final(self, ctx: JobContext, final: pilot_pb2.JobFinal) -> None:
        ctx.reported = True
        ctx.marks["final"] = time.monotonic()
        log.info(
            "job %d ended %s%s",
            ctx.panda_id,
            job_pb2.JobStatus.Name(final.status),
            "".join(f" [{e.code}: {e.diag}]" for e in final.errors),
        )
        task = asyncio.create_task(self._spool_and_send(final, ctx.marks))
        self._spooling.add(task)
        task.add_done_callback(self._spooling.discard)

    async def _spool_and_send(self, final: pilot_pb2.JobFinal, marks: dict[str, float]) -> None:
        """Write the final report to the spool (fsynced, in a worker thread), then send it."""
        try:
            await asyncio.to_thread(self.spool.put, final)
        except OSError as exc:  # sending still beats losing it: only a crash from now on would
            log.error("final report of job %d could not be spooled: %s", final.panda_id, exc)
        marks["spooled"] = time.monotonic()
        self.conn.send(pilot_pb2.PilotMessage(final=final))
        marks["sent"] = time.monotonic()
        self._wake.set()
        if log.isEnabledFor(logging.DEBUG):
            log.debug("timeline job %d: %s", final.panda_id, " ".join(f"{k}={v:.6f}" for k, v in marks.items()))


def setup_logging(level: int = logging.INFO) -> None:
    """Pilot messages to stderr (the batch system keeps them with the pilot's own log)."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in ("pilot", "ddm"):
        logger = logging.getLogger(name)
        logger.setLevel(level)
        logger.addHandler(handler)


def run_pilot(config: PilotConfig) -> int:
    """Run a pilot to completion in a fresh event loop; returns its exit code."""
    config.workdir.mkdir(parents=True, exist_ok=True)
    return asyncio.run(Pilot(config).run())
