"""The payload guard: the payload tree dies with the pilot, even when the pilot is SIGKILLed."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pilot import guard, procfs
from pilot.runner import Payload, PayloadSpec
from pilot.spawner import guard_server

pytestmark = pytest.mark.timeout(60)

# a shell payload whose grandchild escapes: a double fork into a new session (a daemon), plus a
# plain background child; it writes the pids once both run
DAEMONIZING_SCRIPT = """\
#!/bin/sh
sleep 300 &
echo $! > child
setsid sh -c 'sleep 300 & echo $! > grandchild; wait' &
while [ ! -s grandchild ]; do sleep 0.05; done
echo $$ > main
sleep 300
"""

# a stand-in pilot: runs the payload through the real runner (so through the guard) and waits
FAKE_PILOT = """\
import asyncio, os, sys
from pathlib import Path
from pilot.runner import Payload, PayloadSpec

async def main() -> None:
    work = Path(sys.argv[1])
    spec = PayloadSpec(argv=[str(work / "payload.sh")], cwd=work, env=dict(os.environ),
                       stdout_path=work / "out", stderr_path=work / "err")
    payload = Payload(spec=spec)
    await payload.start()
    (work / "guard").write_text(str(payload.pid))
    await payload.wait()

asyncio.run(main())
"""


def _alive(pid: int) -> bool:
    info = procfs.read_proc(pid)
    return info is not None and info.state != "Z"


def _wait_for(path: Path, timeout: float = 20.0) -> int:
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.read_text().strip()):
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)
    return int(path.read_text())


def _spec(tmp_path: Path, argv: list[str]) -> PayloadSpec:
    return PayloadSpec(
        argv=argv,
        cwd=tmp_path,
        env={"PATH": os.environ["PATH"]},
        stdout_path=tmp_path / "out",
        stderr_path=tmp_path / "err",
        monitor_interval_s=0.1,
    )


def test_sigkilled_pilot_takes_the_whole_payload_tree_with_it(tmp_path: Path) -> None:
    script = tmp_path / "payload.sh"
    script.write_text(DAEMONIZING_SCRIPT)
    script.chmod(0o755)
    pilot = subprocess.Popen([sys.executable, "-c", FAKE_PILOT, str(tmp_path)])
    try:
        main = _wait_for(tmp_path / "main")
        pids = {"guard": _wait_for(tmp_path / "guard"), "main": main}
        pids["child"] = _wait_for(tmp_path / "child")
        pids["grandchild"] = _wait_for(tmp_path / "grandchild")
        assert all(_alive(p) for p in pids.values()), pids
        # the daemonized grandchild really escaped the payload's session
        assert procfs.read_proc(pids["grandchild"]).session != pids["guard"]  # type: ignore[union-attr]
        pilot.kill()
        killed_at = time.monotonic()
        pilot.wait(10)
        # every process would sleep 300 s: gone within the bound means the guard killed them
        # (a bound on the wait, not a speed claim; a loaded machine is slow)
        while alive := [name for name, pid in pids.items() if _alive(pid)]:
            assert time.monotonic() - killed_at < 60, f"still alive 60 s after the pilot died: {alive}"
            time.sleep(0.02)
    finally:
        if pilot.poll() is None:
            pilot.kill()
            pilot.wait(10)
        for name in ("main", "child", "grandchild", "guard"):
            path = tmp_path / name
            if path.exists() and path.read_text().strip():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(path.read_text()), signal.SIGKILL)


def test_guard_does_not_start_the_payload_when_the_pilot_is_already_gone(tmp_path: Path) -> None:
    # --parent names a process that is not the guard's parent: as if the pilot died before prctl
    marker = tmp_path / "ran"
    read_fd, write_fd = os.pipe()
    proc = subprocess.run(
        [
            sys.executable,
            "-I",
            "-S",  # as the pilot runs it: the guard needs nothing but the standard library
            str(Path(guard.__file__)),
            "--parent",
            "1",
            "--status-fd",
            str(write_fd),
            "--",
            "touch",
            str(marker),
        ],
        pass_fds=(write_fd,),
        timeout=30,
        check=False,
    )
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as fh:
        said = fh.read()
    assert proc.returncode == 128 + 9
    assert said == b""
    assert not marker.exists()


async def test_exit_status_passes_through_the_guard(tmp_path: Path) -> None:
    payload = Payload(spec=_spec(tmp_path, ["sh", "-c", "exit 7"]))
    await payload.start()
    assert payload.payload_pid is not None and payload.payload_pid != payload.pid
    result = await asyncio.wait_for(payload.wait(), 20)
    assert (result.exit_code, result.signal) == (7, None)
    payload = Payload(spec=_spec(tmp_path, ["sh", "-c", "kill -TERM $$"]))
    await payload.start()
    result = await asyncio.wait_for(payload.wait(), 20)
    assert (result.exit_code, result.signal, result.killed_by_pilot) == (143, 15, False)


async def test_leftovers_of_a_payload_are_reaped_by_the_guard(tmp_path: Path) -> None:
    # the main process exits at once and leaves a daemon behind in another session
    code = "setsid sleep 300 & echo $! > daemon; exit 0"
    payload = Payload(spec=_spec(tmp_path, ["sh", "-c", code]))
    await payload.start()
    result = await asyncio.wait_for(payload.wait(), 20)
    assert result.exit_code == 0
    assert not _alive(int((tmp_path / "daemon").read_text()))


async def test_usage_excludes_the_guard(tmp_path: Path) -> None:
    # `sleep` is tiny (about 1 MiB); the Python guard alone is several MiB and counts for nothing
    payload = Payload(spec=_spec(tmp_path, ["sleep", "1"]))
    await payload.start()
    guard_rss = procfs.read_proc(payload.pid).rss_kb  # type: ignore[arg-type, union-attr]
    result = await asyncio.wait_for(payload.wait(), 20)
    assert result.exit_code == 0
    assert 0 < result.usage.max_rss_kb < guard_rss
    assert result.usage.cpu_time_s < 0.5


def test_guard_runs_from_its_source_when_there_is_no_file(tmp_path: Path) -> None:
    # inside the pilot bundle (a zipapp) guard.py is no file: the runner passes its source with -c
    source_argv = [sys.executable, "-I", "-S", "-c", Path(guard.__file__).read_text()]
    read_fd, write_fd = os.pipe()
    proc = subprocess.run(
        [*source_argv, "--parent", str(os.getpid()), "--status-fd", str(write_fd), "--", "sh", "-c", "exit 5"],
        pass_fds=(write_fd,),
        timeout=30,
        check=False,
    )
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as fh:
        lines = fh.read().decode().splitlines()
    assert proc.returncode == 5
    assert lines[0].startswith("started ") and lines[1].startswith(f"exited {5 << 8} ")


async def test_one_guard_server_forks_the_guards_and_reuses_them(tmp_path: Path) -> None:
    # no interpreter start per job: each job's guard is a fork of the pilot's one guard server,
    # one per payload running at once, and a free one serves the next payload (no fork per job)
    first = Payload(spec=_spec(tmp_path, ["sleep", "0.5"]))
    second = Payload(spec=_spec(tmp_path, ["sleep", "0.5"]))
    await first.start()
    await second.start()
    server = guard_server().pid
    guards = [first.pid, second.pid]
    assert server is not None and None not in guards and guards[0] != guards[1]
    assert [procfs.read_proc(g).ppid for g in guards] == [server, server]  # type: ignore[arg-type, union-attr]
    assert "--serve" in procfs.cmdline(server)
    results = await asyncio.gather(first.wait(), second.wait())
    assert [r.exit_code for r in results] == [0, 0]
    # the end of the status stream comes after the guard reaped the payload: nothing of the job is left
    assert not any(_alive(p) for p in (first.payload_pid, second.payload_pid))  # type: ignore[arg-type]
    third = Payload(spec=_spec(tmp_path, ["sleep", "0.5"]))
    await third.start()
    assert third.pid in guards and third.payload_pid not in (first.payload_pid, second.payload_pid)
    # each payload leads its own session and process group, outside its guard's
    info = procfs.read_proc(third.payload_pid)  # type: ignore[arg-type]
    assert info is not None and info.session == info.pgrp == third.payload_pid
    assert (await asyncio.wait_for(third.wait(), 20)).exit_code == 0


async def test_a_pilot_that_lets_go_of_a_job_takes_its_tree_down(tmp_path: Path) -> None:
    mine, theirs = socket.socketpair()
    with open(tmp_path / "out", "ab") as out:
        guard_server().spawn(
            ["sleep", "300"],
            cwd=str(tmp_path),
            env={"PATH": os.environ["PATH"]},
            stdout=out.fileno(),
            stderr=out.fileno(),
            status=theirs.fileno(),
        )
    theirs.close()
    mine.settimeout(20)
    words = mine.recv(4096).decode().split()
    assert words[0] == "started"
    payload = int(words[1])
    assert _alive(payload)
    mine.close()  # as a pilot giving up on a job that never reported back in time
    deadline = time.monotonic() + 5
    while _alive(payload):
        assert time.monotonic() < deadline, "the payload outlived the status socket"
        await asyncio.sleep(0.02)


async def test_report_and_end_of_stream_read_together(tmp_path: Path) -> None:
    # the pilot is busy while the payload ends, the guard reports and the server reaps it: the
    # report and the end of the status stream then arrive in one read, and the report still counts
    payload = Payload(spec=_spec(tmp_path, ["true"]))
    await payload.start()
    time.sleep(1.0)  # blocks the event loop on purpose
    result = await asyncio.wait_for(payload.wait(), 20)
    assert (result.exit_code, result.signal, result.killed_by_pilot) == (0, None, False)
