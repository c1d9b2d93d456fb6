"""Hostile names end to end: a real dispatcher (SQLite and PostgreSQL), the real CLI, the monitor, a real pilot.

- The dispatcher refuses path traversal and control characters in names with INVALID_ARGUMENT
  naming the field (issue 12, finding 8).
- A job whose stored name is hostile anyway (written by an older dispatcher: the test puts it in
  the database directly) runs on a real pilot without anything landing outside the pilot's work
  directory, its own final report is accepted (it finishes, it does not sit in holding), and
  the payload sees none of the pilot's credentials (finding 11).
- ``ailuro jobs``, ``ailuro job show`` and ``ailuro job events`` and the monitor's pages print
  stored ESC sequences and rich markup as visible text; the JSON stays exact (finding 9).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tarfile
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from monitor_login import identities
from typer.testing import CliRunner, Result

from ailuro.client import Client
from ailuro.v1 import job_pb2, submission_pb2, submission_pb2_grpc
from ailuro_cli.main import app
from ddm.protocols import url_to_path
from dispatcher.server import RunningDispatcher
from monitor.app import create_app
from monitor.config import MonitorConfig

pytestmark = pytest.mark.timeout(180)

JS = job_pb2.JobStatus
ESC_NAME = "evil\x1b]0;owned\x07\x1b[2J\x9b31m[bold red]x[/]"
"""Retitles and clears a terminal (OSC 0, ED), an 8-bit CSI, and rich markup."""
ESC_SHOWN = "evil\\x1b]0;owned\\x07\\x1b[2J\\x9b31m[bold red]x[/]"


def _store_job_name(db_url: str, panda_id: int, name: str) -> None:
    """What an older dispatcher that accepted ``name`` would have stored (column and serialized spec)."""
    engine = sa.create_engine(db_url)
    try:
        with engine.begin() as conn:
            jobs = sa.Table("jobs", sa.MetaData(), autoload_with=conn)
            spec = job_pb2.Job.FromString(
                conn.execute(sa.select(jobs.c.spec).where(jobs.c.panda_id == panda_id)).scalar_one()
            )
            spec.job_name = name
            conn.execute(
                jobs.update().where(jobs.c.panda_id == panda_id).values(job_name=name, spec=spec.SerializeToString())
            )
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("job", "field"),
    [
        (job_pb2.Job(transformation="/bin/true", job_name="../../escape"), "jobs[0].job_name"),
        (job_pb2.Job(transformation="/bin/true", job_name="x\x1b[2J"), "jobs[0].job_name"),
        (job_pb2.Job(transformation="/bin/true", destination_se="../../tmp"), "jobs[0].destination_se"),
        (
            job_pb2.Job(transformation="/bin/true", files=[job_pb2.File(lfn="..", type=job_pb2.FILE_TYPE_OUTPUT)]),
            "jobs[0].files[0].lfn",
        ),
        (
            job_pb2.Job(
                transformation="/bin/true", files=[job_pb2.File(lfn="o", type=job_pb2.FILE_TYPE_OUTPUT, scope="../s")]
            ),
            "jobs[0].files[0].scope",
        ),
    ],
)
def test_dispatcher_rejects_hostile_names_naming_the_field(
    dispatcher: RunningDispatcher, job: job_pb2.Job, field: str
) -> None:
    with grpc.insecure_channel(dispatcher.address) as channel:
        stub = submission_pb2_grpc.SubmissionServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.SubmitJobs(submission_pb2.SubmitJobsRequest(jobs=[job]), timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in info.value.details()


def _cli(dispatcher: RunningDispatcher, *args: str) -> str:
    runner = CliRunner(env={"COLUMNS": "300", "AILURO_SERVER": None, "AILURO_USER": None})
    result: Result = runner.invoke(app, ["--server", dispatcher.address, *args])
    assert result.exit_code == 0, f"exit {result.exit_code}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def _assert_shown_not_sent(text: str, *visible: str) -> None:
    for ch in ("\x1b", "\x07", "\x9b"):
        assert ch not in text, f"raw control character {ch!r} reached the output:\n{text!r}"
    for v in visible:
        assert v in text, f"{v!r} not shown in:\n{text}"


def test_cli_and_monitor_print_stored_escapes_and_markup_literally(
    dispatcher: RunningDispatcher, db_url: str, tmp_path: Path
) -> None:
    with Client(dispatcher.address) as client:
        (pid,) = client.submit(
            [{"transformation": "/bin/true", "job_name": "placeholder", "params": "-x \x1b[5mblink"}]
        )
        _store_job_name(db_url, pid, ESC_NAME)
        client.kill([pid], reason="stop \x1b[31mRED\x1b[0m [bold]markup[/]")

    listing = _cli(dispatcher, "jobs")
    _assert_shown_not_sent(listing, ESC_SHOWN)
    shown = _cli(dispatcher, "job", "show", str(pid))
    _assert_shown_not_sent(shown, ESC_SHOWN, "-x \\x1b[5mblink")
    events = _cli(dispatcher, "job", "events", str(pid))
    _assert_shown_not_sent(events, "stop \\x1b[31mRED\\x1b[0m [bold]markup[/]")
    # JSON output is exact: a script gets the stored value back, escapes and all
    assert json.loads(_cli(dispatcher, "job", "show", str(pid), "--json"))["job_name"] == ESC_NAME

    who = identities(tmp_path)
    web_app = create_app(MonitorConfig(db_url=db_url, auth=who.auth()))
    try:
        with TestClient(web_app, headers=who.admin()) as web:
            page = web.get(f"/job/{pid}").text
            _assert_shown_not_sent(page, "evil\\x1b]0;owned\\x07", "[bold red]x[/]")
            _assert_shown_not_sent(web.get("/jobs/").text)
            assert web.get(f"/job/{pid}?json").json()["job"]["jobname"] == ESC_NAME
    finally:
        web_app.state.db.dispose()


def _pilot(address: str, tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    argv = [
        sys.executable,
        "-m",
        "pilot",
        "--server",
        address,
        "--queue",
        "LOCAL",
        "--pilot-id",
        "pilot-hostile",
        "--workdir",
        str(tmp_path / "pilot" / "work"),
        "--heartbeat-s",
        "0.5",
        "--idle-timeout-s",
        "3",
        "--max-jobs",
        "1",
    ]
    environ = {k: v for k, v in os.environ.items() if k not in ("AILURO_SERVER", "AILURO_PILOT_UNARY")}
    environ.update(env, AILURO_STORAGE_ROOT=str(tmp_path / "storage"))
    return subprocess.run(argv, env=environ, capture_output=True, timeout=120)


def test_real_pilot_keeps_a_hostile_job_inside_its_workdir_and_keeps_its_credentials(
    dispatcher: RunningDispatcher, db_url: str, tmp_path: Path
) -> None:
    code = "import json, os; print(json.dumps(sorted(os.environ)))"
    job = {
        "transformation": sys.executable,
        "params": f"-c {shlex.quote(code)}",
        "job_name": "placeholder",
        "destination_se": "DISK",
        "computing_site": "LOCAL",
    }
    with Client(dispatcher.address) as client:
        (pid,) = client.submit([job])
        _store_job_name(db_url, pid, "../../../escape")
        run = _pilot(dispatcher.address, tmp_path, {"AILURO_TOKEN": "s3cr3t", "BEARER_TOKEN": "bt", "MY_VAR": "x"})
        assert run.returncode == 0, run.stderr.decode(errors="replace")[-3000:]
        (done,) = client.get([pid])
    # finished, not holding: the pilot's own final report (with its log file) was accepted
    assert done.status == JS.JOB_STATUS_FINISHED, (JS.Name(done.status), done.errors)
    (log,) = [f for f in done.files if f.type == job_pb2.FILE_TYPE_LOG]
    assert log.lfn == "_.._.._escape.job.log.tgz"
    log_path = url_to_path(log.pfn)
    assert log_path == tmp_path / "storage" / "DISK" / log.lfn
    stray = [
        p
        for p in tmp_path.rglob("*")
        if "escape" in p.name
        and not p.is_relative_to(tmp_path / "storage")
        and not p.is_relative_to(tmp_path / "pilot")
    ]
    assert stray == [], f"written outside the pilot's work directory: {stray}"
    assert not list((tmp_path / "pilot").glob("*escape*")), "written beside the job work directories"
    with tarfile.open(log_path) as tar:
        member = tar.extractfile(f"{log.lfn.removesuffix('.tgz')}/payload.stdout")
        assert member is not None
        seen = set(json.loads(member.read()))
    assert {"AILURO_TOKEN", "BEARER_TOKEN", "MY_VAR", "AILURO_SERVER", "AILURO_STORAGE_ROOT"}.isdisjoint(seen), seen
    assert {"PATH", "AILURO_PANDA_ID", "AILURO_WORKDIR"} <= seen
