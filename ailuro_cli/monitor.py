"""``ailuro monitor``: serve the web monitor over a dispatcher's database (see :mod:`monitor`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from ailuro.vocabulary import DB_ENV, DB_ENV_DEPRECATED

_HELP = """Serve the web monitor: jobs, tasks, sites, pilots, errors, users, datasets, plots, /metrics.

It reads the dispatcher's database directly and read-only. Every page has a JSON twin
(add ?json to the URL).
"""


def monitor_command(
    db: Annotated[
        str,
        typer.Option(
            envvar=[DB_ENV, DB_ENV_DEPRECATED],
            help="Dispatcher database URL (sqlite:///PATH or postgresql+psycopg://...).",
        ),
    ] = "sqlite:///ailuro.db",
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (0: any free port).")] = 8880,
    refresh_s: Annotated[float, typer.Option(help="Seconds between live updates of open pages (0: off).")] = 10.0,
    log_root: Annotated[
        list[Path] | None,
        typer.Option(help="Serve job log tarballs stored under this directory, e.g. the storage root (repeatable)."),
    ] = None,
    queues: Annotated[
        Path | None,
        typer.Option(
            envvar="AILURO_QUEUES",
            help="Queue file whose [[storage]] endpoints logs may be served from (file:// ones).",
        ),
    ] = None,
) -> None:
    """Serve the monitor until interrupted."""
    import logging

    from ailuro.errors import InvalidArgument
    from ailuro.queues import load_storage
    from dispatcher.options import db_url_from_env
    from monitor.config import MonitorConfig
    from monitor.db import SchemaMissing
    from monitor.server import serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    notice = db_url_from_env(os.environ)[1]
    if notice:
        typer.echo(f"warning: {notice}", err=True)
    try:
        storage = load_storage(queues)
    except InvalidArgument as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    config = MonitorConfig(
        db_url=db, host=host, port=port, refresh_s=refresh_s, log_roots=tuple(log_root or ()), storage=storage
    )
    try:
        serve(config)
    except SchemaMissing as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except OSError as exc:
        typer.echo(f"error: cannot listen on {host}:{port}: {exc}", err=True)
        raise typer.Exit(2) from None


def register(app: typer.Typer) -> None:
    """Add ``ailuro monitor`` to the CLI."""
    app.command("monitor", help=_HELP)(monitor_command)
