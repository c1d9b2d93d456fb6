"""One job on the pilot: work directory, stage-in, payload, stage-out, log tarball, final report.

:func:`run_job` is the whole life of an attempt as one asyncio task. The pilot talks to it through
its :class:`JobContext`: ``kill()`` for a kill command, the pilot's walltime or a shutdown, and
``abandon()`` when the lease is lost (then nothing more is reported: the dispatcher already gave
the job to someone else). Error codes and which failures are retryable:

============================  =========  ======  =========
failure                       component  code    retryable
============================  =========  ======  =========
input missing / unreadable    DDM        1099    yes
input adler32 mismatch        DDM        1171    yes
transformation not runnable   PILOT      1008    no
payload exit code != 0        PAYLOAD    1305    no
payload OOM (SIGKILL by the   PAYLOAD    1235    no
kernel, MemoryError, ...)
RSS over ``memory_mb``        PILOT      1212    no
over ``max_walltime_s``       PILOT      1213    no
pilot's walltime ran out      PILOT      1213    yes
pilot stopped by a signal     PILOT      1201    yes
output missing / not stored   DDM        1137    yes
output adler32 mismatch       DDM        1172    yes
kill command                  PILOT      1144    (cancelled)
============================  =========  ======  =========

A job is retryable only when every error it carries is; a kill command always ends ``cancelled``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shlex
import shutil
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ailuro import errorcodes
from ailuro.names import is_plain_file_name
from ailuro.v1 import job_pb2, pilot_pb2
from ddm.storage import StorageResolver
from pilot import environment, procfs, sandbox, staging
from pilot.config import PilotConfig
from pilot.logtar import JobLog, ToPilotLog, log_lfn, make_log_tarball
from pilot.runner import EndReason, Payload, PayloadResult, PayloadSpec, PayloadStartError, Usage

PILOT_SIGNALLED = errorcodes.PILOT_SIGNALLED
"""PanDA's code for a pilot stopped by SIGTERM."""

STDOUT_NAME = "payload.stdout"
STDERR_NAME = "payload.stderr"
PILOT_LOG_NAME = "pilot.log"
DEBUG_SNAPSHOT_GLOB = "debug-snapshot-*.txt"
"""Snapshots written on a DEBUG command (they go into the log tarball)."""
DEBUG_TAIL_BYTES = 4096
"""How much of the end of stdout and stderr a debug snapshot shows."""

_OOM_MARKERS = ("MemoryError", "std::bad_alloc", "Cannot allocate memory", "Out of memory", "out of memory")

JS = job_pb2.JobStatus
EC = job_pb2.ErrorComponent


class KillKind:
    """Why the pilot stops a payload from outside (values of ``JobContext.kill_kind``)."""

    COMMAND = "command"
    PILOT_WALLTIME = "pilot-walltime"
    SHUTDOWN = "shutdown"
    LEASE_LOST = "lease-lost"


