"""The real pilot (``python -m pilot`` subprocesses) against a real dispatcher, SQLite and PostgreSQL.

Each test submits jobs through the SDK, runs one or more pilot processes and checks what the
dispatcher recorded and what landed on the (file://) storage element. Payloads are tiny Python
or shell programs; everything is bounded in time and every process started here is stopped.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import tarfile
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ailuro import errorcodes
from ailuro.client import Client
from ailuro.v1 import job_pb2, pilot_pb2
from ddm.protocols import url_to_path
from dispatcher.server import RunningDispatcher
from pilot.spool import FinalSpool

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

JS = job_pb2.JobStatus


class PilotProcess:
    """One ``python -m pilot`` subprocess with its stderr in a file."""

    def __init__(self, address: str, tmp: Path, name: str, *args: str, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.workdir = tmp / name
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = tmp / f"{name}.log"
        argv = [
            sys.executable,
            "-m",
            "pilot",
            "--server",
            address,
            "--queue",
            "LOCAL",
            "--pilot-id",
            name,
            "--workdir",
            str(self.workdir),
            "--heartbeat-s",
            "0.5",
            "--idle-timeout-s",
            "3",
            "--kill-grace-s",
            "0.5",
            *args,
        ]
        environ = dict(os.environ, AILURO_STORAGE_ROOT=str(tmp / "storage"))
        for key in ("AILURO_SERVER", "AILURO_PILOT_UNARY"):
            environ.pop(key, None)
        environ.update(env or {})
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(argv, env=environ, stdout=log, stderr=subprocess.STDOUT)

    def wait(self, timeout: float = 60) -> int:
        """The exit code (the test fails if the pilot does not exit in time)."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"pilot {self.name} did not exit within {timeout}s; log:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def pilots(tmp_path: Path) -> Iterator[Callable[..., PilotProcess]]:
    """Factory: ``pilots(address, name, *extra_args, env=...)``; every pilot is killed at teardown."""
    started: list[PilotProcess] = []

    def start(address: str, name: str, *args: str, env: dict[str, str] | None = None) -> PilotProcess:
        p = PilotProcess(address, tmp_path, name, *args, env=env)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def job_status(client: Client, panda_id: int) -> int:
    return client.get([panda_id])[0].status


def python_job(name: str, code: str, **fields: Any) -> job_pb2.Job:
    return job_pb2.Job(
        job_name=name,
        computing_site="LOCAL",
        transformation=sys.executable,
        job_parameters=f"-c {shlex.quote(code)}",
        destination_se="DISK",
        **fields,
    )


def adler32_of(path: Path) -> str:
    return f"{zlib.adler32(path.read_bytes()):08x}"


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_job_runs_to_finished_with_output_and_log(
    dispatcher: RunningDispatcher, pilots: Callable[..., PilotProcess], tmp_path: Path
) -> None:
    data = os.urandom(50_000)
    source = tmp_path / "storage" / "INPUTS" / "compass" / "in.dat"
    source.parent.mkdir(parents=True)
    source.write_bytes(data)
    code = "import os, shutil; print('job', os.environ['AILURO_PANDA_ID']); shutil.copy('in.dat', 'out.dat')"
    job = python_job(
        "e2e_ok",
        code,
        files=[
            job_pb2.File(
                lfn="in.dat",
                scope="compass",
                source_se="INPUTS",
                type=job_pb2.FILE_TYPE_INPUT,
                adler32=f"{zlib.adler32(data):08x}",
                dataset="compass:in",
            ),
            job_pb2.File(lfn="out.dat", scope="user.test", type=job_pb2.FILE_TYPE_OUTPUT, dataset="user.test:out"),
        ],
    )
    with Client(dispatcher.address) as client:
        (panda_id,) = client.submit([job])
        pilot = pilots(dispatcher.address, "pilot-ok", "--max-jobs", "1")
        assert pilot.wait() == 0, pilot.log()
        (done,) = client.get([panda_id])
    assert done.status == JS.JOB_STATUS_FINISHED, (done.errors, pilot.log())
    assert (done.pilot_id, done.metrics.exit_code) == ("pilot-ok", 0)
    by_lfn = {f.lfn: f for f in done.files}
    out = by_lfn["out.dat"]
    out_path = url_to_path(out.pfn)
    assert out_path == tmp_path / "storage" / "DISK" / "user.test" / "out.dat"
    assert out_path.read_bytes() == data
    assert (out.size, out.adler32) == (len(data), adler32_of(out_path))
    log = by_lfn["e2e_ok.job.log.tgz"]
    assert log.type == job_pb2.FILE_TYPE_LOG
    log_path = url_to_path(log.pfn)
    assert (log.size, log.adler32) == (log_path.stat().st_size, adler32_of(log_path))
    with tarfile.open(log_path) as tar:
        stdout = tar.extractfile("e2e_ok.job.log/payload.stdout").read().decode()  # type: ignore[union-attr]
        assert stdout == f"job {panda_id}\n"
        assert "e2e_ok.job.log/pilot.log" in tar.getnames()


