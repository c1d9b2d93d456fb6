"""A whole attempt on the pilot side, without a dispatcher: run_job from work directory to final report.

Real files, real payload processes and real storage directories; only the dispatcher end is
replaced by the two callbacks the pilot gives a job (status notifications and the final report).
"""

from __future__ import annotations

import asyncio
import os
import shlex
import sys
import tarfile
import zlib
from pathlib import Path

import pytest

from ailuro import errorcodes
from ailuro.v1 import job_pb2, pilot_pb2
from ddm.protocols import url_to_path
from ddm.storage import StorageConfig, StorageResolver
from pilot.config import PilotConfig
from pilot.job import JobContext, JobServices, KillKind, payload_argv, run_job
from pilot.runner import EndReason, Payload, PayloadSpec

pytestmark = pytest.mark.timeout(60)

JS = job_pb2.JobStatus


class Recorder:
    """Collects what a job task tells the pilot."""

    def __init__(self) -> None:
        self.statuses: list[int] = []
        self.finals: list[pilot_pb2.JobFinal] = []

    def notify(self, ctx: JobContext) -> None:
        self.statuses.append(ctx.status)

    def report(self, ctx: JobContext, final: pilot_pb2.JobFinal) -> None:
        ctx.reported = True
        self.finals.append(final)


@pytest.fixture
def env(tmp_path: Path) -> tuple[JobServices, Recorder, Path]:
    rec = Recorder()
    config = PilotConfig(
        server="127.0.0.1:1",
        queue="TESTQ",
        pilot_id="pilot-unit",
        workdir=tmp_path / "work",
        spool_dir=tmp_path / "spool",
        kill_grace_s=0.5,
        monitor_interval_s=0.1,
    )
    storage = tmp_path / "storage"
    resolver = StorageResolver(StorageConfig(storage_root=storage, environ={}))
    return (
        JobServices(config=config, resolver=resolver, notify_status=rec.notify, report_final=rec.report),
        rec,
        storage,
    )


def _python_job(panda_id: int, code: str, **fields: object) -> job_pb2.Job:
    return job_pb2.Job(
        panda_id=panda_id,
        job_name=f"job_{panda_id}",
        attempt_nr=1,
        transformation=sys.executable,
        job_parameters=f"-c {shlex.quote(code)}",
        destination_se="DISK",
        **fields,  # type: ignore[arg-type]
    )


async def _run(job: job_pb2.Job, services: JobServices) -> JobContext:
    ctx = JobContext(job=job, epoch=3, lease_s=60, workdir=services.config.workdir / f"{job.panda_id}-{job.attempt_nr}")
    await run_job(ctx, services)
    return ctx


def _log_members(final: pilot_pb2.JobFinal) -> dict[str, str]:
    (log,) = [f for f in final.files if f.type == job_pb2.FILE_TYPE_LOG]
    path = url_to_path(log.pfn)
    assert f"{zlib.adler32(path.read_bytes()):08x}" == log.adler32
    assert path.stat().st_size == log.size
    with tarfile.open(path) as tar:
        return {m.name.split("/", 1)[1]: tar.extractfile(m).read().decode() for m in tar.getmembers()}  # type: ignore[union-attr]


async def test_success_stages_in_runs_and_stages_out(env: tuple[JobServices, Recorder, Path]) -> None:
    services, rec, storage = env
    data = os.urandom(10_000)
    src = storage / "INPUTS" / "compass" / "in.dat"
    src.parent.mkdir(parents=True)
    src.write_bytes(data)
    code = (
        "import os, shutil; print('id', os.environ['AILURO_PANDA_ID'], os.environ['AILURO_JOB_NAME'], "
        "os.environ['AILURO_ATTEMPT'], os.environ['AILURO_QUEUE'], os.environ['MYVAR']); "
        "assert os.getcwd() == os.environ['AILURO_WORKDIR']; shutil.copy('in.dat', 'out.dat')"
    )
    job = _python_job(
        11,
        code,
        environment={"MYVAR": "hello"},
        files=[
            job_pb2.File(
                lfn="in.dat",
                scope="compass",
                source_se="INPUTS",
                type=job_pb2.FILE_TYPE_INPUT,
                adler32=f"{zlib.adler32(data):08x}",
            ),
            job_pb2.File(lfn="out.dat", scope="user.jd", guid="g-1", type=job_pb2.FILE_TYPE_OUTPUT),
        ],
    )
    ctx = await _run(job, services)
    (final,) = rec.finals
    assert final.status == JS.JOB_STATUS_FINISHED, final.errors
    assert (final.panda_id, final.lease_epoch, final.metrics.exit_code, list(final.errors)) == (11, 3, 0, [])
    assert rec.statuses == [JS.JOB_STATUS_STARTING, JS.JOB_STATUS_RUNNING, JS.JOB_STATUS_HOLDING]
    (out,) = [f for f in final.files if f.type == job_pb2.FILE_TYPE_OUTPUT]
    assert (out.lfn, out.guid, out.status, out.size) == ("out.dat", "g-1", "transferred", len(data))
    assert url_to_path(out.pfn) == storage / "DISK" / "user.jd" / "out.dat"
    assert url_to_path(out.pfn).read_bytes() == data and out.adler32 == f"{zlib.adler32(data):08x}"
    members = _log_members(final)
    assert set(members) == {"payload.stdout", "payload.stderr", "pilot.log"}
    assert members["payload.stdout"] == "id 11 job_11 1 TESTQ hello\n"
    assert "staged in in.dat" in members["pilot.log"] and "staged out out.dat" in members["pilot.log"]
    assert not ctx.workdir.exists(), "work directory is removed after the log was stored"