@dataclass(kw_only=True)
class JobContext:
    """The pilot's handle on one attempt it holds."""

    job: job_pb2.Job
    epoch: int
    lease_s: float
    workdir: Path
    status: int = JS.JOB_STATUS_STARTING
    payload: Payload | None = None
    kill_kind: str | None = None
    kill_reason: str = ""
    abandoned: bool = False
    reported: bool = False
    """The final report was spooled: the job is no longer held."""
    last_ok_ack: float = field(default_factory=time.monotonic)
    started: float = field(default_factory=time.monotonic)
    task: asyncio.Task[None] | None = None
    logger: logging.Logger | None = None
    """The job's own logger (its pilot.log), once the work directory exists."""
    debug_snapshots: int = 0
    last_snapshot: str = ""
    """The text of the latest debug snapshot (what a DebugReport carries)."""
    payload_done: bool = False
    """The payload phase is over (stage-out and the log may still run): its cores are free."""
    marks: dict[str, float] = field(default_factory=dict)
    """``time.monotonic()`` at the steps of this attempt (requested, assigned, workdir, started,
    ended, final, spooled, sent): logged at debug level once its final is sent (``-v``)."""

    @property
    def panda_id(self) -> int:
        return self.job.panda_id

    def usage(self) -> Usage:
        """Usage so far (zeros before the payload started)."""
        if self.payload is not None:
            return self.payload.usage
        return Usage(walltime_s=0.0)

    def heartbeat(self) -> pilot_pb2.Heartbeat:
        """This job's entry of the next heartbeat batch."""
        u = self.usage()
        return pilot_pb2.Heartbeat(
            panda_id=self.panda_id,
            lease_epoch=self.epoch,
            status=self.status,  # type: ignore[arg-type]
            metrics=job_pb2.JobMetrics(cpu_time_s=u.cpu_time_s, max_rss_kb=u.max_rss_kb, walltime_s=u.walltime_s),
        )

    def kill(self, kind: str, reason: str) -> None:
        """Stop the job (first reason wins); the job task still makes the log and reports."""
        if self.kill_kind is None:
            self.kill_kind, self.kill_reason = kind, reason
        if self.payload is not None:
            self.payload.request_kill(EndReason.KILLED, reason)

    def debug_snapshot(self, reason: str = "") -> Path:
        """Answer a DEBUG command: write what the payload is doing into the work directory.

        The snapshot (the process tree with CPU and RSS, then the tails of stdout and stderr) goes
        to ``debug-snapshot-<n>.txt`` and into the job's pilot log, so both end up in the log
        tarball. Heartbeats have no field for it, so this is where a DEBUG command's output lives.
        """
        self.debug_snapshots += 1
        path = self.workdir / f"debug-snapshot-{self.debug_snapshots}.txt"
        stamp = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        parts = [f"debug snapshot {self.debug_snapshots} of job {self.panda_id} at {stamp}: {reason or '-'}"]
        u = self.usage()
        parts.append(
            f"status {JS.Name(self.status)}; cpu {u.cpu_time_s:.1f}s, max RSS {u.max_rss_kb} KiB, "
            f"walltime {u.walltime_s:.1f}s"
        )
        if self.payload is not None and self.payload.pid is not None:
            parts.append(f"processes (the first is the payload guard):\n{procfs.describe_tree(self.payload.pid)}")
        else:
            parts.append("no payload process (not started yet, or already ended)")
        for name in (STDOUT_NAME, STDERR_NAME):
            tail = _tail(self.workdir / name, DEBUG_TAIL_BYTES)
            parts.append(f"--- last {DEBUG_TAIL_BYTES} bytes of {name} ---\n{tail}")
        text = "\n".join(parts) + "\n"
        try:
            with sandbox.create_new(path) as fh:  # the payload may have put a symlink there
                fh.write(text.encode())
        except OSError as exc:
            text += f"(could not write {path}: {exc})\n"
        if self.logger is not None:
            self.logger.info("%s", text.rstrip("\n"))
        self.last_snapshot = text
        return path

    def abandon(self, reason: str) -> None:
        """The lease is lost: stop the payload and never report this attempt."""
        self.abandoned = True
        self.kill(KillKind.LEASE_LOST, reason)


@dataclass(frozen=True, kw_only=True)
class JobServices:
    """What a job task needs from the pilot."""

    config: PilotConfig
    resolver: StorageResolver
    notify_status: Callable[[JobContext], None]
    """Called when the job's status changed (sends a heartbeat at once)."""
    report_final: Callable[[JobContext, pilot_pb2.JobFinal], None]
    """Spools and sends the final report."""
    cores_freed: Callable[[JobContext], None] | None = None
    """Called when the payload phase is over, so the pilot may start the next job meanwhile."""


class _Failure(Exception):
    def __init__(self, component: int, code: int, diag: str) -> None:
        super().__init__(diag)
        self.error = job_pb2.JobError(component=component, code=code, diag=diag[:1000])  # type: ignore[arg-type]


def job_environment(job: job_pb2.Job, workdir: Path, config: PilotConfig) -> dict[str, str]:
    """The payload's environment (:mod:`pilot.environment`): the allowed part of the pilot's own
    (never its credentials), then the job's map, then the ``AILURO_*`` job variables."""
    return environment.payload_environment(
        os.environ,
        extra_allow=config.payload_env_allow,
        job_environment=job.environment,
        pilot_variables={
            "AILURO_PANDA_ID": str(job.panda_id),
            "AILURO_WORKDIR": str(workdir),
            "AILURO_JOB_NAME": job.job_name,
            "AILURO_ATTEMPT": str(job.attempt_nr),
            "AILURO_QUEUE": config.queue,
            "AILURO_PILOT_ID": config.pilot_id,
        },
    )


