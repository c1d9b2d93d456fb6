"""GetJobLog / ``ailuro job log``: a real pilot stores the log tarball; users read it back, verified."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tarfile
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ailuro import Client
from ailuro.errors import FailedPrecondition, InvalidArgument, NotFound
from ailuro.v1 import job_pb2
from ailuro_cli.main import app
from dispatcher.server import RunningDispatcher


@pytest.fixture
def dispatcher(make_dispatcher: Callable[..., RunningDispatcher], tmp_path: Path) -> RunningDispatcher:
    """A dispatcher that reads logs back from the pilots' storage root (and nowhere else)."""
    return make_dispatcher(storage_root=tmp_path / "storage")


def _run_one_job(dispatcher: RunningDispatcher, tmp_path: Path, code: str) -> int:
    job = job_pb2.Job(
        job_name="logged",
        computing_site="LOCAL",
        transformation=sys.executable,
        job_parameters=f"-c {shlex.quote(code)}",
        destination_se="DISK",
    )
    with Client(dispatcher.address) as client:
        (panda_id,) = client.submit([job])
    env = dict(os.environ, AILURO_STORAGE_ROOT=str(tmp_path / "storage"))
    env.pop("AILURO_SERVER", None)
    argv = [sys.executable, "-m", "pilot", "--server", dispatcher.address, "--queue", "LOCAL", "--pilot-id", "p-log",
            "--workdir", str(tmp_path / "work"), "--heartbeat-s", "0.5", "--idle-timeout-s", "2"]  # fmt: skip
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return panda_id


def test_stdout_stderr_pilot_log_and_tarball(dispatcher: RunningDispatcher, tmp_path: Path) -> None:
    code = "import sys; print('hello from the payload'); print('a warning', file=sys.stderr)"
    panda_id = _run_one_job(dispatcher, tmp_path, code)
    with Client(dispatcher.address) as client:
        (job,) = client.get([panda_id])
        assert job.status == job_pb2.JOB_STATUS_FINISHED
        (log_file,) = [f for f in job.files if f.type == job_pb2.FILE_TYPE_LOG]
        out, head = client.job_log(panda_id, member="payload.stdout")
        assert out == b"hello from the payload\n"
        assert head.lfn == log_file.lfn == "logged.job.log.tgz" and head.pfn == log_file.pfn
        assert {"payload.stdout", "payload.stderr", "pilot.log"} <= set(head.members)
        assert client.job_log(panda_id, member="payload.stderr")[0] == b"a warning\n"
        whole, head = client.job_log(panda_id)
        assert head.size == len(whole) == log_file.size
        assert f"{zlib.adler32(whole):08x}" == log_file.adler32
        saved = tmp_path / "saved.tgz"
        saved.write_bytes(whole)
        with tarfile.open(saved) as tar:
            assert any(m.name.endswith("/pilot.log") for m in tar.getmembers())

    runner = CliRunner()
    result = runner.invoke(app, ["--server", dispatcher.address, "job", "log", str(panda_id)])
    assert result.exit_code == 0, result.output
    assert result.output == "hello from the payload\n"
    result = runner.invoke(app, ["--server", dispatcher.address, "job", "log", str(panda_id), "--pilot"])
    assert result.exit_code == 0 and str(panda_id) in result.output
    target = tmp_path / "cli.tgz"
    result = runner.invoke(app, ["--server", dispatcher.address, "job", "log", str(panda_id), "-o", str(target)])
    assert result.exit_code == 0 and target.read_bytes() == whole


def test_errors_name_what_is_wrong(dispatcher: RunningDispatcher, tmp_path: Path) -> None:
    panda_id = _run_one_job(dispatcher, tmp_path, "print('x')")
    with Client(dispatcher.address) as client:
        with pytest.raises(NotFound) as info:
            client.job_log(panda_id, member="core.dump")
        assert info.value.field == "member" and "payload.stdout" in str(info.value)
        with pytest.raises(InvalidArgument) as bad:
            client.job_log(panda_id, member="../etc/passwd")
        assert bad.value.field == "member"
        with pytest.raises(NotFound) as missing:
            client.job_log(10**12)
        assert missing.value.field == "panda_id"
        (queued,) = client.submit([job_pb2.Job(transformation="/bin/true", computing_site="LOCAL")])
        with pytest.raises(FailedPrecondition, match="has no stored log yet"):
            client.job_log(queued)


def test_a_corrupted_log_is_refused_not_served(dispatcher: RunningDispatcher, tmp_path: Path) -> None:
    panda_id = _run_one_job(dispatcher, tmp_path, "print('x')")
    with Client(dispatcher.address) as client:
        (job,) = client.get([panda_id])
        (log_file,) = [f for f in job.files if f.type == job_pb2.FILE_TYPE_LOG]
        path = Path(log_file.pfn.removeprefix("file://"))
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
        with pytest.raises(Exception, match="corrupted: adler32"):
            client.job_log(panda_id)
