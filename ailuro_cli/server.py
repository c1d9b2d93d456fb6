"""``ailuro server``: run the dispatcher in the foreground until Ctrl-C or SIGTERM.

The options are the dispatcher's own (:mod:`dispatcher.options`, shared with ``python -m
dispatcher``); this command hands every argument to it unchanged.
"""

from __future__ import annotations

import typer

_HELP = "Run the dispatcher (the gRPC server) until interrupted; the same options as `python -m dispatcher`."


def server(ctx: typer.Context) -> None:
    """Run ``python -m dispatcher`` in this process with the arguments given."""
    # imported here: the dispatcher pulls in SQLAlchemy and is not needed by user commands
    from dispatcher.__main__ import main

    raise typer.Exit(main(ctx.args, prog="ailuro server"))


def register(app: typer.Typer) -> None:
    """Add ``ailuro server``."""
    app.command(
        "server",
        help=_HELP,
        add_help_option=False,
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    )(server)
