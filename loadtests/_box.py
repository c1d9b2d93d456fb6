"""Where the box's two cores go during a lifecycle run, and how late the load generator itself is.

The latency the benchmark prints is measured in the load processes: a JobRequest's clock starts
when the pilot stream writes it and stops when that process's event loop reads the answer. So a
late answer may be the dispatcher's, PostgreSQL's, or the load process's own loop running behind
(it drives a hundred streams, their heartbeats and acks, in one Python thread), and all of them
share the machine. These readings tell them apart:

- :class:`LagProbe`: an asyncio task in each load process that sleeps ``PROBE_S`` and records how
  much later than asked it woke: the delay any message read by that loop waited for the loop
  alone (the same probe the dispatcher's ``--loop-lag-dir`` reports use).
- :func:`box_cpu`: CPU seconds of the whole machine (``/proc/stat``) and of PostgreSQL (the
  postmaster with every backend, live or reaped), read before and after the load. With the
  dispatcher's and the load processes' own CPU the run's busy share is split by who used it.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from pathlib import Path

from loadtests._harness import percentile

PROBE_S = 0.01
"""The load generator's lag probe interval (seconds)."""
_CLK_TCK = os.sysconf("SC_CLK_TCK")


class LagProbe:
    """Samples one event loop's lag until :meth:`stop`; :meth:`summary` gives p50/p99/max in ms."""

    def __init__(self) -> None:
        self.lags: list[float] = []
        self._task: asyncio.Task[None] | None = None
        self._cpu0 = time.process_time()

    def start(self) -> None:
        self._cpu0 = time.process_time()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            asked = time.perf_counter()
            await asyncio.sleep(PROBE_S)
            self.lags.append(time.perf_counter() - asked - PROBE_S)

    def stop(self) -> dict[str, float]:
        """Stop sampling; the figures as a picklable dict (sent back to the benchmark process)."""
        if self._task is not None:
            self._task.cancel()
        return {
            "lag_p50_ms": percentile(self.lags, 50) * 1e3,
            "lag_p99_ms": percentile(self.lags, 99) * 1e3,
            "lag_max_ms": max(self.lags, default=0.0) * 1e3,
            "cpu_s": time.process_time() - self._cpu0,  # every thread of the process, gRPC's too
        }


@dataclass(frozen=True, kw_only=True)
class BoxCpu:
    """One reading of the machine's CPU counters (seconds)."""

    at: float
    busy_s: float
    """CPU time of every core not idle or waiting for I/O, since boot."""
    cores: int
    postgres_s: float
    """The postmaster, its live backends and those it reaped."""


def _proc_stat(pid: str) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm = raw[raw.find("(") + 1 : raw.rfind(")")]
    return [comm, *raw[raw.rfind(")") + 2 :].split()]


def _postgres_s() -> float:
    """CPU of every process named ``postgres``; the postmaster's reaped children (exited backends)
    through its cutime/cstime. 0.0 when PostgreSQL is not on this machine."""
    total = 0.0
    stats = {}
    for entry in Path("/proc").glob("[0-9]*"):
        fields = _proc_stat(entry.name)
        if fields is not None and fields[0].startswith("postgres"):
            stats[entry.name] = fields
    for fields in stats.values():
        # fields[0] is comm, so the kernel's field n (1-based, pid = 1) is fields[n - 2]
        total += int(fields[12]) + int(fields[13])  # utime, stime
        if fields[2] not in stats:  # the postmaster (its parent is not postgres): reaped backends
            total += int(fields[14]) + int(fields[15])  # cutime, cstime
    return total / _CLK_TCK


def box_cpu() -> BoxCpu:
    """Read the machine's and PostgreSQL's CPU counters now."""
    lines = Path("/proc/stat").read_text().splitlines()
    values = [int(v) for v in lines[0].split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    cores = sum(1 for line in lines if line[:3] == "cpu" and line[3:4].isdigit())
    busy_s = (sum(values[:8]) - idle) / _CLK_TCK
    return BoxCpu(at=time.monotonic(), busy_s=busy_s, cores=cores, postgres_s=_postgres_s())


@dataclass(frozen=True, kw_only=True)
class BoxShare:
    """How busy the machine was during the load and who used it (shares of all cores, 0-1)."""

    busy: float = 0.0
    dispatchers: float = 0.0
    postgres: float = 0.0
    load: float = 0.0
    """The pilot and submitter processes of the load generator."""
    load_lag_p50_ms: float = 0.0
    load_lag_p99_ms: float = 0.0
    """The worst load process's loop lag p99."""
    load_lag_max_ms: float = 0.0

    def line(self) -> str:
        """One report line."""
        other = max(self.busy - self.dispatchers - self.postgres - self.load, 0.0)
        return (
            f"  box during the load: {self.busy:.0%} of all cores busy = dispatcher {self.dispatchers:.0%}, "
            f"PostgreSQL {self.postgres:.0%}, load generator {self.load:.0%}, other {other:.0%}; "
            f"load generator loop lag p50/p99/max {self.load_lag_p50_ms:.1f}/{self.load_lag_p99_ms:.0f}/"
            f"{self.load_lag_max_ms:.0f} ms (part of every latency measured in it)"
        )


def share(before: BoxCpu, after: BoxCpu, *, dispatcher_s: float, load: list[dict[str, float]]) -> BoxShare:
    """The run's :class:`BoxShare` from two readings, the dispatchers' CPU and the load processes' probes."""
    capacity = max(after.at - before.at, 1e-9) * after.cores
    probes = [p for p in load if "lag_p99_ms" in p]
    return BoxShare(
        busy=(after.busy_s - before.busy_s) / capacity,
        dispatchers=dispatcher_s / capacity,
        postgres=(after.postgres_s - before.postgres_s) / capacity,
        load=sum(p.get("cpu_s", 0.0) for p in load) / capacity,
        load_lag_p50_ms=max((p["lag_p50_ms"] for p in probes), default=0.0),
        load_lag_p99_ms=max((p["lag_p99_ms"] for p in probes), default=0.0),
        load_lag_max_ms=max((p["lag_max_ms"] for p in probes), default=0.0),
    )
