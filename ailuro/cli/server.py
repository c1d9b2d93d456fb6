"""``ailuro server``: run the dispatcher in the foreground until Ctrl-C or SIGTERM."""

from __future__ import annotations

from pathlib import Path

import typer

from ailuro.cli._common import EXIT_USAGE, err_console, fail, reported_errors


def server(
    db: str = typer.Option(
        "sqlite:///ailuro.db",
        "--db",
        envvar="AILURO_DB",
        help="Database URL (sqlite:///file or postgresql+psycopg://...).",
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(50051, "--port", min=0, max=65535, help="Port to listen on (0: any free port)."),
    queues: Path | None = typer.Option(None, "--queues", help="Queues TOML file (default: one LOCAL queue)."),
    lease_s: float | None = typer.Option(None, "--lease-s", min=1, help="Lease a pilot holds a job without heartbeat."),
    sent_timeout_s: float | None = typer.Option(
        None, "--sent-timeout-s", min=1, help="A job sent to a pilot that does not start within this is requeued."
    ),
    bundle_port: int | None = typer.Option(
        None,
        "--bundle-port",
        min=0,
        max=65535,
        help="Also serve the pilot bundle over HTTP on this port (/pilot/bundle.pyz, /pilot/bundle.json).",
    ),
    ddm_workers: int | None = typer.Option(
        None,
        "--ddm-workers",
        min=0,
        help="DDM requests run at once by this dispatcher's agent (runs when --queues has [[storage]]); 0: none.",
    ),
    storage_root: Path | None = typer.Option(
        None,
        "--storage-root",
        envvar="AILURO_STORAGE_ROOT",
        help="Directory of file:// storage elements (<root>/<SE>, as pilots use it; default: the pilots' "
        "default, ~/.ailuro/storage); logs are read back only from there and the queue file's [[storage]] endpoints.",
    ),
    auth: str = typer.Option(
        "trusted-metadata",
        "--auth",
        envvar="AILURO_AUTH",
        help="token: every call needs a bearer token (embedded issuer in --auth-dir); trusted-metadata: "
        "development only, believes --user, loopback only (the default for now).",
    ),
    auth_dir: Path = typer.Option(
        Path("~/.ailuro/auth"),
        "--auth-dir",
        envvar="AILURO_AUTH_DIR",
        help="Embedded issuer state (signing key, JWKS, first admin token), made at first start in token mode.",
    ),
    tls_cert: Path | None = typer.Option(None, "--tls-cert", help="PEM certificate chain: serve TLS only."),
    tls_key: Path | None = typer.Option(None, "--tls-key", help="PEM private key of --tls-cert."),
    log_level: str = typer.Option("info", "--log-level", help="debug, info, warning or error."),
) -> None:
    """Run the dispatcher (the gRPC server) until interrupted."""
    import asyncio
    import contextlib
    import logging

    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    from ailuro.queues import load_queues, load_storage

    # imported here: the dispatcher pulls in SQLAlchemy and is not needed by user commands
    from dispatcher.config import DispatcherConfig
    from dispatcher.server import serve

    options: dict[str, object] = {"db_url": db, "host": host, "port": port}
    if lease_s is not None:
        options["lease_s"] = lease_s
    if sent_timeout_s is not None:
        options["sent_timeout_s"] = sent_timeout_s
    if bundle_port is not None:
        options["bundle_port"] = bundle_port
    if ddm_workers is not None:
        options["ddm_workers"] = ddm_workers
    from pilot.config import DEFAULT_STORAGE_ROOT

    options["storage_root"] = (storage_root or DEFAULT_STORAGE_ROOT).expanduser().absolute()
    from dispatcher.auth.config import MODES, TOKEN_MODE, AuthConfig
    from dispatcher.auth.interceptor import is_loopback

    with reported_errors():
        if auth not in MODES:
            raise fail(f"--auth must be one of {', '.join(MODES)}, got {auth!r}", code=EXIT_USAGE)
        if auth != TOKEN_MODE and not is_loopback(host):
            raise fail(f"--auth {auth} is allowed on a loopback --host only; use --auth token", code=EXIT_USAGE)
        if (tls_cert is None) != (tls_key is None):
            raise fail("--tls-cert and --tls-key go together", code=EXIT_USAGE)
        options["auth"] = AuthConfig(
            mode=auth, state_dir=auth_dir.expanduser().absolute(), tls_cert=tls_cert, tls_key=tls_key
        )
        if log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise fail(f"--log-level must be debug, info, warning or error, got {log_level!r}", code=EXIT_USAGE)
        try:
            shown_db = make_url(db).render_as_string(hide_password=True)
        except ArgumentError:
            raise fail(f"--db is not a database URL: {db!r}", code=EXIT_USAGE) from None
        if queues is not None:
            if not queues.is_file():
                raise fail(f"queues file not found: {queues}", code=EXIT_USAGE)
            options["queues"] = load_queues(queues)
            options["storage"] = load_storage(queues)
        config = DispatcherConfig(**options)  # type: ignore[arg-type]
        logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")

        def ready(bound: int) -> None:
            # one parseable line, so scripts (and tests) started with --port 0 learn the port
            err_console.print(f"ailuro dispatcher listening on {host}:{bound} (db {shown_db})", markup=False)

        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is the normal way to stop it
            asyncio.run(serve(config, on_ready=ready))


def register(app: typer.Typer) -> None:
    """Add ``ailuro server``."""
    app.command("server")(server)
