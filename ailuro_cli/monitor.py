"""``ailuro monitor``: serve the web monitor over a dispatcher's database (see :mod:`monitor`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from ailuro.vocabulary import DB_ENV, DB_ENV_DEPRECATED

_HELP = """Serve the web monitor: jobs, tasks, sites, pilots, errors, users, datasets, plots, /metrics.

It reads the dispatcher's database directly and read-only. Every page has a JSON twin
(add ?json to the URL). Viewers log in with the dispatcher's tokens (pasted once, or OIDC with
--oidc) and see their VO's jobs only; admins see everything; --public VO shows one VO to anyone.
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
            help="Queue file: queue configuration on site pages, the VOs each queue serves, and the "
            "[[storage]] endpoints logs may be served from (file:// ones).",
        ),
    ] = None,
    auth_dir: Annotated[
        Path,
        typer.Option(
            envvar="AILURO_AUTH_DIR",
            help="The dispatcher's --auth-dir: tokens of its embedded issuer log in (its jwks.json is read).",
        ),
    ] = Path("~/.ailuro/auth"),
    oidc: Annotated[
        Path | None,
        typer.Option(help="OIDC client file (TOML, mode 0600): log in with an identity provider (see README)."),
    ] = None,
    public: Annotated[
        str | None,
        typer.Option(help="Read-only public view of this VO for anyone, without login (no logs, no audit)."),
    ] = None,
    tls_cert: Annotated[Path | None, typer.Option(help="PEM certificate chain: serve https (cookies Secure).")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="PEM private key of --tls-cert.")] = None,
) -> None:
    """Serve the monitor until interrupted."""
    import logging

    from ailuro.errors import InvalidArgument
    from ailuro.queues import load_queues, load_shares, load_storage
    from dispatcher.options import db_url_from_env
    from monitor.auth import MonitorAuth
    from monitor.config import MonitorConfig
    from monitor.db import SchemaMissing
    from monitor.oidc import load_oidc_config
    from monitor.server import serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    notice = db_url_from_env(os.environ)[1]
    if notice:
        typer.echo(f"warning: {notice}", err=True)
    jwks = auth_dir.expanduser().absolute() / "jwks.json"
    try:
        storage, queue_configs, shares = load_storage(queues), load_queues(queues), load_shares(queues)
        oidc_config = load_oidc_config(oidc) if oidc is not None else None
        if (tls_cert is None) != (tls_key is None):
            raise InvalidArgument("--tls-cert and --tls-key go together", field="--tls-cert")
        if not jwks.is_file() and oidc_config is None and not public:
            raise InvalidArgument(
                f"no way to log in: {jwks} does not exist (start the dispatcher with --auth token and this "
                "--auth-dir), and neither --oidc nor --public is given",
                field="--auth-dir",
            )
    except InvalidArgument as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    config = MonitorConfig(
        db_url=db,
        host=host,
        port=port,
        refresh_s=refresh_s,
        log_roots=tuple(log_root or ()),
        storage=storage,
        queues=queue_configs,
        shares=shares,
        auth=MonitorAuth(embedded_jwks=str(jwks) if jwks.is_file() else "", public_vo=public or ""),
        oidc=oidc_config,
        tls_cert=tls_cert,
        tls_key=tls_key,
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
