"""Reads the dispatchers' event-loop lag reports (``--loop-lag-dir``) for the benchmarks.

Each dispatcher process (each ``--workers`` process too) rewrites ``looplag-<pid>.json`` every
second with its cumulative lag histogram (:mod:`dispatcher.services.looplag`). A benchmark takes
one reading before the load starts and one after it ended; the difference of the two histograms
is the loop lag *under the load*, without the start-up (migrations, imports) before it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dispatcher.services.looplag import REPORT_S, bucket_ms, percentile_ms

STALL_MS = 5.0
"""The stall threshold the benchmarks start their dispatchers with (stacks sampled beyond it)."""


@dataclass(frozen=True, kw_only=True)
class LoopLag:
    """Loop lag of one dispatcher process during the load."""

    pid: int
    samples: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    """Largest lag during the load (the upper edge of its histogram bucket: 0.1 ms below 100 ms, 1 ms above)."""
    stalls: int
    """Probe wake-ups later than ``STALL_MS`` during the load."""
    callbacks: int = 0
    """Loop callbacks run during the load."""
    callback_p999_ms: float = 0.0
    """99.9th percentile of the loop-thread CPU one callback took (the hold, without waiting)."""
    callback_max_ms: float = 0.0
    slow_callbacks: list[tuple[str, int, float, float]] = field(default_factory=list)
    """Callbacks over ``STALL_MS`` of CPU during the load: (name, count, total ms, of which GC ms), largest first."""
    loop_cpu_share: float = 0.0
    """Share of the load's wall time the loop thread ran on a core (0-1)."""
    loop_runqueue_share: float = 0.0
    """Share of the load's wall time the loop thread was runnable but waited for a core: the
    machine's load (others' processes), which no change to the dispatcher removes."""
    gc: dict[str, tuple[int, float, float]] = field(default_factory=dict)
    """Garbage collections during the load by generation: (count, total ms, largest of the process life ms)."""
    stacks: list[dict[str, object]] = field(default_factory=list)
    """The most sampled stall stacks (cumulative), ``{"samples": n, "stack": [...]}``."""
    db_times: dict[str, tuple[int, float, float, float]] = field(default_factory=dict)
    """Database-side durations during the load by name (``Runtime.db_times``): (count, p50, p99, max ms)."""
    db_peaks: dict[str, int] = field(default_factory=dict)
    """Largest values of the process life by name (e.g. claim batches in the database at once)."""

    def short(self) -> str:
        """``p50/p99/max`` in ms, for a table cell."""
        return f"{self.p50_ms:.1f}/{self.p99_ms:.0f}/{self.max_ms:.0f}"

    def report_lines(self) -> list[str]:
        """The lines the benchmark prints under its row for this process."""
        lines: list[str] = []
        lines.append(
            f"  event loop lag, dispatcher process {self.pid}: p50 {self.p50_ms:.1f} ms, p99 {self.p99_ms:.1f} ms, "
            f"max {self.max_ms:.0f} ms; {self.stalls} stalls > {STALL_MS:.0f} ms in {self.samples} probes"
        )
        lines.append(
            f"    loop thread: on a core {self.loop_cpu_share:.0%} of the time, waiting for a core "
            f"(machine load) {self.loop_runqueue_share:.0%}"
            if self.loop_cpu_share or self.loop_runqueue_share
            else "    loop thread: no schedstat readings (not Linux, or the process ended early)"
        )
        lines.append(
            f"    loop callbacks: {self.callbacks} run, CPU per callback p99.9 {self.callback_p999_ms:.1f} ms, "
            f"max {self.callback_max_ms:.0f} ms; over {STALL_MS:.0f} ms (count, total ms):"
        )
        lines += [
            f"      {n} x {total:.0f} ms (GC {gc_ms:.0f} ms)  {name}"
            for name, n, total, gc_ms in self.slow_callbacks[:6]
        ]
        lines.append(
            "    garbage collections: "
            + ", ".join(f"gen {g}: {n} = {t:.0f} ms (max {m:.0f} ms)" for g, (n, t, m) in sorted(self.gc.items()))
        )
        for name, (n, p50, p99, top) in sorted(self.db_times.items()):
            lines.append(f"    {name}: {n} x, p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {top:.0f} ms")
        if self.db_peaks:
            lines.append("    peaks: " + ", ".join(f"{name} {v}" for name, v in sorted(self.db_peaks.items())))
        for entry in self.stacks[:3]:  # where the sampled stalls were (innermost frame first)
            lines.append(f"    {entry['samples']} samples: {' <- '.join(entry['stack'][:5])}")  # type: ignore[index]
        return lines


