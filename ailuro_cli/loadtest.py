"""``ailuro loadtest``: prove an instance holds its load (locust scenario, lifecycle benchmark, memory).

- ``ailuro loadtest run``: the locust scenario headless (fresh database and dispatcher, or
  ``--address`` of a running one), then the report and the database consistency check;
- ``ailuro loadtest bench``: full job lifecycle throughput beside the raw gRPC ceiling;
- ``ailuro loadtest memory``: dispatcher RSS with many pilot streams and a deep queue;
- ``ailuro loadtest pilots``: real pilots running real payloads beside Slurm and HTCondor.

Everything lives in the ``loadtests`` package of a source checkout (and needs the ``dev`` extra
for locust); the commands import it lazily and say so when it is missing.
"""

from __future__ import annotations

from types import ModuleType

import typer

from ailuro_cli._common import fail, reported_errors

loadtest_app = typer.Typer(
    name="loadtest",
    help="Load tests: locust scenario, lifecycle benchmark, memory (127.0.0.1 only).",
    no_args_is_help=True,
)


def _module(name: str) -> ModuleType:
    import importlib

    try:
        return importlib.import_module(f"loadtests.{name}")
    except ModuleNotFoundError as exc:
        raise fail(f"{exc}: run from a source checkout with the dev extra (pip install -e '.[dev]')", code=2) from exc


@loadtest_app.command("run")
def run(
    scenario: str = typer.Option("compass-x10", "--scenario", help="compass-x10 (3M jobs/day), compass, panda."),
    minutes: float = typer.Option(2.0, "--minutes", min=0.1, help="How long to hold the load."),
    jobs_per_s: float = typer.Option(0.0, "--jobs-per-s", min=0, help="Override the scenario's submitted rate."),
    db: str = typer.Option("sqlite", "--db", help="Fresh database kind: sqlite or postgres."),
    dispatchers: int = typer.Option(1, "--dispatchers", min=1, max=8, help="Dispatcher processes to start."),
    address: str = typer.Option("", "--address", help="Load an existing dispatcher (host:port) instead."),
    db_url: str = typer.Option("", "--db-url", help="With --address: its database, for the consistency check."),
) -> None:
    """Run the locust scenario headless; print jobs/day, RPC p50/p95/p99, failures, consistency."""
    from dataclasses import replace

    with reported_errors():
        mod = _module("run")
        if scenario not in mod.SCENARIOS:
            raise fail(f"--scenario must be one of {', '.join(sorted(mod.SCENARIOS))}", code=2)
        if db not in ("sqlite", "postgres"):
            raise fail("--db must be sqlite or postgres", code=2)
        chosen = mod.SCENARIOS[scenario]
        if jobs_per_s:
            chosen = replace(chosen, jobs_per_s=jobs_per_s)
        rc = mod.run(chosen, seconds=minutes * 60, db=db, dispatchers=dispatchers, address=address, db_url=db_url)
    raise typer.Exit(rc)


@loadtest_app.command("bench", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def bench(
    ctx: typer.Context,
    db: str = typer.Option("postgres", "--db", help="sqlite, postgres or both."),
    dispatchers: str = typer.Option("1,2", "--dispatchers", help="Comma-separated dispatcher process counts."),
    jobs: int = typer.Option(40_000, "--jobs", min=100, help="Jobs per configuration."),
) -> None:
    """Full job lifecycle throughput, GetJob and kill latency, beside the raw gRPC echo ceiling.

    Every further option of ``python -m loadtests.bench`` passes through (``--rate R``,
    ``--saturation``, ``--auth trusted-metadata``, ``--workers N``, ...; ``python -m loadtests.bench
    --help`` lists them), checked by its own parser.
    """
    with reported_errors():
        mod = _module("bench")
    raise typer.Exit(mod.main(["--db", db, "--dispatchers", dispatchers, "--jobs", str(jobs), *ctx.args]))


@loadtest_app.command("pilots")
def pilots(
    jobs: int = typer.Option(1000, "--jobs", min=1, help="/bin/true jobs per system."),
    sleep_jobs: int = typer.Option(160, "--sleep-jobs", min=1, help="sleep 1 jobs per system."),
    systems: str = typer.Option("ailuro,condor,slurm", "--systems", help="Comma-separated systems to run."),
    payloads: str = typer.Option("true,sleep", "--payloads", help="Comma-separated: true, sleep."),
) -> None:
    """Real pilots running real payloads beside Slurm and HTCondor: jobs/s and CPU per 1,000 jobs."""
    with reported_errors():
        mod = _module("bench_pilots")
    args = ["--jobs", str(jobs), "--sleep-jobs", str(sleep_jobs), "--systems", systems, "--payloads", payloads]
    raise typer.Exit(mod.main(args))


@loadtest_app.command("memory")
def memory(
    streams: int = typer.Option(10_000, "--streams", min=1, help="Pilot streams to hold open."),
    queued: int = typer.Option(1_000_000, "--queued", min=1, help="Activated jobs in the queue."),
) -> None:
    """Dispatcher RSS with many connected pilot streams and a deep queue (PostgreSQL)."""
    with reported_errors():
        mod = _module("memory")
    raise typer.Exit(mod.main(["--streams", str(streams), "--queued", str(queued)]))


def register(app: typer.Typer) -> None:
    """Add ``ailuro loadtest ...`` to the CLI."""
    app.add_typer(loadtest_app)
