"""``ailuro pilot``: run a pilot; the options are the pilot's own (``python -m pilot``, :mod:`pilot.__main__`).

The pilot defines its command line once, with the standard library, so a worker node needs no
CLI libraries; this command hands every argument to it unchanged (``ailuro pilot --help`` prints
the pilot's help).
"""

from __future__ import annotations

import typer

_HELP = "Run a pilot for one queue (the same options as `python -m pilot`; see `ailuro pilot --help`)."


def pilot_command(ctx: typer.Context) -> None:
    """Run ``python -m pilot`` in this process with the arguments given."""
    from pilot.__main__ import main

    raise typer.Exit(main(ctx.args, prog="ailuro pilot"))


def register(app: typer.Typer) -> None:
    """Add the ``pilot`` command to the ``ailuro`` CLI."""
    app.command(
        "pilot",
        help=_HELP,
        add_help_option=False,
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    )(pilot_command)
