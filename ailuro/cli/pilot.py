"""``ailuro pilot``: run a pilot that takes jobs from a dispatcher queue (see :mod:`pilot.main`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

_HELP = """Run a pilot: connect to the dispatcher, take jobs from QUEUE and run them until idle.

Exit codes: 0 did work, 65 refused by the dispatcher, 80 dispatcher never reached, 82 no jobs,
83 final reports left undelivered in the spool, 130/143 stopped by SIGINT/SIGTERM.
"""


def pilot_command(
    server: Annotated[
        str, typer.Option(envvar="AILURO_SERVER", help="Dispatcher HOST:PORT or a comma-separated list.")
    ],
    queue: Annotated[str, typer.Option(envvar="AILURO_QUEUE", help="Queue (computing site) to serve.")],
    pilot_id: Annotated[
        str, typer.Option(envvar="AILURO_PILOT_ID", help="Pilot id (default: host name + random suffix).")
    ] = "",
    workdir: Annotated[
        Path | None, typer.Option(help="Parent of the job work directories (default: ./ailuro-pilot-<pilot id>).")
    ] = None,
    heartbeat_s: Annotated[float, typer.Option(help="Heartbeat interval in seconds.")] = 30.0,
    status_delay_s: Annotated[
        float, typer.Option(help="Report a job's status change this long after it (shorter jobs send only the final).")
    ] = 1.0,
    idle_timeout_s: Annotated[float, typer.Option(help="Exit after this long without a job.")] = 300.0,
    walltime_s: Annotated[float, typer.Option(help="Lifetime of the pilot in seconds (0: unlimited).")] = 0.0,
    max_jobs: Annotated[int, typer.Option(help="Exit after this many jobs (0: unlimited).")] = 0,
    jobs_in_parallel: Annotated[int, typer.Option(help="Jobs run at the same time.")] = 1,
    kill_grace_s: Annotated[float, typer.Option(help="Seconds between SIGTERM and SIGKILL of a payload.")] = 1.0,
    spool: Annotated[
        Path | None, typer.Option(help="Directory of undelivered final reports (default: <workdir>/spool).")
    ] = None,
    storage_root: Annotated[
        Path | None,
        typer.Option(envvar="AILURO_STORAGE_ROOT", help="Base directory of file:// storage elements."),
    ] = None,
    cores: Annotated[
        int,
        typer.Option(
            help="Cores offered to payloads (default: from the batch system: SLURM_CPUS_ON_NODE, "
            "LSB_DJOB_NUMPROC, HTCondor RequestCpus; else CPU affinity)."
        ),
    ] = 0,
    unary: Annotated[
        bool,
        typer.Option(
            "--unary/--stream",
            envvar="AILURO_PILOT_UNARY",
            help="Use unary GetJob/UpdateJob polls instead of the Connect stream (for proxies).",
        ),
    ] = False,
    memory_mb: Annotated[int, typer.Option(help="Memory offered to payloads in MiB (default: node memory).")] = 0,
    keep_workdirs: Annotated[bool, typer.Option(help="Keep job work directories after the job.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
) -> None:
    """Run a pilot for one queue."""
    import logging
    import socket

    from pilot.config import (
        DEFAULT_STORAGE_ROOT,
        PilotConfig,
        available_cores,
        default_pilot_id,
        detect_batch_id,
        total_memory_mb,
    )
    from pilot.main import run_pilot, setup_logging

    pid = pilot_id or default_pilot_id()
    work = (workdir or Path.cwd() / f"ailuro-pilot-{pid}").absolute()
    try:
        config = PilotConfig(
            server=server,
            queue=queue,
            pilot_id=pid,
            workdir=work,
            spool_dir=(spool or work / "spool").absolute(),
            storage_root=(storage_root or DEFAULT_STORAGE_ROOT).expanduser().absolute(),
            batch_id=detect_batch_id(os.environ),
            node=socket.gethostname(),
            cores=cores or available_cores(),
            memory_mb=memory_mb or total_memory_mb(),
            heartbeat_s=heartbeat_s,
            status_delay_s=status_delay_s,
            idle_timeout_s=idle_timeout_s,
            walltime_s=walltime_s,
            max_jobs=max_jobs,
            jobs_in_parallel=jobs_in_parallel,
            kill_grace_s=kill_grace_s,
            keep_workdirs=keep_workdirs,
            unary=unary,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    setup_logging(logging.DEBUG if verbose else logging.INFO)
    raise typer.Exit(run_pilot(config))


def register(app: typer.Typer) -> None:
    """Add the ``pilot`` command to the ``ailuro`` CLI."""
    app.command("pilot", help=_HELP)(pilot_command)
