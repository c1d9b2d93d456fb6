"""``ailuro queue list``: the configured queues (sites) and their load."""

from __future__ import annotations

import typer
from rich.table import Table

from ailuro.jobspec import message_to_dict, status_name
from ailuro_cli._common import cell, console, make_client, print_json, reported_errors

queue_app = typer.Typer(help="Queues (sites) jobs run on.", no_args_is_help=True)


@queue_app.command("list")
def list_queues(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print the queues as a JSON list."),
) -> None:
    """List queues with the VOs and labels they serve, their backend and their load."""
    with reported_errors(), make_client(ctx) as client:
        queues = client.queues()
    if as_json:
        print_json([message_to_dict(q) for q in queues])
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("QUEUE", "ENABLED", "BACKEND", "VOS", "LABELS", "PILOTS", "MAX_RUNNING", "JOBS"):
        table.add_column(column)
    for q in queues:
        jobs = ", ".join(f"{c.count} {status_name(c.status)}" for c in q.state_counts) or "-"
        table.add_row(
            cell(q.name),
            "yes" if q.enabled else "[red]no[/]",
            cell(q.backend),
            cell(",".join(q.vos) or "any"),
            cell(",".join(q.labels) or "any"),
            str(q.connected_pilots),
            str(q.max_running or "-"),
            jobs,
        )
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add the ``ailuro queue ...`` group."""
    app.add_typer(queue_app, name="queue")
