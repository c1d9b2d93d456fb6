"""What machine and load a benchmark's figures were taken on (printed beside every figure).

The machine may be shared with other work, so the benchmarks print its load averages with each
row, and once what it is (CPU model, cores, memory, Python).
"""

from __future__ import annotations

import os
import platform


def uptime() -> str:
    """The load averages now (the machine may be shared: every figure is printed with them)."""
    try:
        one, five, fifteen = open("/proc/loadavg").read().split()[:3]  # noqa: SIM115 - tiny read-only file
    except OSError:
        return "load average unknown"
    return f"load average {one}, {five}, {fifteen}"


def machine() -> str:
    """A one-line description of this machine (CPU model, cores, memory)."""
    model = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):  # noqa: SIM115 - tiny read-only file
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        mem_kb = next(int(x.split()[1]) for x in open("/proc/meminfo") if x.startswith("MemTotal"))  # noqa: SIM115
    except (OSError, StopIteration):
        mem_kb = 0
    return f"{model}, {os.cpu_count()} cores, {mem_kb / 2**20:.0f} GiB, Python {platform.python_version()}"