def payload_argv(transformation: str, job_parameters: str, *, workdir: Path, path_env: str) -> list[str]:
    """The payload's argv: ``transformation`` resolved to a program plus the shell-split parameters.

    A transformation with a ``/`` is a file (relative ones are looked up in the work directory,
    where staged-in scripts land): executable files run directly, non-executable scripts through
    their ``#!`` interpreter. A bare name is looked up on the job's ``PATH``. A transformation
    with spaces that is not a file is split shell-style (``"python3 -u"``). Never a shell.
    Raises ``ValueError`` with a clear message when the program cannot be found.
    """
    args = shlex.split(job_parameters)
    name = transformation.strip()
    if not name:
        raise ValueError("the job has no transformation")
    if "/" in name and not (" " in name and not _as_path(name, workdir).exists()):
        path = _as_path(name, workdir)
        if not path.is_file():
            raise ValueError(f"transformation {name!r} not found ({path} is not a file)")
        if os.access(path, os.X_OK):
            return [str(path), *args]
        with open(path, "rb") as fh:
            first = fh.readline(256)
        if first.startswith(b"#!"):
            interpreter = shlex.split(first[2:].decode(errors="replace").strip())
            if interpreter:
                return [*interpreter, str(path), *args]
        raise ValueError(f"transformation {name!r} is neither executable nor a script with a #! line")
    words = shlex.split(name)
    program = shutil.which(words[0], path=path_env)
    if program is None:
        raise ValueError(f"transformation {words[0]!r} not found on PATH ({path_env})")
    return [program, *words[1:], *args]


def _as_path(name: str, workdir: Path) -> Path:
    path = Path(name)
    return path if path.is_absolute() else workdir / path


def classify(result: PayloadResult, stderr_tail: str) -> list[job_pb2.JobError]:
    """The errors of a payload that ended (empty for success); kills by command are handled by the caller."""
    if result.reason is EndReason.WALLTIME:
        return [job_pb2.JobError(component=EC.ERROR_COMPONENT_PILOT, code=errorcodes.MAX_WALLTIME, diag=result.detail)]
    if result.reason is EndReason.MEMORY:
        return [
            job_pb2.JobError(component=EC.ERROR_COMPONENT_PILOT, code=errorcodes.MEMORY_EXCEEDED, diag=result.detail)
        ]
    if result.exit_code == 0:
        return []
    if not result.killed_by_pilot and (result.signal == 9 or any(m in stderr_tail for m in _OOM_MARKERS)):
        how = "killed by SIGKILL (out-of-memory killer?)" if result.signal == 9 else "ran out of memory"
        return [
            job_pb2.JobError(
                component=EC.ERROR_COMPONENT_PAYLOAD,
                code=errorcodes.PAYLOAD_OUT_OF_MEMORY,
                diag=f"payload {how}, exit code {result.exit_code}",
            )
        ]
    how = f"killed by signal {result.signal}" if result.signal else f"exited with code {result.exit_code}"
    return [
        job_pb2.JobError(component=EC.ERROR_COMPONENT_PAYLOAD, code=errorcodes.PAYLOAD_FAILED, diag=f"payload {how}")
    ]


def _tail(path: Path, size: int = 65536) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, path.stat().st_size - size))
            return fh.read().decode(errors="replace")
    except OSError:
        return ""


def _job_logger(ctx: JobContext) -> tuple[logging.Logger, JobLog]:
    """The job's own logger: its messages are kept for the tarball's pilot.log (and the pilot's log
    gets its warnings and errors, or everything at ``-v``: :class:`pilot.logtar.ToPilotLog`).

    It is not registered with :mod:`logging` (which keeps every named logger for good, and clears
    all their caches on each ``setLevel``): a pilot running 100,000 jobs must not grow with them.
    """
    logger = logging.Logger(f"pilot.job.{ctx.panda_id}", logging.INFO)
    logger.propagate = False
    handler = JobLog()
    logger.addHandler(handler)
    logger.addHandler(ToPilotLog.shared())
    return logger, handler


