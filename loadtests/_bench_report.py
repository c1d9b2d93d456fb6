"""The lifecycle benchmark's printed table (:func:`report`), apart from the load it reports on.

Moved out of :mod:`loadtests.bench` unchanged, so that module stays near 600 lines.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from loadtests._machine import machine, uptime
from loadtests.echo import EchoCeiling

if TYPE_CHECKING:
    from loadtests.bench import LifecycleConfig, Result


def report(results: list[Result], ceiling: EchoCeiling, cfg: LifecycleConfig, *, workers: int = 1) -> str:
    """The printed table."""
    msgs = 9 + 2 * cfg.renewals  # request, assignment, heartbeats + acks, final + ack per job
    lines = [
        f"Ailuro lifecycle benchmark on {machine()} (load generator on the same machine)",
        f"{cfg.jobs:,} jobs: submit -> JobRequest -> STARTING -> RUNNING x{cfg.renewals} -> FINISHED; "
        f"{cfg.pilots} pilot streams x {cfg.slots} slots in {cfg.load_processes} processes; "
        f"{workers} server process(es) per dispatcher, {cfg.connections} connection(s) per load process; "
        + (f"PostgreSQL {', '.join(cfg.pg_settings)}; " if cfg.pg_settings else "")
        + f"1 in {cfg.kill_every} running jobs killed; "
        + (f"offered load {cfg.rate:,.0f} jobs/s" if cfg.rate else "closed loop (jobs taken as fast as served)"),
        f"{'offered':<17}{'db':<9}{'disp':>5}{'jobs/s':>9}{'steady':>9}{'jobs/day':>14}{'GetJob p50':>12}{'p99':>9}"
        f"{'kill p50':>10}{'p99':>9}{'CPU ms/job':>12}{'submit/s':>10}  loop lag p50/p99/max ms",
    ]
    for r in results:
        offered = r.label or ("closed" if not cfg.rate else f"{cfg.rate:,.0f}/s")
        lines.append(
            f"{offered:<17}{r.db:<9}{r.dispatchers:>5}{r.jobs_per_s:>9,.0f}{r.steady_jobs_per_s:>9,.0f}"
            f"{r.jobs_per_s * 86400:>14,.0f}{r.getjob_p50_ms:>10.1f}ms{r.getjob_p99_ms:>7.1f}ms"
            f"{r.kill_p50_ms:>8.0f}ms{r.kill_p99_ms:>7.0f}ms{r.cpu_ms_per_job:>12.2f}{r.submit_per_s:>10,.0f}"
            f"  {' '.join(lag.short() for lag in r.loop_lag) or '-'}"
        )
    lines.append(
        f"raw gRPC echo ceiling (same machine, same run): unary {ceiling.unary_calls_per_s:,.0f} calls/s, "
        f"bidi {ceiling.bidi_msgs_per_s:,.0f} msgs/s; {uptime()}"
    )
    for r in results:
        lines.append(
            f"ratio {r.label or r.db}/{r.dispatchers}: {r.jobs_per_s * msgs:,.0f} logical pilot messages/s = "
            f"{r.jobs_per_s * msgs / ceiling.bidi_msgs_per_s:.2f} x the bidi echo ceiling "
            f"({msgs} per job; heartbeats and their acks travel batched); {r.jobs} jobs, {r.kills} kills"
        )
        lines.append(
            f"  steady window (middle 60 % of completions): {r.steady_jobs_per_s:,.0f} jobs/s, "
            f"GetJob p50 {r.steady_getjob_p50_ms:.1f} ms, p99 {r.steady_getjob_p99_ms:.1f} ms; "
            f"{r.nojob:,} requests answered NoJob (p99 {r.nojob_p99_ms:,.0f} ms parked), not in the GetJob figures"
        )
        lines.append(
            f"  load generator: a JobRequest queued to written p50 {r.written_p50_ms:.1f} ms, "
            f"p99 {r.written_p99_ms:.1f} ms (inside GetJob latency)"
        )
        lines.append(r.box.line())
        if r.disk.flushes:
            lines.append(r.disk.line())
        for lag in r.loop_lag:
            lines += lag.report_lines()
        lines += [f"  {line}" for line in r.check.summary().splitlines()]
    return "\n".join(lines)