def test_pilot_without_work_exits_82(dispatcher: RunningDispatcher, pilots: Callable[..., PilotProcess]) -> None:
    pilot = pilots(dispatcher.address, "pilot-idle", "--idle-timeout-s", "1")
    assert pilot.wait() == 82, pilot.log()


def test_kill_reaches_the_pilot_and_the_payload_is_gone(
    dispatcher: RunningDispatcher, pilots: Callable[..., PilotProcess], tmp_path: Path
) -> None:
    pid_file = tmp_path / "payload.pid"
    # the payload ignores SIGTERM and has a child that ignores it too: only the SIGKILL after
    # the pilot's grace period (0.5 s) ends them
    code = (
        "import os, signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import signal, time; "
        "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)'])\n"
        f"open({str(pid_file)!r} + '.tmp', 'w').write(f'{{os.getpid()}} {{child.pid}}')\n"
        f"os.rename({str(pid_file)!r} + '.tmp', {str(pid_file)!r})\n"
        "time.sleep(120)\n"
    )
    with Client(dispatcher.address) as client:
        (panda_id,) = client.submit([python_job("to_kill", code)])
        pilot = pilots(dispatcher.address, "pilot-kill", "--max-jobs", "1")
        wait_until(pid_file.exists, 30, "the payload to start")
        wait_until(lambda: job_status(client, panda_id) == JS.JOB_STATUS_RUNNING, 10, "running")
        # heartbeats carry the payload's usage while it runs
        # (the very first sample may catch the process mid-exec with no resident pages yet)
        wait_until(
            lambda: (m := client.get([panda_id])[0].metrics).walltime_s > 0 and m.max_rss_kb > 1024,
            10,
            "a heartbeat with the payload's walltime and memory",
        )
        pids = [int(p) for p in pid_file.read_text().split()]
        assert all(pid_alive(p) for p in pids)
        (result,) = client.kill([panda_id], reason="test kill")
        assert result.accepted, result.message
        # both processes would sleep 120 s and the child ignores SIGTERM: gone well before that means
        # the kill reached the whole tree (a bound on the wait, not a speed claim)
        wait_until(lambda: not any(pid_alive(p) for p in pids), 60, "the payload processes to be gone")
        wait_until(lambda: job_status(client, panda_id) == JS.JOB_STATUS_CANCELLED, 10, "cancelled")
        assert pilot.wait() == 0, pilot.log()
        (job,) = client.get([panda_id])
    assert [(e.component, e.code) for e in job.errors] == [(job_pb2.ERROR_COMPONENT_PILOT, errorcodes.KILLED_BY_USER)]
    # the log tarball of a killed job is still made and stored
    (log,) = [f for f in job.files if f.type == job_pb2.FILE_TYPE_LOG]
    assert log.status == "transferred" and log.adler32 == adler32_of(url_to_path(log.pfn))