async def test_payload_failure_is_1305_not_retryable_with_log(env: tuple[JobServices, Recorder, Path]) -> None:
    services, rec, _ = env
    job = _python_job(
        12,
        "import sys; print('bad', file=sys.stderr); sys.exit(3)",
        files=[job_pb2.File(lfn="never.dat", type=job_pb2.FILE_TYPE_OUTPUT)],
    )
    await _run(job, services)
    (final,) = rec.finals
    assert final.status == JS.JOB_STATUS_FAILED and not final.retryable
    assert [(e.component, e.code) for e in final.errors] == [
        (job_pb2.ERROR_COMPONENT_PAYLOAD, errorcodes.PAYLOAD_FAILED)
    ]
    assert "exited with code 3" in final.errors[0].diag and final.metrics.exit_code == 3
    assert [f.status for f in final.files if f.type == job_pb2.FILE_TYPE_OUTPUT] == ["failed"]
    assert _log_members(final)["payload.stderr"] == "bad\n"


async def test_memory_error_is_1235(env: tuple[JobServices, Recorder, Path]) -> None:
    services, rec, _ = env
    await _run(_python_job(13, "raise MemoryError()"), services)
    assert [e.code for e in rec.finals[0].errors] == [errorcodes.PAYLOAD_OUT_OF_MEMORY]


async def test_kill_command_cancels_with_1144_and_log(env: tuple[JobServices, Recorder, Path]) -> None:
    services, rec, _ = env
    job = _python_job(14, "import time; print('started', flush=True); time.sleep(60)")
    ctx = JobContext(job=job, epoch=1, lease_s=60, workdir=services.config.workdir / "14-1")
    task = asyncio.create_task(run_job(ctx, services))
    while ctx.status != JS.JOB_STATUS_RUNNING:
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    ctx.kill(KillKind.COMMAND, "killed by jdoe")
    await asyncio.wait_for(task, 10)
    (final,) = rec.finals
    assert final.status == JS.JOB_STATUS_CANCELLED and not final.retryable
    assert [(e.component, e.code, e.diag) for e in final.errors] == [
        (job_pb2.ERROR_COMPONENT_PILOT, errorcodes.KILLED_BY_USER, "killed by jdoe")
    ]
    assert _log_members(final)["payload.stdout"] == "started\n"


async def test_walltime_and_memory_limits(env: tuple[JobServices, Recorder, Path]) -> None:
    services, rec, _ = env
    await _run(_python_job(15, "import time; time.sleep(60)", max_walltime_s=1), services)
    hog = "import time; x = bytearray(300 * 1024 * 1024); x[::4096] = b'y' * len(x[::4096]); time.sleep(60)"
    await _run(_python_job(16, hog, memory_mb=100), services)
    walltime, memory = rec.finals
    assert (walltime.status, [e.code for e in walltime.errors], walltime.retryable) == (
        JS.JOB_STATUS_FAILED,
        [errorcodes.MAX_WALLTIME],
        False,
    )
    assert (memory.status, [e.code for e in memory.errors]) == (JS.JOB_STATUS_FAILED, [errorcodes.MEMORY_EXCEEDED])
    assert memory.metrics.max_rss_kb > 100 * 1024


async def test_missing_input_is_1099_retryable_and_payload_never_runs(env: tuple[JobServices, Recorder, Path]) -> None:
    services, rec, _ = env
    job = _python_job(
        17, "open('ran', 'w')", files=[job_pb2.File(lfn="gone.dat", source_se="INPUTS", type=job_pb2.FILE_TYPE_INPUT)]
    )
    await _run(job, services)
    (final,) = rec.finals
    assert (final.status, final.retryable) == (JS.JOB_STATUS_FAILED, True)
    assert [(e.component, e.code) for e in final.errors] == [(job_pb2.ERROR_COMPONENT_DDM, errorcodes.STAGEIN_FAILED)]
    assert "payload.stdout" not in _log_members(final)
    assert rec.statuses == [JS.JOB_STATUS_STARTING]