async def run_job(ctx: JobContext, services: JobServices) -> None:
    """Run one attempt from work directory to final report (never raises; reports instead)."""
    config = services.config
    job = ctx.job
    try:
        try:
            ctx.workdir.mkdir(parents=True)
        except FileExistsError:  # left by an earlier pilot: start from scratch (rare: no check first)
            shutil.rmtree(ctx.workdir)
            ctx.workdir.mkdir(parents=True)
        logger, handler = _job_logger(ctx)
        ctx.logger = logger
        ctx.marks["workdir"] = time.monotonic()
    except OSError as exc:  # a node problem, not the job's: another pilot may do better
        diag = f"cannot set up the work directory {ctx.workdir}: {exc}"
        logging.getLogger(__name__).error("job %d: %s", ctx.panda_id, diag)
        error = job_pb2.JobError(component=EC.ERROR_COMPONENT_PILOT, code=errorcodes.PILOT_SETUP_FAILED, diag=diag)
        final = _final(ctx, [error], [_failed_file(log_file_of(job))], None, True, cancelled=False)
        services.report_final(ctx, final)
        return
    errors: list[job_pb2.JobError] = []
    files: list[job_pb2.File] = []
    result: PayloadResult | None = None
    forced_retryable: bool | None = None
    cancelled = False
    try:
        logger.info(
            "job %d attempt %d (epoch %d): %s %s",
            job.panda_id,
            job.attempt_nr,
            ctx.epoch,
            job.transformation,
            job.job_parameters,
        )
        services.notify_status(ctx)
        try:
            await _stage_in(ctx, services, logger)
            if ctx.kill_kind is None:
                result = await _run_payload(ctx, services, logger)
                errors.extend(classify(result, _tail(ctx.workdir / STDERR_NAME)))
        except _Failure as failure:
            errors.append(failure.error)
        ctx.payload_done = True
        ctx.marks["ended"] = time.monotonic()
        if services.cores_freed is not None:
            services.cores_freed(ctx)
        if ctx.abandoned:
            logger.warning("job %d abandoned (%s): no report", job.panda_id, ctx.kill_reason)
        elif ctx.kill_kind is not None:
            # a kill that comes later (during stage-out) is too late: the attempt ends as it ran
            errors, forced_retryable = _kill_errors(ctx), ctx.kill_kind != KillKind.COMMAND
            cancelled = ctx.kill_kind == KillKind.COMMAND
        elif not errors:
            ctx.status = JS.JOB_STATUS_HOLDING
            services.notify_status(ctx)
            files, out_errors = await _stage_out_outputs(ctx, services, logger)
            errors.extend(out_errors)
        else:
            files = [_failed_file(f) for f in job.files if f.type == job_pb2.FILE_TYPE_OUTPUT]
    except Exception as exc:  # a pilot bug must still produce a report and a log
        logger.error("internal error: %s\n%s", exc, traceback.format_exc())
        errors.append(
            job_pb2.JobError(
                component=EC.ERROR_COMPONENT_PILOT,
                code=errorcodes.PILOT_SETUP_FAILED,
                diag=f"pilot error: {exc}"[:1000],
            )
        )
    if ctx.abandoned:
        ctx.logger = None
        logger.removeHandler(handler)
        handler.close()
        return
    log_file, log_error = await _store_log(ctx, services, logger, handler, errors)
    files.append(log_file)
    if log_error is not None:
        errors.append(log_error)
    final = _final(ctx, errors, files, result, forced_retryable, cancelled=cancelled)
    services.report_final(ctx, final)
    if not config.keep_workdirs:
        _remove_workdir(ctx.workdir, log_file_of(job).lfn)


def _remove_workdir(workdir: Path, tarball: str) -> None:
    """Remove a finished job's work directory: the usual files one by one, else the whole tree.

    Why not always ``rmtree``: for a short job the directory holds just the payload's output and the
    log tarball, and three unlinks and an ``rmdir`` cost a third of ``rmtree``'s walk.
    """
    for name in (STDOUT_NAME, STDERR_NAME, tarball):
        try:
            os.unlink(workdir / name)
        except FileNotFoundError:
            pass
        except OSError:
            break
    try:
        os.rmdir(workdir)
    except OSError:  # the payload left more (or a directory named like one of those)
        shutil.rmtree(workdir, ignore_errors=True)