def test_limits_give_1213_and_1212(dispatcher: RunningDispatcher, pilots: Callable[..., PilotProcess]) -> None:
    hog = "import time; x = bytearray(300 * 1024 * 1024); x[::4096] = b'y' * len(x[::4096]); time.sleep(60)"
    with Client(dispatcher.address) as client:
        walltime_id, memory_id = client.submit(
            [
                python_job("too_long", "import time; time.sleep(60)", max_walltime_s=1),
                python_job("too_big", hog, memory_mb=100),
            ]
        )
        pilot = pilots(dispatcher.address, "pilot-limits", "--max-jobs", "2")
        assert pilot.wait() == 0, pilot.log()
        too_long, too_big = client.get([walltime_id, memory_id])
    assert too_long.status == JS.JOB_STATUS_FAILED
    assert [(e.component, e.code) for e in too_long.errors] == [
        (job_pb2.ERROR_COMPONENT_PILOT, errorcodes.MAX_WALLTIME)
    ]
    assert too_big.status == JS.JOB_STATUS_FAILED
    assert [e.code for e in too_big.errors] == [errorcodes.MEMORY_EXCEEDED]
    assert too_big.metrics.max_rss_kb > 100 * 1024


def test_lost_pilot_fails_over_and_its_late_report_is_refused(
    make_dispatcher: Callable[..., RunningDispatcher],
    pilots: Callable[..., PilotProcess],
    raw_pilot: Callable[..., Any],
    tmp_path: Path,
) -> None:
    dispatcher = make_dispatcher(lease_s=2.0)
    runs = tmp_path / "runs.txt"
    # a shell payload: the first attempt starts a long-running grandchild and hangs (its pilot
    # dies under it); the retry is quick
    script = tmp_path / "failover.sh"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$AILURO_PILOT_ID $$" >> {runs}\n'
        f"if [ $(wc -l < {runs}) -eq 1 ]; then\n"
        f"  sleep 120 &\n  echo $! > {tmp_path / 'grandchild'}\n  sleep 120\n"
        "else\n  sleep 0.5\nfi\n"
    )
    script.chmod(0o755)
    job = job_pb2.Job(job_name="failover", computing_site="LOCAL", transformation=str(script), max_attempt=3)
    with Client(dispatcher.address) as client:
        (panda_id,) = client.submit([job])
        first = pilots(dispatcher.address, "pilot-doomed")
        grandchild_file = tmp_path / "grandchild"
        wait_until(lambda: grandchild_file.exists() and grandchild_file.read_text().strip(), 30, "the first run")
        wait_until(lambda: job_status(client, panda_id) == JS.JOB_STATUS_RUNNING, 10, "running")
        old_epoch = client.get([panda_id])[0].lease_epoch
        orphans = [int(runs.read_text().split()[1]), int(grandchild_file.read_text())]
        assert all(pid_alive(p) for p in orphans)
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(10)
        # the payload guard saw its pilot die and took the payload and its grandchild with it
        wait_until(lambda: not any(pid_alive(p) for p in orphans), 2.0, "the orphaned payload tree to be gone")

        def retried() -> job_pb2.Job | None:
            job = client.get([panda_id])[0]
            return job if job.attempt_nr == 2 and job.status == JS.JOB_STATUS_ACTIVATED else None

        requeued = wait_until(retried, 20, "the lease to expire and the job to be retried")
        # attempt 1 failed with the lost-heartbeat error; the retry rules sent it back to activated
        assert [e.code for e in requeued.errors] == [errorcodes.LOST_HEARTBEAT]
        second = pilots(dispatcher.address, "pilot-rescue", "--max-jobs", "1")
        assert second.wait() == 0, second.log()
        (job,) = client.get([panda_id])
        assert (job.status, job.attempt_nr, job.pilot_id) == (JS.JOB_STATUS_FINISHED, 2, "pilot-rescue")
        assert job.lease_epoch > old_epoch
        # the dead pilot's report arrives late, with its old epoch: refused, nothing changes
        late = raw_pilot(dispatcher.address, pilot_id="pilot-doomed")
        late.final(panda_id, old_epoch, JS.JOB_STATUS_FAILED, retryable=True)
        ack = late.ack_for(panda_id, final=True)
        assert ack.result == pilot_pb2.ACK_RESULT_STALE_EPOCH, ack
        assert client.get([panda_id])[0].status == JS.JOB_STATUS_FINISHED
    assert [line.split()[0] for line in runs.read_text().splitlines()] == ["pilot-doomed", "pilot-rescue"]


