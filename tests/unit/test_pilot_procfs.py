"""Process-tree discovery and usage from /proc."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from pilot import procfs


def test_read_own_process() -> None:
    me = procfs.read_proc(os.getpid())
    assert me is not None
    assert me.pid == os.getpid() and me.ppid == os.getppid()
    assert me.rss_kb > 0 and me.cpu_s > 0
    assert procfs.read_proc(2**22 + 1) is None


def test_tree_includes_session_and_escaped_descendants(tmp_path: Path) -> None:
    # root (own session) -> child in the session; child -> grandchild in a new session (setsid)
    code = (
        "import subprocess, sys, time, os\n"
        "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], start_new_session=True)\n"
        f"open({str(tmp_path / 'pids')!r}, 'w').write(f'{{c.pid}} {{g.pid}}')\n"
        "time.sleep(60)\n"
    )
    root = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while not (tmp_path / "pids").exists():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        child, escaped = (int(p) for p in (tmp_path / "pids").read_text().split())
        tree = {p.pid for p in procfs.process_tree(root.pid)}
        assert {root.pid, child, escaped} <= tree
        assert os.getpid() not in tree
        usage = procfs.tree_usage(root.pid)
        assert usage.rss_kb >= sum(procfs.read_proc(p).rss_kb for p in (root.pid, child))  # type: ignore[union-attr]
        os.kill(escaped, 9)
    finally:
        os.killpg(root.pid, 9)
        root.wait(timeout=10)
