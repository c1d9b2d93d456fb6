"""The pilot keeps every file inside the job's work directory and hands payloads an explicit environment.

Real payload processes, real files and a real ``file://`` storage element; only the dispatcher
end is replaced by the two callbacks a job task reports through. Jobs here carry names that the
current dispatcher rejects, as an older dispatcher may have let them through: the pilot must be
safe on its own, and the final report it makes must pass the dispatcher's own check.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path

import pytest

from ailuro.v1 import job_pb2, pilot_pb2
from ddm.protocols import url_to_path
from ddm.storage import StorageConfig, StorageResolver
from dispatcher import validation
from pilot.config import PilotConfig
from pilot.job import JobContext, JobServices, run_job

pytestmark = pytest.mark.timeout(60)

JS = job_pb2.JobStatus


class Recorder:
    def __init__(self) -> None:
        self.finals: list[pilot_pb2.JobFinal] = []

    def notify(self, ctx: JobContext) -> None:
        pass

    def report(self, ctx: JobContext, final: pilot_pb2.JobFinal) -> None:
        ctx.reported = True
        self.finals.append(final)


def _services(tmp_path: Path, rec: Recorder, **config: object) -> JobServices:
    cfg = PilotConfig(
        server="127.0.0.1:1",
        queue="TESTQ",
        pilot_id="pilot-sandbox",
        workdir=tmp_path / "a" / "b" / "work",
        spool_dir=tmp_path / "spool",
        kill_grace_s=0.5,
        monitor_interval_s=0.1,
        **config,  # type: ignore[arg-type]
    )
    resolver = StorageResolver(StorageConfig(storage_root=tmp_path / "storage", environ={}))
    return JobServices(config=cfg, resolver=resolver, notify_status=rec.notify, report_final=rec.report)


def _job(panda_id: int, code: str, **fields: object) -> job_pb2.Job:
    return job_pb2.Job(
        panda_id=panda_id,
        attempt_nr=1,
        transformation=sys.executable,
        job_parameters=f"-c {shlex.quote(code)}",
        destination_se="DISK",
        **fields,  # type: ignore[arg-type]
    )


async def _run(job: job_pb2.Job, services: JobServices) -> pilot_pb2.JobFinal:
    ctx = JobContext(job=job, epoch=1, lease_s=60, workdir=services.config.workdir / f"{job.panda_id}-1")
    await run_job(ctx, services)
    rec = services.report_final.__self__  # type: ignore[attr-defined]
    (final,) = rec.finals
    return final


def _files_outside(tmp_path: Path, allowed: tuple[Path, ...]) -> list[Path]:
    """Every file under tmp_path that is not below one of ``allowed``."""
    return [p for p in tmp_path.rglob("*") if p.is_file() and not any(p.is_relative_to(root) for root in allowed)]


async def test_job_name_with_dot_dot_cannot_place_the_log_outside_and_the_final_is_valid(tmp_path: Path) -> None:
    rec = Recorder()
    services = _services(tmp_path, rec)
    final = await _run(_job(21, "print('hi')", job_name="../../../escape"), services)
    assert final.status == JS.JOB_STATUS_FINISHED, final.errors
    (log,) = [f for f in final.files if f.type == job_pb2.FILE_TYPE_LOG]
    assert log.lfn == "_.._.._escape.job.log.tgz"
    assert url_to_path(log.pfn) == tmp_path / "storage" / "DISK" / log.lfn
    assert validation.final_problem(final) is None, "the dispatcher accepts the job's own final report"
    stray = _files_outside(tmp_path, (tmp_path / "storage", services.config.workdir))
    assert stray == [], f"files written outside the work directory: {stray}"


async def test_a_log_lfn_of_dot_dot_from_an_old_dispatcher_is_renamed(tmp_path: Path) -> None:
    rec = Recorder()
    services = _services(tmp_path, rec)
    job = _job(22, "pass", job_name="old", files=[job_pb2.File(lfn="..", type=job_pb2.FILE_TYPE_LOG)])
    final = await _run(job, services)
    (log,) = [f for f in final.files if f.type == job_pb2.FILE_TYPE_LOG]
    assert (final.status, log.lfn, log.status) == (JS.JOB_STATUS_FINISHED, "old.job.log.tgz", "transferred")
    assert validation.final_problem(final) is None
    assert _files_outside(tmp_path, (tmp_path / "storage", services.config.workdir)) == []


async def test_an_output_lfn_with_dot_dot_never_reads_outside_the_workdir(tmp_path: Path) -> None:
    """With a dispatcher-chosen pfn the name is not checked by storage resolution: the pilot must refuse it."""
    rec = Recorder()
    services = _services(tmp_path, rec)
    secret = services.config.workdir / "secret"
    secret.parent.mkdir(parents=True)
    secret.write_text("pilot host data")
    target = tmp_path / "storage" / "DISK" / "stolen"
    out = job_pb2.File(lfn="../secret", type=job_pb2.FILE_TYPE_OUTPUT, pfn=target.as_uri())
    final = await _run(_job(23, "pass", job_name="steal", files=[out]), services)
    assert final.status == JS.JOB_STATUS_FAILED
    assert [f.status for f in final.files if f.type == job_pb2.FILE_TYPE_OUTPUT] == ["failed"]
    assert not target.exists(), "a file outside the work directory was staged out"


async def test_a_symlink_planted_by_the_payload_is_not_followed_by_the_log_tarball(tmp_path: Path) -> None:
    rec = Recorder()
    services = _services(tmp_path, rec)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    code = (
        f"import os; os.symlink({str(victim)!r}, 'j24.job.log.tgz.part'); "
        f"os.symlink({str(victim)!r}, 'j24.job.log.tgz')"
    )
    final = await _run(_job(24, code, job_name="j24"), services)
    assert final.status == JS.JOB_STATUS_FINISHED, final.errors
    assert victim.read_text() == "precious"
    assert not victim.is_symlink()


def test_workdir_file_refuses_anything_but_a_plain_name(tmp_path: Path) -> None:
    from pilot import sandbox

    assert sandbox.workdir_file(tmp_path, "ok.root") == tmp_path / "ok.root"
    for bad in ("", ".", "..", "../x", "a/b", "/etc/passwd", "x\x00", "x\x1b"):
        with pytest.raises(sandbox.UnsafeName):
            sandbox.workdir_file(tmp_path, bad)


async def test_the_payload_sees_the_allowed_environment_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        monkeypatch.delenv(key)
    pilot_env = {
        "PATH": "/usr/bin:/bin",
        "HOME": "/home/pilot",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TMPDIR": "/tmp",
        "USER": "pilot",
        "SLURM_JOB_ID": "4242",
        "_CONDOR_SCRATCH_DIR": "/scratch",
        "LSB_JOBID": "77",
        "X509_CERT_DIR": "/etc/grid-security/certificates",
        "SITE_SW_ROOT": "/cvmfs/compass",
        # the pilot's own configuration and credentials: never for the payload
        "AILURO_TOKEN": "s3cr3t",
        "AILURO_SERVER": "dispatcher:50051",
        "AILURO_STORAGE_ROOT": "/data",
        "BEARER_TOKEN": "bt",
        "X509_USER_PROXY": "/tmp/x509up_u1000",
        "SLURM_JWT": "jwt",
        "_CONDOR_CREDS": "/var/lib/condor/creds",
        "AWS_SECRET_ACCESS_KEY": "k",
        "DB_PASSWORD": "p",
        "SITE_SW_TOKEN": "allowed by pattern but a credential",
        "RANDOM_VARIABLE": "not on the list",
    }
    for key, value in pilot_env.items():
        monkeypatch.setenv(key, value)
    rec = Recorder()
    services = _services(tmp_path, rec, payload_env_allow=("SITE_SW_*",), keep_workdirs=True)
    code = "import json, os; open('env.json', 'w').write(json.dumps(dict(os.environ)))"
    job = _job(25, code, job_name="envdump", environment={"JOBVAR": "j", "PATH": "/opt/job/bin:/usr/bin:/bin"})
    final = await _run(job, services)
    assert final.status == JS.JOB_STATUS_FINISHED, final.errors
    seen = json.loads((services.config.workdir / "25-1" / "env.json").read_text())
    seen.pop("LC_CTYPE", None)  # Python's own locale coercion (PEP 538) may add it
    expected = {
        "PATH": "/opt/job/bin:/usr/bin:/bin",
        "HOME": "/home/pilot",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TMPDIR": "/tmp",
        "USER": "pilot",
        "SLURM_JOB_ID": "4242",
        "_CONDOR_SCRATCH_DIR": "/scratch",
        "LSB_JOBID": "77",
        "X509_CERT_DIR": "/etc/grid-security/certificates",
        "SITE_SW_ROOT": "/cvmfs/compass",
        "JOBVAR": "j",
        "AILURO_PANDA_ID": "25",
        "AILURO_WORKDIR": str(services.config.workdir / "25-1"),
        "AILURO_JOB_NAME": "envdump",
        "AILURO_ATTEMPT": "1",
        "AILURO_QUEUE": "TESTQ",
        "AILURO_PILOT_ID": "pilot-sandbox",
    }
    assert seen == expected


@pytest.mark.parametrize(
    "name",
    ["AILURO_TOKEN", "BEARER_TOKEN", "X509_USER_PROXY", "SLURM_JWT", "_CONDOR_CREDS", "KRB5CCNAME", "MY_API_KEY"],
)
def test_credential_names_never_pass_even_when_allowed(name: str) -> None:
    from pilot import environment

    assert environment.is_credential_name(name)
    assert environment.inherited({name: "x"}, ("*",)) == {}


@pytest.mark.parametrize("name", ["PATH", "LC_ALL", "SLURM_JOB_ID", "_CONDOR_JOB_AD", "LSB_JOBID", "X509_CERT_DIR"])
def test_default_allow_list_names_are_not_credentials(name: str) -> None:
    from pilot import environment

    assert environment.inherited({name: "x"}, environment.DEFAULT_ALLOW) == {name: "x"}


def test_queue_pilot_env_reaches_the_pilot_config_through_the_factory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``pass_env`` in the queue file -> the factory's ``--pass-env`` -> ``PilotConfig.payload_env_allow``."""
    import typer
    from typer.testing import CliRunner

    import pilot.main
    from ailuro.errors import InvalidArgument
    from ailuro.queues import parse_queues
    from ailuro_cli.pilot import register
    from backends.factory import Factory, FactoryConfig

    (queue,) = parse_queues({"queue": [{"name": "CERN_LOCAL", "pass_env": ["CMT_*", "LD_LIBRARY_PATH"]}]})
    with pytest.raises(InvalidArgument):
        parse_queues({"queue": [{"name": "Q", "pass_env": ["A=B"]}]})
    factory = Factory(FactoryConfig(server="127.0.0.1:1", queues=(queue,), workdir=tmp_path / "factory"))
    try:
        args = factory._spec(queue).pilot_args
    finally:
        factory.close()
    assert args == ("--pass-env=CMT_*", "--pass-env=LD_LIBRARY_PATH")

    seen: list[PilotConfig] = []
    monkeypatch.setattr(pilot.main, "run_pilot", lambda config: seen.append(config) or 0)
    monkeypatch.setattr(pilot.main, "setup_logging", lambda level: None)
    app = typer.Typer()
    register(app)
    result = CliRunner().invoke(
        app, ["--server", "127.0.0.1:1", "--queue", "CERN_LOCAL", "--workdir", str(tmp_path / "w"), *args]
    )
    assert result.exit_code == 0, result.output
    assert seen[0].payload_env_allow == ("CMT_*", "LD_LIBRARY_PATH")


def test_payload_environment_follows_a_changed_pilot_environment() -> None:
    """The inherited part is remembered between jobs, but a changed environment is matched afresh
    and a job's own variables never leak into the next job's environment."""
    from pilot import environment

    def env(environ: dict[str, str], job: dict[str, str]) -> dict[str, str]:
        return environment.payload_environment(environ, extra_allow=(), job_environment=job, pilot_variables={})

    assert env({"PATH": "/a"}, {"X": "1"}) == {"PATH": "/a", "X": "1"}
    assert env({"PATH": "/a"}, {}) == {"PATH": "/a"}
    assert env({"PATH": "/b", "LC_ALL": "C", "AILURO_TOKEN": "t"}, {}) == {"PATH": "/b", "LC_ALL": "C"}
    assert environment.payload_environment(
        {"PATH": "/b", "MINE": "m"}, extra_allow=("MINE",), job_environment={}, pilot_variables={}
    ) == {"PATH": "/b", "MINE": "m"}