@pytest.mark.parametrize(
    ("ends_during_outage", "downtime_s"),
    [
        pytest.param(False, 1.0, id="job-outlives-the-outage"),
        pytest.param(True, 4.0, id="job-ends-during-the-outage"),
    ],
)
def test_dispatcher_restart_loses_nothing_and_runs_nothing_twice(
    make_dispatcher: Callable[..., RunningDispatcher],
    pilots: Callable[..., PilotProcess],
    tmp_path: Path,
    ends_during_outage: bool,
    downtime_s: float,
) -> None:
    """Heartbeats resume on the new dispatcher with the same epoch, or the spooled final is delivered."""
    # Leases and waits are long enough for the pilot's reconnect backoff (full jitter, up to 30 s)
    # on a loaded machine: what is asserted is the outcome (same attempt, same epoch, one run). The
    # payload ends when the test opens its gate (during the outage, or once the new dispatcher
    # listens), not after a fixed sleep: on a busy machine a 1 s payload ended before the first
    # dispatcher stopped, and the final never met the outage.
    first = make_dispatcher(lease_s=120.0)
    runs = tmp_path / "runs.txt"
    gate = tmp_path / "gate"
    code = (
        "import os, time\n"
        f"open({str(runs)!r}, 'a').write(os.environ['AILURO_PANDA_ID'] + '\\n')\n"
        "deadline = time.monotonic() + 300\n"
        f"while not os.path.exists({str(gate)!r}) and time.monotonic() < deadline:\n"
        "    time.sleep(0.1)\n"
        "open('out.dat', 'w').write('done')\n"
    )
    job = python_job("survivor", code, files=[job_pb2.File(lfn="out.dat", type=job_pb2.FILE_TYPE_OUTPUT)])
    with Client(first.address) as client:
        (panda_id,) = client.submit([job])
        # the final flush outlasts the outage plus a reconnect backoff on a loaded machine
        pilot = pilots(
            first.address, "pilot-steady", "--max-jobs", "1", "--idle-timeout-s", "30", "--final-flush-timeout-s", "120"
        )
        wait_until(lambda: job_status(client, panda_id) == JS.JOB_STATUS_RUNNING, 30, "running")
        epoch = client.get([panda_id])[0].lease_epoch
    port = first.port
    first.stop()
    if ends_during_outage:
        gate.touch()
    time.sleep(downtime_s)  # the pilot keeps reconnecting meanwhile
    second = make_dispatcher(port=port, lease_s=120.0)
    gate.touch()
    with Client(second.address) as client:
        try:
            wait_until(lambda: job_status(client, panda_id) == JS.JOB_STATUS_FINISHED, 90, "the job to finish")
        except pytest.fail.Exception:
            pytest.fail(f"the job did not finish within 90 s of the restart; pilot log:\n{pilot.log()}")
        (done,) = client.get([panda_id])
    assert pilot.wait(30) == 0, pilot.log()
    assert (done.attempt_nr, done.pilot_id, done.lease_epoch) == (1, "pilot-steady", epoch)
    assert runs.read_text().splitlines() == [str(panda_id)], "the payload ran exactly once"
    (out,) = [f for f in done.files if f.lfn == "out.dat"]
    assert url_to_path(out.pfn).read_text() == "done"
    log = pilot.log()
    assert log.count("connected to") == 2, log
    assert "lease is lost" not in log and "abandoned" not in log


