"""``ailuro audit``: who submitted, killed, retried, issued tokens, changed workers (admin only)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import typer
from google.protobuf.json_format import MessageToDict
from rich.table import Table

from ailuro.errors import InvalidArgument
from ailuro.jobspec import parse_time
from ailuro_cli._common import cell, console, format_time, make_client, now, print_json, reported_errors

_AGO = re.compile(r"^\s*(\d{1,6})\s*([mhd])\s*$")
_UNIT = {"m": "minutes", "h": "hours", "d": "days"}


def parse_since(text: str, *, field: str) -> datetime:
    """``30m``/``12h``/``7d`` ago, or an ISO-8601 time (naive: UTC)."""
    match = _AGO.match(text)
    if match:
        return now() - timedelta(**{_UNIT[match.group(2)]: int(match.group(1))})
    try:
        return parse_time(text, field=field)
    except InvalidArgument:
        raise InvalidArgument(f"not an ISO-8601 time nor a duration like 12h: {text!r}", field=field) from None


def audit_command(
    ctx: typer.Context,
    user: str = typer.Option("", "--user", help="Only actions of this actor (token subject, factory id)."),
    action: str = typer.Option("", "--action", help="Only this action: jobs.submit, jobs.kill, token.issue ..."),
    vo: str = typer.Option("", "--vo", help="Only actions done for this VO."),
    since: str | None = typer.Option(None, "--since", help="Since an ISO time (UTC) or a duration ago: 30m, 12h, 7d."),
    until: str | None = typer.Option(None, "--until", help="Before an ISO time (UTC) or a duration ago."),
    limit: int = typer.Option(100, "--limit", min=1, max=100_000, help="At most this many entries."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (one object per entry)."),
) -> None:
    """Show the audit log, newest first (needs an admin token)."""
    with reported_errors():
        since_t = parse_since(since, field="--since") if since else None
        until_t = parse_since(until, field="--until") if until else None
        with make_client(ctx) as client:
            entries = list(
                client.admin.audit(actor=user, action=action, vo=vo, since=since_t, until=until_t, limit=limit)
            )
    if as_json:
        print_json([MessageToDict(e, preserving_proto_field_name=True) for e in entries])
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for name in ("TIME (UTC)", "ACTOR", "VO", "ACTION", "TARGET", "DETAIL"):
        table.add_column(name, overflow="fold")
    for e in entries:
        table.add_row(format_time(e.time), cell(e.actor), cell(e.vo), cell(e.action), cell(e.target), cell(e.detail))
    console.print(table)
    if not entries:
        console.print("no audit entries match")


def register(app: typer.Typer) -> None:
    """Add ``ailuro audit``."""
    app.command("audit")(audit_command)
