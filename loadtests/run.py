"""Run the locust scenario headless against a fresh database and dispatcher(s); what ``ailuro loadtest`` does.

    python -m loadtests.run --scenario compass-x10 --minutes 2          # CI size
    python -m loadtests.run --scenario compass-x10 --minutes 1440       # a full day, for operators
    python -m loadtests.run --db postgres --dispatchers 2 --jobs-per-s 100 --minutes 10

A scenario fixes the submitted rate and the user mix; the number of pilots follows from the rate,
the job length and the slots per pilot (with 50 % headroom). ``--address`` points the load at an
existing dispatcher instead (``--db-url`` then enables the consistency check). Exit code 0 only
when locust saw no failure and the consistency check passed.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path

from loadtests._harness import database, dispatcher_handle

LOCUSTFILE = Path(__file__).with_name("locustfile.py")


@dataclass(frozen=True, kw_only=True)
class Scenario:
    """A load shape: submitted jobs/s, how long jobs run on pilots, the user mix."""

    name: str
    jobs_per_s: float
    job_s: float = 3.0
    heartbeat_s: float = 1.0
    slots: int = 8
    prod_batch: int = 100
    analysis_share: float = 0.2
    analysis_submitters: int = 2
    prod_submitters: int = 1
    watchers: int = 2
    fail_fraction: float = 0.02

    def pilots(self) -> int:
        """Pilot users needed to keep up, with 50 % headroom (a job holds a slot ~job_s + 1.5 beats)."""
        in_flight = self.jobs_per_s * (self.job_s + 1.5 * self.heartbeat_s)
        return max(2, math.ceil(1.5 * in_flight / self.slots))


SCENARIOS = {
    # COMPASS runs ~300K jobs/day; x10 is 3M jobs/day = 34.7 jobs/s.
    "compass-x10": Scenario(name="compass-x10", jobs_per_s=3_000_000 / 86_400),
    "compass": Scenario(name="compass", jobs_per_s=300_000 / 86_400),
    "panda": Scenario(name="panda", jobs_per_s=1_000_000 / 86_400),
}


def locust_argv(scenario: Scenario, *, address: str, seconds: float, db_url: str) -> list[str]:
    """The ``locust`` command line for ``scenario`` against ``address``."""
    s = scenario
    users = s.pilots() + s.prod_submitters + s.analysis_submitters + s.watchers
    argv = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--only-summary"]
    argv += ["-u", str(users), "-r", str(max(users, 1)), "-t", f"{max(1, round(seconds))}s", "--stop-timeout", "20"]
    argv += ["--host", address, "--loglevel", "WARNING"]
    argv += ["--ailuro-jobs-per-s", f"{s.jobs_per_s:.3f}", "--ailuro-job-s", str(s.job_s)]
    argv += ["--ailuro-heartbeat-s", str(s.heartbeat_s), "--ailuro-slots", str(s.slots)]
    argv += ["--ailuro-prod-batch", str(s.prod_batch), "--ailuro-analysis-share", str(s.analysis_share)]
    argv += ["--ailuro-fail-fraction", str(s.fail_fraction), "--ailuro-pilots", str(s.pilots())]
    argv += ["--ailuro-prod-submitters", str(s.prod_submitters)]
    argv += ["--ailuro-analysis-submitters", str(s.analysis_submitters), "--ailuro-watchers", str(s.watchers)]
    if db_url:
        argv += ["--ailuro-db", db_url]
    return argv


def run(
    scenario: Scenario,
    *,
    seconds: float,
    db: str = "sqlite",
    dispatchers: int = 1,
    address: str = "",
    db_url: str = "",
) -> int:
    """Run locust (fresh database and dispatchers unless ``address``); its exit code."""
    with ExitStack() as stack:
        if not address:
            db_url = stack.enter_context(database(db))
            handles = [stack.enter_context(dispatcher_handle(db_url)) for _ in range(dispatchers)]
            address = handles[0].address
            if dispatchers > 1:
                print("note: locust drives the first dispatcher; the others serve the same database", flush=True)
        argv = locust_argv(scenario, address=address, seconds=seconds, db_url=db_url)
        print(f"scenario {scenario.name}: {scenario.jobs_per_s:.1f} jobs/s submitted, {scenario.pilots()} pilots")
        print("$ " + " ".join(argv[1:]), flush=True)
        proc = subprocess.run(argv, timeout=seconds + 180, check=False)
        return proc.returncode


def main(argv: list[str] | None = None) -> int:
    """Command line of ``python -m loadtests.run``."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenario", choices=sorted(SCENARIOS), default="compass-x10")
    p.add_argument("--minutes", type=float, default=2.0)
    p.add_argument("--jobs-per-s", type=float, default=0.0, help="override the scenario's rate")
    p.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    p.add_argument("--dispatchers", type=int, default=1)
    p.add_argument("--address", default="", help="an existing dispatcher (host:port) instead of a fresh one")
    p.add_argument("--db-url", default="", help="with --address: its database, for the consistency check")
    a = p.parse_args(argv)
    scenario = SCENARIOS[a.scenario]
    if a.jobs_per_s:
        scenario = replace(scenario, jobs_per_s=a.jobs_per_s)
    return run(
        scenario,
        seconds=a.minutes * 60,
        db=a.db,
        dispatchers=a.dispatchers,
        address=a.address,
        db_url=a.db_url,
    )


if __name__ == "__main__":
    raise SystemExit(main())