def test_spooled_final_is_delivered_by_the_next_pilot(
    make_dispatcher: Callable[..., RunningDispatcher], pilots: Callable[..., PilotProcess], tmp_path: Path
) -> None:
    """A pilot that dies with an undelivered final leaves it in the spool; the next one sends it."""
    first = make_dispatcher(lease_s=60.0)
    spool = tmp_path / "shared-spool"
    # The payload ends once the dispatcher is gone (the test opens the gate), not after a fixed
    # sleep: on a busy machine a 1.5 s payload could end before the stop (no final to spool) or
    # pass through RUNNING between two polls.
    gate = tmp_path / "gate"
    payload = (
        "import os, time\n"
        "deadline = time.monotonic() + 300\n"
        f"while not os.path.exists({str(gate)!r}) and time.monotonic() < deadline:\n"
        "    time.sleep(0.1)\n"
    )
    with Client(first.address) as client:
        (panda_id,) = client.submit([python_job("spooled", payload)])
        pilot = pilots(first.address, "pilot-one", "--spool", str(spool), "--max-jobs", "1")
        wait_until(lambda: job_status(client, panda_id) == JS.JOB_STATUS_RUNNING, 30, "running")
    port = first.port
    first.stop()
    gate.touch()
    wait_until(lambda: FinalSpool(spool).pending(), 20, "the final report in the spool")
    pilot.proc.send_signal(signal.SIGKILL)
    pilot.proc.wait(10)
    second = make_dispatcher(port=port, lease_s=60.0)
    heir = pilots(second.address, "pilot-two", "--spool", str(spool), "--idle-timeout-s", "1")
    with Client(second.address) as client:
        wait_until(lambda: job_status(client, panda_id) == JS.JOB_STATUS_FINISHED, 30, "the spooled final")
        assert client.get([panda_id])[0].pilot_id == "pilot-one"
    assert heir.wait() == 82, heir.log()  # it delivered the report but never got a job of its own
    assert FinalSpool(spool).pending() == []


def test_sigterm_fails_the_running_job_as_retryable(
    dispatcher: RunningDispatcher, pilots: Callable[..., PilotProcess]
) -> None:
    with Client(dispatcher.address) as client:
        (panda_id,) = client.submit([python_job("interrupted", "import time; time.sleep(60)", max_attempt=2)])
        pilot = pilots(dispatcher.address, "pilot-term")
        wait_until(lambda: job_status(client, panda_id) == JS.JOB_STATUS_RUNNING, 30, "running")
        pilot.proc.send_signal(signal.SIGTERM)
        assert pilot.wait(30) == 143, pilot.log()
        (job,) = client.get([panda_id])
    # retryable: attempt 2 waits for another pilot
    assert (job.status, job.attempt_nr) == (JS.JOB_STATUS_ACTIVATED, 2), pilot.log()
    assert [e.code for e in job.errors] == [1201]


def test_jobs_in_parallel(dispatcher: RunningDispatcher, pilots: Callable[..., PilotProcess], tmp_path: Path) -> None:
    spans = tmp_path / "spans"
    spans.mkdir()
    code = (
        "import os, time\n"
        "start = time.time(); time.sleep(2)\n"
        f"open(os.path.join({str(spans)!r}, os.environ['AILURO_PANDA_ID']), 'w').write(f'{{start}} {{time.time()}}')\n"
    )
    with Client(dispatcher.address) as client:
        ids = client.submit([python_job(f"par{i}", code) for i in range(2)])
        pilot = pilots(dispatcher.address, "pilot-par", "--jobs-in-parallel", "2", "--cores", "2", "--max-jobs", "2")
        assert pilot.wait() == 0, pilot.log()
        assert [j.status for j in client.get(ids)] == [JS.JOB_STATUS_FINISHED] * 2
    (a0, a1), (b0, b1) = ([float(x) for x in p.read_text().split()] for p in spans.iterdir())
    assert a0 < b1 and b0 < a1, "the two payloads ran at the same time"


