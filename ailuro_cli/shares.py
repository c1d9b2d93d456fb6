"""``ailuro shares`` (the fair-share tree, like condor_userprio / sprio) and ``ailuro shares set``."""

from __future__ import annotations

import typer
from rich.table import Table

from ailuro.jobspec import message_to_dict
from ailuro_cli._common import cell, console, make_client, print_json, reported_errors

shares_app = typer.Typer(
    help="Fair share: target, decayed usage and effective priority per VO, group and user.",
    invoke_without_command=True,
)


@shares_app.callback()
def show(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print the nodes as JSON."),
) -> None:
    """Show every node of the share tree; PRIORITY below 1 means under target (served first)."""
    if ctx.invoked_subcommand is not None:
        return
    with reported_errors(), make_client(ctx) as client:
        resp = client.brokerage.shares()
    if as_json:
        print_json(message_to_dict(resp))
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("PATH", "WEIGHT", "TARGET", "USAGE(core-h)", "USED", "PRIORITY"):
        table.add_column(column, justify="left" if column == "PATH" else "right")
    for n in resp.nodes:
        depth = n.path.count("/")
        table.add_row(
            cell("  " * depth + n.path),
            f"{n.weight:g}",
            f"{100 * n.target:.1f}%",
            f"{n.usage / 3600:.2f}",
            f"{100 * n.usage_fraction:.1f}%",
            f"{n.priority:.2f}",
        )
    console.print(table)
    console.print(cell(f"usage halves every {resp.half_life_s / 3600:g} h"))


@shares_app.command("set")
def set_weight(
    ctx: typer.Context,
    path: str = typer.Argument(..., help="vo, vo/group or vo/group/user."),
    weight: float = typer.Argument(..., help="The new weight (> 0) among its siblings."),
) -> None:
    """Change one share weight at run time (admin); it overrides the queue file's."""
    with reported_errors(), make_client(ctx) as client:
        client.brokerage.set_share_weight(path, weight)
    console.print(cell(f"{path} now weighs {weight:g}"))


def register(app: typer.Typer) -> None:
    """Add the ``ailuro shares ...`` group."""
    app.add_typer(shares_app, name="shares")
