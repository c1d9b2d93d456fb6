"""The payload runner: exit codes, stopping a whole process tree, walltime and memory limits."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import pytest

from pilot import procfs
from pilot.runner import EndReason, Payload, PayloadSpec, PayloadStartError

pytestmark = pytest.mark.timeout(60)

# a payload that ignores SIGTERM and starts two children that ignore it as well, one of them in
# its own process group (so only the /proc-based tree walk can find it); it writes their pids
TERM_IGNORING_TREE = """
import os, signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
ignore = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)"
a = subprocess.Popen([sys.executable, "-c", ignore])
b = subprocess.Popen([sys.executable, "-c", ignore], process_group=0)
with open("pids.tmp", "w") as fh:
    fh.write(f"{os.getpid()} {a.pid} {b.pid}")
os.rename("pids.tmp", "pids")
time.sleep(300)
"""


def _spec(tmp_path: Path, argv: list[str], **kw: object) -> PayloadSpec:
    return PayloadSpec(
        argv=argv,
        cwd=tmp_path,
        env={"PATH": os.environ["PATH"]},
        stdout_path=tmp_path / "out",
        stderr_path=tmp_path / "err",
        **kw,  # type: ignore[arg-type]
    )


def _alive(pid: int) -> bool:
    info = procfs.read_proc(pid)
    return info is not None and info.state != "Z"


async def _wait_for_file(path: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        await asyncio.sleep(0.05)


async def test_exit_code_and_output(tmp_path: Path) -> None:
    payload = Payload(spec=_spec(tmp_path, ["sh", "-c", "echo out; echo err >&2; exit 3"]))
    await payload.start()
    result = await payload.wait()
    assert (result.reason, result.exit_code, result.signal, result.killed_by_pilot) == (
        EndReason.EXITED,
        3,
        None,
        False,
    )
    assert (tmp_path / "out").read_text() == "out\n"
    assert (tmp_path / "err").read_text() == "err\n"


async def test_success(tmp_path: Path) -> None:
    payload = Payload(spec=_spec(tmp_path, ["true"]))
    await payload.start()
    assert (await payload.wait()).exit_code == 0


async def test_signal_exit_uses_shell_convention(tmp_path: Path) -> None:
    payload = Payload(spec=_spec(tmp_path, ["sh", "-c", "kill -SEGV $$"]))
    await payload.start()
    result = await payload.wait()
    assert (result.signal, result.exit_code, result.killed_by_pilot) == (11, 128 + 11, False)


async def test_missing_program_is_a_start_error(tmp_path: Path) -> None:
    with pytest.raises(PayloadStartError, match="cannot start"):
        await Payload(spec=_spec(tmp_path, [str(tmp_path / "nope")])).start()


async def test_kill_stops_the_whole_tree_even_processes_ignoring_sigterm(tmp_path: Path) -> None:
    payload = Payload(spec=_spec(tmp_path, [sys.executable, "-c", TERM_IGNORING_TREE], kill_grace_s=0.5))
    await payload.start()
    waiter = asyncio.create_task(payload.wait())
    await _wait_for_file(tmp_path / "pids")
    pids = [int(p) for p in (tmp_path / "pids").read_text().split()]
    assert all(_alive(p) for p in pids)
    requested = time.monotonic()
    payload.request_kill(EndReason.KILLED, "test kill")
    # every process would sleep 300 s ignoring SIGTERM: gone within the bound means the kill escalated
    # to SIGKILL across the tree (a bound on the wait, not a speed claim; a loaded machine is slow)
    while alive := [p for p in pids if _alive(p)]:
        assert time.monotonic() - requested < 60, f"payload processes {alive} survived the kill"
        await asyncio.sleep(0.02)
    result = await asyncio.wait_for(waiter, 5)
    assert (result.reason, result.signal, result.killed_by_pilot) == (EndReason.KILLED, 9, True)
    assert result.detail == "test kill"


async def test_leftover_children_are_killed_when_the_main_process_exits(tmp_path: Path) -> None:
    payload = Payload(spec=_spec(tmp_path, ["sh", "-c", "sleep 300 & echo $! > child; exit 0"]))
    await payload.start()
    result = await asyncio.wait_for(payload.wait(), 10)
    assert result.exit_code == 0
    assert not _alive(int((tmp_path / "child").read_text()))


async def test_walltime_limit(tmp_path: Path) -> None:
    payload = Payload(spec=_spec(tmp_path, ["sleep", "30"], max_walltime_s=1.0, monitor_interval_s=0.1))
    await payload.start()
    result = await asyncio.wait_for(payload.wait(), 10)
    assert result.reason is EndReason.WALLTIME
    assert result.signal == 15  # sleep honours SIGTERM: no SIGKILL was needed
    assert "exceeded the limit of 1.0s" in result.detail
    assert result.usage.walltime_s >= 1.0


async def test_memory_limit_counts_the_tree(tmp_path: Path) -> None:
    # the parent is small; a child allocates 200 MiB: only the tree's RSS can exceed 80 MiB
    code = (
        "import subprocess, sys; subprocess.run([sys.executable, '-c', "
        "'import time; x = bytearray(200 * 1024 * 1024); x[::4096] = b\"y\" * len(x[::4096]); time.sleep(60)'])"
    )
    payload = Payload(spec=_spec(tmp_path, [sys.executable, "-c", code], memory_mb=80, monitor_interval_s=0.1))
    await payload.start()
    result = await asyncio.wait_for(payload.wait(), 30)
    assert result.reason is EndReason.MEMORY
    assert "exceeded the memory limit of 80 MiB" in result.detail
    assert result.usage.max_rss_kb > 80 * 1024


async def test_usage_is_measured(tmp_path: Path) -> None:
    code = (
        "import time; x = bytearray(64 * 1024 * 1024); x[::4096] = b'y' * len(x[::4096]); "
        "t = time.process_time()\nwhile time.process_time() - t < 0.6: pass\ntime.sleep(0.5)"
    )
    payload = Payload(spec=_spec(tmp_path, [sys.executable, "-c", code], monitor_interval_s=0.1))
    await payload.start()
    result = await asyncio.wait_for(payload.wait(), 30)
    assert result.exit_code == 0
    assert result.usage.cpu_time_s >= 0.5
    assert result.usage.max_rss_kb >= 64 * 1024
    assert result.usage.walltime_s >= 1.0