def test_job_longer_than_the_pilot_walltime_never_runs(
    dispatcher: RunningDispatcher, pilots: Callable[..., PilotProcess], tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    job = python_job("too_long_for_pilot", f"open({str(marker)!r}, 'w')", max_walltime_s=3600, max_attempt=1)
    with Client(dispatcher.address) as client:
        (panda_id,) = client.submit([job])
        pilot = pilots(dispatcher.address, "pilot-short", "--walltime-s", "60", "--idle-timeout-s", "2")
        pilot.wait()
        (after,) = client.get([panda_id])
    assert not marker.exists()
    # a dispatcher that honours JobRequest.walltime_left_s never hands it out; one that does not
    # gets it back as a retryable failure with the walltime code
    if after.status != JS.JOB_STATUS_ACTIVATED:
        assert after.status == JS.JOB_STATUS_FAILED, after
        assert [e.code for e in after.errors] == [errorcodes.MAX_WALLTIME]


def test_pilot_walltime_running_out_fails_the_job_as_retryable(
    dispatcher: RunningDispatcher, pilots: Callable[..., PilotProcess]
) -> None:
    """The pilot's own lifetime ends mid-job: the payload is stopped, 1213, and another pilot may retry."""
    with Client(dispatcher.address) as client:
        (panda_id,) = client.submit([python_job("outlived", "import time; time.sleep(120)", max_attempt=2)])
        # 10 s of the 40 are the margin under which no job is taken: it takes the job if it asks
        # within 30 s (a loaded machine took more than 3 s to start a pilot), then runs out mid-job
        pilot = pilots(dispatcher.address, "pilot-mortal", "--walltime-s", "40", "--idle-timeout-s", "60")
        wait_until(lambda: job_status(client, panda_id) == JS.JOB_STATUS_RUNNING, 40, "running")
        assert pilot.wait(90) == 0, pilot.log()
        (job,) = client.get([panda_id])
    assert (job.status, job.attempt_nr) == (JS.JOB_STATUS_ACTIVATED, 2), pilot.log()
    assert [(e.component, e.code) for e in job.errors] == [(job_pb2.ERROR_COMPONENT_PILOT, errorcodes.MAX_WALLTIME)]
    assert "walltime ran out" in job.errors[0].diag


def test_unary_pilot_runs_a_job_to_finished(
    dispatcher: RunningDispatcher, pilots: Callable[..., PilotProcess], tmp_path: Path
) -> None:
    job = python_job(
        "unary_ok",
        "open('out.dat', 'w').write('unary')",
        files=[job_pb2.File(lfn="out.dat", type=job_pb2.FILE_TYPE_OUTPUT)],
    )
    with Client(dispatcher.address) as client:
        (panda_id,) = client.submit([job])
        pilot = pilots(dispatcher.address, "pilot-unary", "--max-jobs", "1", env={"AILURO_PILOT_UNARY": "1"})
        assert pilot.wait() == 0, pilot.log()
        (done,) = client.get([panda_id])
    assert done.status == JS.JOB_STATUS_FINISHED, (done.errors, pilot.log())
    assert (done.pilot_id, done.metrics.exit_code) == ("pilot-unary", 0)
    (out,) = [f for f in done.files if f.lfn == "out.dat"]
    assert url_to_path(out.pfn).read_text() == "unary"
    assert "connected to" in pilot.log() and "(unary)" in pilot.log()


def test_kill_reaches_a_unary_pilot_within_a_heartbeat_period(
    dispatcher: RunningDispatcher, pilots: Callable[..., PilotProcess], tmp_path: Path
) -> None:
    pid_file = tmp_path / "payload.pid"
    code = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(120)"
    with Client(dispatcher.address) as client:
        (panda_id,) = client.submit([python_job("unary_kill", code)])
        pilot = pilots(dispatcher.address, "pilot-unary-kill", "--max-jobs", "1", env={"AILURO_PILOT_UNARY": "1"})
        wait_until(lambda: pid_file.exists() and pid_file.read_text(), 30, "the payload to start")
        wait_until(lambda: job_status(client, panda_id) == JS.JOB_STATUS_RUNNING, 10, "running")
        pid = int(pid_file.read_text())
        (result,) = client.kill([panda_id], reason="unary kill")
        assert result.accepted, result.message
        # heartbeat period 0.5 s (the poll that fetches the command) + nothing else: the payload
        # honours SIGTERM; 2 s leaves room for a loaded machine
        wait_until(lambda: not pid_alive(pid), 2.0, "the payload to be gone")
        wait_until(lambda: job_status(client, panda_id) == JS.JOB_STATUS_CANCELLED, 10, "cancelled")
        assert pilot.wait() == 0, pilot.log()
        (job,) = client.get([panda_id])
    assert [e.code for e in job.errors] == [errorcodes.KILLED_BY_USER]


def test_debug_command_leaves_a_snapshot_in_the_log_tarball(
    dispatcher: RunningDispatcher, pilots: Callable[..., PilotProcess], tmp_path: Path
) -> None:
    go = tmp_path / "go"
    code = (
        "import os, time\n"
        "print('working on it', flush=True)\n"
        f"while not os.path.exists({str(go)!r}): time.sleep(0.05)\n"
    )
    with Client(dispatcher.address) as client:
        (panda_id,) = client.submit([python_job("debugged", code)])
        pilot = pilots(dispatcher.address, "pilot-debug", "--max-jobs", "1")
        wait_until(lambda: job_status(client, panda_id) == JS.JOB_STATUS_RUNNING, 30, "running")
        wait_until(lambda: "working on it" in _stdout_of(tmp_path / "pilot-debug"), 10, "the payload's output")
        answer = client.debug(panda_id, timeout_s=20)  # what `ailuro job debug` calls
        assert "working on it" in answer.snapshot and sys.executable in answer.snapshot
        wait_until(lambda: "debug snapshot of job" in pilot.log(), 10, "the snapshot")
        go.touch()
        assert pilot.wait() == 0, pilot.log()
        (job,) = client.get([panda_id])
    assert job.status == JS.JOB_STATUS_FINISHED, job.errors
    (log,) = [f for f in job.files if f.type == job_pb2.FILE_TYPE_LOG]
    with tarfile.open(url_to_path(log.pfn)) as tar:
        snapshot = tar.extractfile("debugged.job.log/debug-snapshot-1.txt").read().decode()  # type: ignore[union-attr]
        pilot_log = tar.extractfile("debugged.job.log/pilot.log").read().decode()  # type: ignore[union-attr]
    assert "debug by" in snapshot and "working on it" in snapshot
    assert sys.executable in snapshot  # the process listing shows the payload's command line
    assert "debug snapshot 1 of job" in pilot_log


def _stdout_of(workdir: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in workdir.glob("*/payload.stdout"))


def test_jobs_in_parallel_respects_cores(
    dispatcher: RunningDispatcher, pilots: Callable[..., PilotProcess], tmp_path: Path
) -> None:
    spans = tmp_path / "spans"
    spans.mkdir()
    code = (
        "import os, time\n"
        "start = time.time(); time.sleep(1)\n"
        f"open(os.path.join({str(spans)!r}, os.environ['AILURO_PANDA_ID']), 'w').write(f'{{start}} {{time.time()}}')\n"
    )
    with Client(dispatcher.address) as client:
        ids = client.submit([python_job(f"core{i}", code) for i in range(2)])
        pilot = pilots(dispatcher.address, "pilot-1core", "--jobs-in-parallel", "2", "--cores", "1", "--max-jobs", "2")
        assert pilot.wait() == 0, pilot.log()
        assert [j.status for j in client.get(ids)] == [JS.JOB_STATUS_FINISHED] * 2
    (_, first_end), (second_start, _) = sorted([float(x) for x in p.read_text().split()] for p in spans.iterdir())
    assert first_end <= second_start, "one core: the second job started only after the first ended"
