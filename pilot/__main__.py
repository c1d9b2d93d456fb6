"""``python -m pilot``: the same as ``ailuro pilot`` (for wrappers that ship only the pilot)."""

from __future__ import annotations

import typer

from ailuro_cli.pilot import register


def main() -> None:
    """Parse the command line and run the pilot."""
    app = typer.Typer(add_completion=False)
    register(app)
    app(prog_name="python -m pilot")


if __name__ == "__main__":
    main()
