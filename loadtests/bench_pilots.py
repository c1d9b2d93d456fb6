"""Real pilots running real payloads, side by side with Slurm and HTCondor on the same machine.

    python -m loadtests.bench_pilots                          # /bin/true and sleep 1, every system up
    python -m loadtests.bench_pilots --jobs 2000 --payloads true --systems ailuro,condor
    ailuro loadtest pilots --jobs 2000                        # the same through the CLI

For each payload (``true``: ``/bin/true``; ``sleep``: ``sleep 1``) the same number of jobs goes
through each system, submitted at once, and the span is measured from the first submit to the last
job finished:

- **Ailuro** (:mod:`loadtests._ailuro_run`): a fresh PostgreSQL database, one dispatcher process,
  ``--pilots`` real ``ailuro pilot`` processes sharing ``--slots`` payload slots, connected and
  idle before the first submit; a job is finished when the dispatcher recorded its final report
  (the last ``end_time``).
- **HTCondor** and **Slurm** (:mod:`loadtests._batch_run`): the CI's pools, when they are up (a
  missing one is skipped with the reason printed): one ``queue N`` submission, and ``sbatch
  --array`` of a script that ``exec``s the payload; their slots are what the pools have (8 each
  in the CI setup).

How CPU is measured (Linux only; see :mod:`loadtests._cpu`): the pilots and everything they fork
(guard server, job guards, payloads) run in a ``cpuacct`` cgroup made for the run, so even exited
processes count; the dispatcher is one process read from ``/proc/<pid>/stat`` (all its threads);
the PostgreSQL backends serving the run's database are found in ``pg_stat_activity`` and read the
same way. For HTCondor and Slurm it is ``utime + stime + cutime + cstime`` of their daemon trees
(every shadow, starter and payload is reaped inside the tree and lands in ``cutime``), before and
after, plus slurmstepd sampled while it lives (it re-parents itself to init). Every figure is the
delta from just before the first submit to the end, so the benchmark's own work (submitting,
polling) is not counted for anyone. The payload's own CPU is inside each figure (``/bin/true``
costs about 1 ms).

Printed: jobs/s and CPU seconds per 1,000 jobs per system (Ailuro split into pilots, dispatcher
and PostgreSQL), the ratios, the Ailuro per-job figures against the issue's targets, and for
``sleep 1`` the span against the ideal ``jobs x 1 s / slots``. The machine and its load average
are printed too: on a shared machine the rates move with the load; CPU per job moves less.
Each Ailuro run ends with the database consistency check (:mod:`loadtests.consistency`: every
submitted job accounted for, none dispatched twice, none lost, all final), after the CPU readings.
Bounded: each run stops at ``--timeout-s`` (reported as timed out). Figures only, no assertion.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable

from loadtests._ailuro_run import AiluroSetup, RunResult, run_ailuro
from loadtests._batch_run import condor_problem, run_condor, run_slurm, slurm_problem

PAYLOADS: dict[str, list[str]] = {"true": ["/bin/true"], "sleep": ["/bin/sleep", "1"]}
SYSTEMS = ("ailuro", "condor", "slurm")
TARGET_PILOT_MS = 15.0
TARGET_DISPATCHER_MS = 3.0
TARGET_VS_CONDOR = 5.0
TARGET_VS_SLURM = 10.0
TARGET_SLEEP_OVERHEAD = 0.05


def _machine() -> str:
    model = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as fh:
            model = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), model)
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{model}, {os.cpu_count()} cores, {mem_gib:.0f} GiB, Python {platform.python_version()}"


def _load() -> str:
    return "load average " + " ".join(f"{x:.1f}" for x in os.getloadavg())


def _row(r: RunResult) -> str:
    parts = ", ".join(f"{k} {v * 1000 / r.done:.1f}" for k, v in r.cpu_s.items()) if r.done else "-"
    return (
        f"{r.payload:6s} {r.system:9s} {r.slots:5d} {r.done:6,d}/{r.jobs:<6,d} {r.jobs_per_s:8.1f} "
        f"{r.elapsed_s:8.1f} {r.cpu_per_1000():10.1f}  ({parts}){'  ' + r.note if r.note else ''}"
    )


def report(results: list[RunResult], skipped: dict[str, str]) -> str:
    """The comparison table, the ratios and where the targets stand."""
    lines = [
        "payload system    slots  done/jobs     jobs/s   span s  CPU s/1000 jobs  (split, s per 1000 jobs)",
    ]
    lines += [_row(r) for r in results]
    lines += [f"{r.payload} {r.system}: {r.check}" for r in results if r.check]
    for name, why in skipped.items():
        lines.append(f"skipped {name}: {why}")
    by = {(r.payload, r.system): r for r in results}
    for payload in PAYLOADS:
        ours = by.get((payload, "Ailuro"))
        if ours is None or not ours.done:
            continue
        for other, target in (("HTCondor", TARGET_VS_CONDOR), ("Slurm", TARGET_VS_SLURM)):
            theirs = by.get((payload, other))
            if theirs is None or not theirs.done or not theirs.jobs_per_s:
                continue
            rate = ours.jobs_per_s / theirs.jobs_per_s
            cpu = ours.cpu_per_1000() / theirs.cpu_per_1000() if theirs.cpu_per_1000() else float("nan")
            goal = f" (target >= {target:g}x)" if payload == "true" else ""
            lines.append(f"{payload}: Ailuro/{other}: jobs/s {rate:.1f}x{goal}, CPU per job {cpu:.2f}x")
        if payload == "true":
            pilot = ours.cpu_s.get("pilots", 0) * 1000 / ours.done
            disp = ours.cpu_s.get("dispatcher", 0) * 1000 / ours.done
            own = ours.detail_s.get("pilot processes", 0) * 1000 / ours.done
            lines.append(
                f"true: Ailuro per job: pilot {pilot:.1f} ms (target <= {TARGET_PILOT_MS:g}; the pilot processes "
                f"alone {own:.1f} ms, guards and payloads {pilot - own:.1f} ms), dispatcher {disp:.1f} ms "
                f"(target <= {TARGET_DISPATCHER_MS:g})"
            )
    for r in results:
        if r.payload == "sleep" and r.done and r.slots:
            ideal = r.done * 1.0 / r.slots
            over = r.elapsed_s / ideal - 1
            lines.append(
                f"sleep: {r.system}: {r.elapsed_s:.1f} s for {r.done} x 1 s on {r.slots} slots, ideal {ideal:.1f} s: "
                f"{over:+.1%} (target within {TARGET_SLEEP_OVERHEAD:.0%})"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Parse options, run every (payload, system), print the comparison."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=int, default=1000, help="/bin/true jobs per system (default: %(default)s)")
    p.add_argument("--sleep-jobs", type=int, default=160, help="sleep 1 jobs per system (default: %(default)s)")
    p.add_argument("--pilots", type=int, default=8, help="Ailuro pilot processes (default: %(default)s)")
    p.add_argument("--slots", type=int, default=8, help="Ailuro payload slots in all (default: %(default)s)")
    p.add_argument("--payloads", default="true,sleep", help="comma-separated: true, sleep (default: %(default)s)")
    p.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated (default: %(default)s)")
    p.add_argument("--timeout-s", type=float, default=600.0, help="bound of each run (default: %(default)s)")
    p.add_argument(
        "--idle-poll-s",
        type=float,
        default=AiluroSetup.idle_poll_s,
        help="the dispatcher's --no-job-retry: idle pilots ask again after this (default: %(default)s)",
    )
    a = p.parse_args(argv)
    payloads = [x for x in a.payloads.split(",") if x]
    systems = [x for x in a.systems.split(",") if x]
    bad = [x for x in payloads if x not in PAYLOADS] + [x for x in systems if x not in SYSTEMS]
    if bad or a.jobs < 1 or a.sleep_jobs < 1 or not 1 <= a.pilots <= a.slots:
        p.error(f"bad --payloads/--systems {bad} or counts (1 <= pilots <= slots, jobs >= 1)")
    skipped: dict[str, str] = {}
    for name, problem in (("condor", condor_problem), ("slurm", slurm_problem)):
        if name in systems and (why := problem()):
            skipped[name] = why
    print(f"machine: {_machine()}; {_load()} at start; {time.strftime('%Y-%m-%d %H:%M:%S %Z')}", flush=True)
    setup = AiluroSetup(pilots=a.pilots, slots=a.slots, idle_poll_s=a.idle_poll_s)
    print(f"Ailuro: {a.pilots} pilots, {a.slots} slots, idle pilots ask every {a.idle_poll_s:g} s", flush=True)
    runners: dict[str, Callable[[str, list[str], int, float], RunResult]] = {
        "ailuro": lambda pl, av, n, t: run_ailuro(pl, av, n, setup, t),
        "condor": run_condor,
        "slurm": run_slurm,
    }
    results = []
    for payload in payloads:
        n = a.jobs if payload == "true" else a.sleep_jobs
        for system in systems:
            if system in skipped:
                continue
            results.append(runners[system](payload, PAYLOADS[payload], n, a.timeout_s))
            print(_row(results[-1]) + f"   [{_load()}]", flush=True)
    print(f"\n{_load()} at the end")
    print(report(results, skipped))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
