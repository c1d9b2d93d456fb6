"""The ``ailuro`` command: one typer app; each ``ailuro_cli/<name>.py`` adds its commands via ``register``.

Global options come before the command (``ailuro --server host:port --user jdoe jobs``) and fall
back to ``AILURO_SERVER`` / ``AILURO_USER``.
"""

from __future__ import annotations

import typer

from ailuro_cli import (
    audit,
    ddm,
    ddm_upload,  # noqa: F401  (adds ``ailuro ddm upload``, which moves bytes itself)
    demo,
    factory,
    gateway,
    jobs,
    loadtest,
    monitor,
    pilot,
    queues,
    server,
    shares,
    submit,
    task,
)
from ailuro_cli import token as token_cli
from ailuro_cli._common import Settings

app = typer.Typer(
    name="ailuro",
    help="Ailuro: a pilot-based workload management system (PanDA-style).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _global_options(
    ctx: typer.Context,
    server_address: str | None = typer.Option(
        None,
        "--server",
        envvar="AILURO_SERVER",
        help="Dispatcher host:port or a comma-separated list (default 127.0.0.1:50051).",
    ),
    user: str | None = typer.Option(
        None, "--user", envvar="AILURO_USER", help="Identity sent with each call (default: anonymous)."
    ),
    token: str | None = typer.Option(
        None, "--token", envvar="AILURO_TOKEN", help="Bearer token sent with each call (see 'ailuro token')."
    ),
    token_file: str | None = typer.Option(
        None, "--token-file", envvar="AILURO_TOKEN_FILE", help="File holding the bearer token (re-read each run)."
    ),
    tls_ca: str | None = typer.Option(
        None, "--tls-ca", envvar="AILURO_TLS_CA", help="CA file (PEM) of a dispatcher that speaks TLS."
    ),
) -> None:
    """Ailuro: submit, watch and manage jobs; run the dispatcher, pilots and factories."""
    ctx.obj = Settings(server=server_address, user=user, token=token, token_file=token_file, tls_ca=tls_ca)


_MODULES = (server, submit, jobs, queues, shares, task, ddm, pilot, factory, demo, monitor, loadtest, token_cli, audit)
for _module in _MODULES:
    _module.register(app)
gateway.register(app)


def main() -> None:
    """Entry point for ``python -m ailuro_cli.main``."""
    app()


if __name__ == "__main__":
    main()