def read(directory: Path) -> dict[int, dict[str, object]]:
    """The current report of every process in ``directory``, by pid (unreadable ones skipped)."""
    out: dict[int, dict[str, object]] = {}
    for path in sorted(directory.glob("looplag-*.json")):
        try:
            report = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        out[int(report["pid"])] = report
    return out


def settle() -> None:
    """Wait until every process has rewritten its report once more (after the load ended)."""
    time.sleep(REPORT_S * 1.5)


def _diff(new: dict[str, int], old: dict[str, int]) -> dict[int, int]:
    hist = {int(k): v - old.get(k, 0) for k, v in new.items()}
    return {k: v for k, v in hist.items() if v > 0}


def _slow_diff(new: list[Any], old: list[Any]) -> list[tuple[str, int, float, float]]:
    before = {e["name"]: (e["count"], e["total_ms"], e.get("gc_ms", 0.0)) for e in old}
    out = []
    for e in new:
        n0, t0, g0 = before.get(e["name"], (0, 0.0, 0.0))
        if e["count"] > n0:
            out.append((str(e["name"]), e["count"] - n0, e["total_ms"] - t0, e.get("gc_ms", 0.0) - g0))
    return sorted(out, key=lambda x: -x[2])


def _gc_diff(new: dict[str, Any], old: dict[str, Any]) -> dict[str, tuple[int, float, float]]:
    out = {}
    for gen, e in new.items():
        o = old.get(gen, {"count": 0, "total_ms": 0.0})
        out[gen] = (e["count"] - o["count"], e["total_ms"] - o["total_ms"], e["max_ms"])
    return out


def _thread_shares(new: dict[str, Any], old: dict[str, Any]) -> dict[str, float]:
    wall = new.get("clock_s", 0.0) - old.get("clock_s", 0.0)
    a, b = new.get("loop_thread") or {}, old.get("loop_thread") or {}
    if wall <= 0 or not a or not b:
        return {}
    return {
        "loop_cpu_share": (a["cpu_s"] - b["cpu_s"]) / wall,
        "loop_runqueue_share": (a["runqueue_s"] - b["runqueue_s"]) / wall,
    }


def _db_times(new: dict[str, Any], old: dict[str, Any]) -> dict[str, tuple[int, float, float, float]]:
    out = {}
    for name, hist_new in new.items():
        hist = _diff(hist_new, old.get(name, {}))
        if hist:
            out[name] = (sum(hist.values()), percentile_ms(hist, 50), percentile_ms(hist, 99), bucket_ms(max(hist)))
    return out


def during(before: dict[int, dict[str, object]], after: dict[int, dict[str, object]]) -> list[LoopLag]:
    """Lag figures between two readings, one per process (processes started later count whole)."""
    out = []
    for pid, report in sorted(after.items()):
        old = before.get(pid, {})
        old_hist: dict[str, int] = old.get("hist", {})  # type: ignore[assignment]
        hist = _diff(report["hist"], old_hist)  # type: ignore[arg-type]
        cb = _diff(report.get("callback_cpu_hist", {}), old.get("callback_cpu_hist", {}))  # type: ignore[arg-type]
        out.append(
            LoopLag(
                pid=pid,
                samples=sum(hist.values()),
                p50_ms=percentile_ms(hist, 50),
                p99_ms=percentile_ms(hist, 99),
                max_ms=bucket_ms(max(hist)) if hist else 0.0,
                stalls=int(report["stalls"]) - int(old.get("stalls", 0)),  # type: ignore[call-overload]
                callbacks=sum(cb.values()),
                callback_p999_ms=percentile_ms(cb, 99.9),
                callback_max_ms=bucket_ms(max(cb)) if cb else 0.0,
                slow_callbacks=_slow_diff(report.get("slow_callbacks", []), old.get("slow_callbacks", [])),  # type: ignore[arg-type]
                **_thread_shares(report, old),
                gc=_gc_diff(report.get("gc", {}), old.get("gc", {})),  # type: ignore[arg-type]
                stacks=list(report.get("stacks", [])),  # type: ignore[call-overload]
                db_times=_db_times(report.get("db_times", {}), old.get("db_times", {})),  # type: ignore[arg-type]
                db_peaks=dict(report.get("db_peaks", {})),  # type: ignore[call-overload]
            )
        )
    return out