async def _stage_in(ctx: JobContext, services: JobServices, logger: logging.Logger) -> None:
    for f in ctx.job.files:
        if f.type != job_pb2.FILE_TYPE_INPUT:
            continue
        if ctx.kill_kind is not None:
            return
        try:
            await asyncio.to_thread(staging.stage_in, f, ctx.workdir, services.resolver, logger)
        except staging.StagingError as exc:
            logger.error("stage-in failed: %s", exc.diag)
            raise _Failure(EC.ERROR_COMPONENT_DDM, exc.code, exc.diag) from exc


async def _run_payload(ctx: JobContext, services: JobServices, logger: logging.Logger) -> PayloadResult:
    config, job = services.config, ctx.job
    env = job_environment(job, ctx.workdir, config)
    try:
        argv = payload_argv(job.transformation, job.job_parameters, workdir=ctx.workdir, path_env=env.get("PATH", ""))
    except ValueError as exc:
        logger.error("%s", exc)
        raise _Failure(EC.ERROR_COMPONENT_PILOT, errorcodes.PILOT_SETUP_FAILED, str(exc)) from exc
    spec = PayloadSpec(
        argv=argv,
        cwd=ctx.workdir,
        env=env,
        stdout_path=ctx.workdir / STDOUT_NAME,
        stderr_path=ctx.workdir / STDERR_NAME,
        max_walltime_s=float(job.max_walltime_s),
        memory_mb=job.memory_mb,
        kill_grace_s=config.kill_grace_s,
        monitor_interval_s=config.monitor_interval_s,
    )
    payload = Payload(spec=spec, logger=logger)
    try:
        await payload.start()
    except PayloadStartError as exc:
        logger.error("%s", exc)
        raise _Failure(EC.ERROR_COMPONENT_PILOT, errorcodes.PILOT_SETUP_FAILED, str(exc)) from exc
    ctx.payload = payload
    ctx.marks["started"] = time.monotonic()
    if ctx.kill_kind is not None:  # killed while starting
        payload.request_kill(EndReason.KILLED, ctx.kill_reason)
    ctx.status = JS.JOB_STATUS_RUNNING
    services.notify_status(ctx)
    result = await payload.wait()
    logger.info(
        "payload ended (%s): exit code %d, cpu %.1fs, max RSS %d KiB, walltime %.1fs",
        result.reason.value,
        result.exit_code,
        result.usage.cpu_time_s,
        result.usage.max_rss_kb,
        result.usage.walltime_s,
    )
    return result


def _kill_errors(ctx: JobContext) -> list[job_pb2.JobError]:
    code = {
        KillKind.COMMAND: errorcodes.KILLED_BY_USER,
        KillKind.PILOT_WALLTIME: errorcodes.MAX_WALLTIME,
        KillKind.SHUTDOWN: PILOT_SIGNALLED,
    }.get(ctx.kill_kind or "", errorcodes.KILLED_BY_USER)
    return [job_pb2.JobError(component=EC.ERROR_COMPONENT_PILOT, code=code, diag=ctx.kill_reason[:1000])]


def _failed_file(f: job_pb2.File) -> job_pb2.File:
    out = job_pb2.File()
    out.CopyFrom(f)
    out.status = staging.FILE_STATUS_FAILED
    return out


async def _stage_out_outputs(
    ctx: JobContext, services: JobServices, logger: logging.Logger
) -> tuple[list[job_pb2.File], list[job_pb2.JobError]]:
    files: list[job_pb2.File] = []
    first_error: job_pb2.JobError | None = None
    for f in ctx.job.files:
        if f.type != job_pb2.FILE_TYPE_OUTPUT:
            continue
        try:
            local = _output_path(ctx.workdir, f.lfn)
            files.append(await asyncio.to_thread(staging.stage_out, f, local, ctx.job, services.resolver, logger))
        except staging.StagingError as exc:
            logger.error("stage-out failed: %s", exc.diag)
            files.append(_failed_file(f))
            if first_error is None:
                first_error = job_pb2.JobError(component=EC.ERROR_COMPONENT_DDM, code=exc.code, diag=exc.diag[:1000])
    return files, [first_error] if first_error else []


def _output_path(workdir: Path, lfn: str) -> Path:
    """Where the payload left output ``lfn``: directly inside the work directory, nowhere else."""
    try:
        return sandbox.workdir_file(workdir, lfn)
    except sandbox.UnsafeName as exc:
        raise staging.StagingError(errorcodes.STAGEOUT_FAILED, f"bad output lfn: {exc}") from exc