async def test_missing_output_is_1137_retryable(env: tuple[JobServices, Recorder, Path]) -> None:
    services, rec, _ = env
    await _run(_python_job(18, "pass", files=[job_pb2.File(lfn="o.dat", type=job_pb2.FILE_TYPE_OUTPUT)]), services)
    (final,) = rec.finals
    assert (final.status, final.retryable, [e.code for e in final.errors]) == (
        JS.JOB_STATUS_FAILED,
        True,
        [errorcodes.STAGEOUT_FAILED],
    )


async def test_unknown_transformation_is_a_clear_pilot_error(env: tuple[JobServices, Recorder, Path]) -> None:
    services, rec, _ = env
    job = job_pb2.Job(
        panda_id=19, job_name="j19", attempt_nr=1, transformation="no-such-program-xyz", destination_se="D"
    )
    await _run(job, services)
    (final,) = rec.finals
    assert (final.status, final.retryable) == (JS.JOB_STATUS_FAILED, False)
    assert final.errors[0].code == errorcodes.PILOT_SETUP_FAILED
    assert "'no-such-program-xyz' not found on PATH" in final.errors[0].diag


async def test_abandoned_job_is_never_reported(env: tuple[JobServices, Recorder, Path]) -> None:
    services, rec, _ = env
    ctx = JobContext(
        job=_python_job(20, "import time; time.sleep(60)"),
        epoch=1,
        lease_s=60,
        workdir=services.config.workdir / "20-1",
    )
    task = asyncio.create_task(run_job(ctx, services))
    while ctx.payload is None:
        await asyncio.sleep(0.05)
    ctx.abandon("stale epoch")
    await asyncio.wait_for(task, 10)
    assert rec.finals == []
    # nothing of the job runs on (its guard is reused by the next payload)
    pid = ctx.payload.payload_pid
    assert pid is not None and not Path(f"/proc/{pid}").exists()


def test_payload_argv(tmp_path: Path) -> None:
    path_env = os.environ["PATH"]
    assert payload_argv("echo", "a 'b c'", workdir=tmp_path, path_env=path_env)[1:] == ["a", "b c"]
    assert payload_argv("python3 -u", "x.py", workdir=tmp_path, path_env=path_env)[1:] == ["-u", "x.py"]
    script = tmp_path / "run.sh"
    script.write_text("#!/bin/sh -e\necho hi\n")
    assert payload_argv("./run.sh", "1", workdir=tmp_path, path_env=path_env) == ["/bin/sh", "-e", str(script), "1"]
    script.chmod(0o755)
    assert payload_argv(str(script), "", workdir=tmp_path, path_env=path_env) == [str(script)]
    (tmp_path / "plain").write_text("no shebang")
    with pytest.raises(ValueError, match="neither executable nor a script"):
        payload_argv("./plain", "", workdir=tmp_path, path_env=path_env)
    with pytest.raises(ValueError, match="not found"):
        payload_argv("./absent.sh", "", workdir=tmp_path, path_env=path_env)
    with pytest.raises(ValueError, match="not found on PATH"):
        payload_argv("nope-xyz", "", workdir=tmp_path, path_env="/nonexistent")


async def test_unusable_workdir_is_a_retryable_pilot_failure(env: tuple[JobServices, Recorder, Path]) -> None:
    services, rec, _ = env
    services.config.workdir.mkdir(parents=True)
    blocker = services.config.workdir / "21-1"
    blocker.write_text("a file where the work directory should be")
    ctx = JobContext(job=_python_job(21, "pass"), epoch=1, lease_s=60, workdir=blocker / "sub")
    await run_job(ctx, services)
    (final,) = rec.finals
    assert (final.status, final.retryable) == (JS.JOB_STATUS_FAILED, True)
    assert final.errors[0].code == errorcodes.PILOT_SETUP_FAILED and "cannot set up" in final.errors[0].diag


async def test_debug_snapshot_shows_the_tree_and_the_output_tails(tmp_path: Path) -> None:
    (tmp_path / "payload.stdout").write_text("x" * 10_000 + "the end of stdout\n")
    ctx = JobContext(job=job_pb2.Job(panda_id=77), epoch=1, lease_s=10, workdir=tmp_path)
    assert "no payload process" in ctx.debug_snapshot("before start").read_text()
    spec = PayloadSpec(
        argv=["sleep", "30"],
        cwd=tmp_path,
        env={"PATH": os.environ["PATH"]},
        stdout_path=tmp_path / "payload.stdout",
        stderr_path=tmp_path / "payload.stderr",
    )
    ctx.payload = Payload(spec=spec)
    await ctx.payload.start()
    try:
        path = ctx.debug_snapshot("look")
        text = path.read_text()
    finally:
        ctx.payload.request_kill(EndReason.KILLED, "done")
        await asyncio.wait_for(ctx.payload.wait(), 10)
    assert path.name == "debug-snapshot-2.txt"
    assert "job 77" in text and "look" in text
    assert f" {ctx.payload.payload_pid} " in text and "sleep 30" in text
    assert "the end of stdout" in text and "x" * 5000 not in text  # only the tail
