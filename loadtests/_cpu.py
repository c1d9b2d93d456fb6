"""CPU accounting for the pilot comparison benchmark: cgroups for our own processes, /proc otherwise.

Two ways, both Linux-only:

- :class:`CpuGroup`: a ``cpuacct`` cgroup (v1 ``/sys/fs/cgroup/cpuacct`` or a v2 group under
  ``/sys/fs/cgroup/unified`` / ``/sys/fs/cgroup``) that the benchmark puts processes it starts
  into. Everything they fork stays in the group, and the kernel keeps the CPU of processes that
  already exited (a payload, a guard), so the reading is exact. Used when the group can be made.
- :func:`tree_cpu_s`: the sum of ``utime + stime + cutime + cstime`` over a set of processes read
  from ``/proc/<pid>/stat``. ``cutime``/``cstime`` hold the CPU of children once their parent
  reaped them, so a delta taken over long-lived daemons (the HTCondor daemons, slurmctld/slurmd)
  covers their short-lived helpers (shadows, starters, slurmstepd, the payloads) as long as those
  were reaped inside the tree. Processes re-parented to init are sampled while alive
  (:class:`ProcSampler`), since init's reaping would hide them.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

_CLK_TCK = os.sysconf("SC_CLK_TCK")
_CGROUP_ROOTS = (Path("/sys/fs/cgroup/cpuacct"), Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup"))


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read().decode(errors="replace")
    except OSError:
        return None
    return raw[raw.rfind(")") + 2 :].split()


def proc_cpu_s(pid: int, *, children: bool = True) -> float:
    """CPU seconds of one process (with its reaped children when ``children``); 0.0 when gone."""
    f = _stat_fields(pid)
    if f is None:
        return 0.0
    ticks = int(f[11]) + int(f[12]) + ((int(f[13]) + int(f[14])) if children else 0)
    return ticks / _CLK_TCK


def processes() -> dict[int, tuple[int, str]]:
    """``{pid: (ppid, comm)}`` of every visible process."""
    table: dict[int, tuple[int, str]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                raw = fh.read().decode(errors="replace")
        except OSError:
            continue
        comm = raw[raw.find("(") + 1 : raw.rfind(")")]
        table[int(name)] = (int(raw[raw.rfind(")") + 2 :].split()[1]), comm)
    return table


def descendants(roots: Iterable[int], table: dict[int, tuple[int, str]] | None = None) -> set[int]:
    """``roots`` and every process below them (by parent pid)."""
    table = processes() if table is None else table
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found = {r for r in roots if r in table}
    stack = list(found)
    while stack:
        for child in children.get(stack.pop(), ()):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def tree_cpu_s(roots: Iterable[int]) -> float:
    """CPU seconds of ``roots`` and their live descendants, each with its reaped children."""
    return sum(proc_cpu_s(p) for p in descendants(roots))


class CpuGroup:
    """A fresh accounting cgroup for processes the benchmark starts (see the module docstring)."""

    def __init__(self, path: Path, *, v1: bool) -> None:
        self.path = path
        self.v1 = v1

    @classmethod
    def make(cls, name: str) -> CpuGroup | None:
        """Create ``<root>/ailuro-bench-<name>-<random>``; ``None`` when no cgroup can be made here."""
        leaf = f"ailuro-bench-{name}-{uuid.uuid4().hex[:8]}"
        for root in _CGROUP_ROOTS:
            v1 = (root / "cpuacct.usage").exists()
            if not v1 and not (root / "cgroup.controllers").exists():
                continue
            try:
                (root / leaf).mkdir()
            except OSError:
                continue
            group = cls(root / leaf, v1=v1)
            if group.cpu_s() is not None:
                return group
            group.remove()
        return None

    def add(self, pid: int) -> bool:
        """Move ``pid`` (and what it forks later) into the group; whether that worked."""
        try:
            (self.path / "cgroup.procs").write_text(str(pid))
            return True
        except OSError:
            return False

    def cpu_s(self) -> float | None:
        """CPU seconds used by every process that was ever in the group."""
        try:
            if self.v1:
                return int((self.path / "cpuacct.usage").read_text()) / 1e9
            for line in (self.path / "cpu.stat").read_text().splitlines():
                if line.startswith("usage_usec "):
                    return int(line.split()[1]) / 1e6
        except (OSError, ValueError):
            return None
        return None

    def remove(self, timeout_s: float = 10.0) -> None:
        """Remove the group once its processes ended (a pilot's guard server outlives it briefly)."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self.path.rmdir()
                return
            except OSError:
                if time.monotonic() > deadline:
                    return
                time.sleep(0.1)


class ProcSampler:
    """Samples the CPU of processes selected by ``select(pid, comm)`` until stopped.

    For processes that are not reaped inside a measured tree (re-parented to init): the last
    sample of each process is its CPU. Sampling costs CPU of its own, which lands on the
    benchmark process, not on the system measured.
    """

    def __init__(self, select: Callable[[int, str], bool], interval_s: float = 0.1) -> None:
        self._select = select
        self._interval_s = interval_s
        self._last: dict[int, float] = {}
        self._baseline: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        """Record the CPU of processes already running (not counted), then sample."""
        for pid, (_, comm) in processes().items():
            if self._select(pid, comm):
                self._baseline[pid] = proc_cpu_s(pid)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            for pid, (_, comm) in processes().items():
                if self._select(pid, comm):
                    self._last[pid] = proc_cpu_s(pid)

    def stop(self) -> float:
        """Stop sampling; CPU seconds the selected processes used since :meth:`start`."""
        self._stop.set()
        self._thread.join()
        return sum(v - self._baseline.get(pid, 0.0) for pid, v in self._last.items())


def wait_until(predicate: Callable[[], bool], timeout_s: float, interval_s: float = 0.2) -> bool:
    """Poll ``predicate`` until it holds or ``timeout_s`` passed; whether it held."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return predicate()