def log_file_of(job: job_pb2.Job) -> job_pb2.File:
    """The job's LOG file entry, or a new one named ``<job_name>.job.log.tgz``.

    Either way its lfn is a plain file name (a LOG lfn that is not, from an older dispatcher, is
    replaced by the conventional name), so the tarball stays in the work directory.
    """
    for f in job.files:
        if f.type == job_pb2.FILE_TYPE_LOG:
            out = job_pb2.File()
            out.CopyFrom(f)
            if not is_plain_file_name(out.lfn):
                out.lfn = log_lfn(job.job_name, job.panda_id)
            return out
    return job_pb2.File(
        lfn=log_lfn(job.job_name, job.panda_id),
        type=job_pb2.FILE_TYPE_LOG,
        dataset=job.destination_dblock,
    )


async def _store_log(
    ctx: JobContext,
    services: JobServices,
    logger: logging.Logger,
    handler: JobLog,
    errors: list[job_pb2.JobError],
) -> tuple[job_pb2.File, job_pb2.JobError | None]:
    log_file = log_file_of(ctx.job)
    for e in errors:
        logger.info("error: component %s code %d: %s", job_pb2.ErrorComponent.Name(e.component), e.code, e.diag)
    logger.info("making log tarball %s", log_file.lfn)
    logger.removeHandler(handler)
    handler.close()
    ctx.logger = None
    tarball = sandbox.workdir_file(ctx.workdir, log_file.lfn)  # log_file_of made it a plain name
    pilot_log = handler.text().encode()
    members: list[tuple[Path | bytes, str]] = [
        (ctx.workdir / STDOUT_NAME, STDOUT_NAME),
        (ctx.workdir / STDERR_NAME, STDERR_NAME),
        (pilot_log, PILOT_LOG_NAME),
    ]
    if ctx.debug_snapshots:
        snapshots = sorted(ctx.workdir.glob(DEBUG_SNAPSHOT_GLOB), key=lambda p: int(p.stem.rsplit("-", 1)[1]))
        members += [(p, p.name) for p in snapshots]

    def store() -> job_pb2.File:  # one trip to a worker thread for the whole log
        if services.config.keep_workdirs:
            (ctx.workdir / PILOT_LOG_NAME).write_bytes(pilot_log)
        make_log_tarball(tarball, members)
        return staging.stage_out(log_file, tarball, ctx.job, services.resolver, logger)

    try:
        return await asyncio.to_thread(store), None
    except staging.StagingError as exc:
        logger.error("log stage-out failed: %s", exc.diag)
        return _failed_file(log_file), job_pb2.JobError(
            component=EC.ERROR_COMPONENT_DDM, code=exc.code, diag=f"log: {exc.diag}"[:1000]
        )
    except OSError as exc:
        logger.error("log tarball failed: %s", exc)
        return _failed_file(log_file), job_pb2.JobError(
            component=EC.ERROR_COMPONENT_PILOT, code=errorcodes.STAGEOUT_FAILED, diag=f"log tarball: {exc}"[:1000]
        )


def _final(
    ctx: JobContext,
    errors: list[job_pb2.JobError],
    files: list[job_pb2.File],
    result: PayloadResult | None,
    forced_retryable: bool | None,
    *,
    cancelled: bool,
) -> pilot_pb2.JobFinal:
    if cancelled:
        status = JS.JOB_STATUS_CANCELLED
    elif errors:
        status = JS.JOB_STATUS_FAILED
    else:
        status = JS.JOB_STATUS_FINISHED
    if status != JS.JOB_STATUS_FAILED:
        retryable = False
    elif forced_retryable is not None:
        retryable = forced_retryable
    else:
        retryable = all(e.code in errorcodes.RETRYABLE_CODES for e in errors)
    usage = result.usage if result else ctx.usage()
    metrics = job_pb2.JobMetrics(
        cpu_time_s=usage.cpu_time_s,
        max_rss_kb=usage.max_rss_kb,
        walltime_s=usage.walltime_s,
        exit_code=result.exit_code if result else 0,
    )
    return pilot_pb2.JobFinal(
        panda_id=ctx.panda_id,
        lease_epoch=ctx.epoch,
        status=status,  # type: ignore[arg-type]
        errors=errors,
        metrics=metrics,
        files=files,
        retryable=retryable,
    )
