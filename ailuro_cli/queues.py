"""``ailuro queue list|set-status|history``: the configured queues (sites), their load and status."""

from __future__ import annotations

import typer
from rich.table import Table
from rich.text import Text

from ailuro.brokerage import QUEUE_STATUSES
from ailuro.jobspec import message_to_dict, status_name
from ailuro.v1 import brokerage_pb2
from ailuro_cli._common import (
    EXIT_USAGE,
    cell,
    console,
    fail,
    format_time,
    make_client,
    print_json,
    reported_errors,
)

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
    for column in ("QUEUE", "ENABLED", "STATUS", "BACKEND", "VOS", "LABELS", "PILOTS", "MAX_RUNNING", "JOBS"):
        table.add_column(column)
    for q in queues:
        jobs = ", ".join(f"{c.count} {status_name(c.status)}" for c in q.state_counts) or "-"
        table.add_row(
            cell(q.name),
            "yes" if q.enabled else "[red]no[/]",
            cell(q.status or "online", "" if q.status in ("", "online") else "yellow"),
            cell(q.backend),
            cell(",".join(q.vos) or "any"),
            cell(",".join(q.labels) or "any"),
            str(q.connected_pilots),
            str(q.max_running or "-"),
            jobs,
        )
    console.print(table)


def _change_row(c: brokerage_pb2.QueueStatusChange) -> list[Text]:
    return [cell(format_time(c.changed_at)), cell(c.queue), cell(c.status), cell(c.changed_by), cell(c.reason)]


@queue_app.command("set-status")
def set_status(
    ctx: typer.Context,
    queue: str = typer.Argument(..., help="The queue."),
    status: str = typer.Argument(..., help="online | offline | test | brokeroff."),
    reason: str = typer.Option(..., "--reason", help="Why (recorded with your name and the time)."),
    as_json: bool = typer.Option(False, "--json", help="Print the recorded change as JSON."),
) -> None:
    """Set a queue's status (admin): offline drains it, test takes only test jobs, brokeroff stops brokerage."""
    if status not in QUEUE_STATUSES:
        raise fail(f"status must be one of {', '.join(QUEUE_STATUSES)}", code=EXIT_USAGE)
    with reported_errors(), make_client(ctx) as client:
        change = client.brokerage.set_queue_status(queue, status, reason)
    if as_json:
        print_json(message_to_dict(change))
        return
    console.print(cell(f"{change.queue} is now {change.status} ({change.reason}), set by {change.changed_by}"))


@queue_app.command("history")
def history(
    ctx: typer.Context,
    queue: str = typer.Argument(..., help="The queue."),
    limit: int = typer.Option(20, "--limit", help="At most this many changes (1 to 1000)."),
    as_json: bool = typer.Option(False, "--json", help="Print the changes as a JSON list."),
) -> None:
    """A queue's status changes, newest first: when, what, who, why."""
    with reported_errors(), make_client(ctx) as client:
        changes = client.brokerage.queue_history(queue, limit=limit)
    if as_json:
        print_json([message_to_dict(c) for c in changes])
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("TIME", "QUEUE", "STATUS", "BY", "REASON"):
        table.add_column(column, overflow="fold")
    for c in changes:
        table.add_row(*_change_row(c))
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add the ``ailuro queue ...`` group."""
    app.add_typer(queue_app, name="queue")
