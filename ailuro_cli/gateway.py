"""``ailuro gateway``: serve the PanDA JSON API for panda-client 2.x (see :mod:`dispatcher.gateway`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

_HELP = """Serve the PanDA server's JSON API (/api/v1/job/*) so the real panda-client works unchanged.

A translator: each request becomes calls to the dispatcher's gRPC API. Users set
PANDA_URL_SSL=https://HOST:PORT/server/panda (and PANDACACHE_URL) and their token, or use their
grid certificate (X509_USER_PROXY) when --gridmap maps its DN.
"""


def gateway_command(
    ctx: typer.Context,
    server: Annotated[
        str | None, typer.Option("--server", help="Dispatcher gRPC host:port (default: the global --server).")
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (0: any free port).")] = 25443,
    tls_cert: Annotated[Path | None, typer.Option(help="Server certificate (PEM): serve HTTPS.")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="Private key of --tls-cert.")] = None,
    tls_ca: Annotated[
        Path | None, typer.Option(help="CA bundle to verify client certificates (X509_USER_PROXY) against.")
    ] = None,
    gridmap: Annotated[
        Path | None,
        typer.Option(help='Grid-mapfile ("<DN>" user vo role[,role]) mapping client certificates (the dispatcher\'s).'),
    ] = None,
    auth_dir: Annotated[
        Path | None,
        typer.Option(help="The dispatcher's --auth-dir: certificate callers get a 5-minute token signed with its key."),
    ] = None,
    dev_trust_token_sub: Annotated[
        bool, typer.Option(help="DEVELOPMENT ONLY: use the bearer token's sub claim as the user, unverified.")
    ] = False,
) -> None:
    """Serve the gateway until interrupted."""
    import logging

    from ailuro.client import DEFAULT_SERVER
    from ailuro.errors import InvalidArgument
    from dispatcher.gateway.server import GatewayConfig, make_server

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = ctx.obj
    target = server or getattr(settings, "server", None) or DEFAULT_SERVER
    config = GatewayConfig(
        server=target,
        host=host,
        port=port,
        tls_cert=tls_cert,
        tls_key=tls_key,
        tls_ca=tls_ca,
        gridmap=gridmap,
        auth_dir=auth_dir.expanduser() if auth_dir else None,
        server_tls_ca=Path(settings.tls_ca) if getattr(settings, "tls_ca", None) else None,
        dev_trust_token_sub=dev_trust_token_sub,
    )
    try:
        httpd = make_server(config)
    except InvalidArgument as exc:
        typer.echo(f"error: {exc.field}: {exc.message}", err=True)
        raise typer.Exit(2) from None
    except OSError as exc:
        typer.echo(f"error: cannot listen on {host}:{port}: {exc}", err=True)
        raise typer.Exit(2) from None
    scheme = "https" if tls_cert else "http"
    typer.echo(f"PanDA gateway on {scheme}://{host}:{httpd.server_address[1]} -> dispatcher {target}", err=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()


def register(app: typer.Typer) -> None:
    """Add ``ailuro gateway``."""
    app.command("gateway", help=_HELP)(gateway_command)
