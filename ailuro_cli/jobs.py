"""``ailuro jobs`` (an squeue-like listing) and ``ailuro job show|events|why|log|kill|retry|watch``."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import typer
from rich.table import Table
from rich.text import Text

from ailuro.display import printable
from ailuro.jobspec import FINAL_STATUSES, enum_name, job_to_dict, message_to_dict, parse_time, status_name
from ailuro.v1 import job_pb2
from ailuro_cli._common import (
    EXIT_USAGE,
    cell,
    console,
    fail,
    format_time,
    make_client,
    now,
    print_json,
    reported_errors,
    styled_status,
)

job_app = typer.Typer(help="Inspect and act on single jobs.", no_args_is_help=True)


def _split(values: list[str]) -> list[str]:
    """``--status a,b --status c`` -> ``[a, b, c]``."""
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def _totals_line(counts: dict[str, int], total: int, shown: int) -> str:
    order = [s for s in job_pb2.JobStatus.values() if s] if counts else []
    parts = [f"{counts[n]} {styled_status(n)}" for n in (status_name(s) for s in order) if counts.get(n)]
    line = f"{total} job{'s' if total != 1 else ''}"
    if parts:
        line += ": " + ", ".join(parts)
    if shown < total:
        line += f"  (showing {shown}; use --limit)"
    return line


def jobs(
    ctx: typer.Context,
    site: str = typer.Option("", "--site", help="Only this queue (computing_site)."),
    status: list[str] = typer.Option([], "--status", "-s", help="Only these states (repeatable or a,b,c)."),
    label: str = typer.Option("", "--label", help="Only this prod_source_label."),
    owner: str = typer.Option("", "--owner", help="Only jobs of this owner."),
    task: int = typer.Option(0, "--task", help="Only this task id."),
    transformation: str = typer.Option("", "--transformation", help="Only this transformation."),
    vo: str = typer.Option("", "--vo", help="Only this VO."),
    name: str = typer.Option("", "--name", help="Only this job name."),
    hours: float | None = typer.Option(None, "--hours", min=0, help="Only jobs modified in the last N hours."),
    since: str | None = typer.Option(None, "--since", help="Only jobs modified since this ISO time (UTC)."),
    limit: int = typer.Option(200, "--limit", min=1, help="Show at most this many jobs (newest first)."),
    as_json: bool = typer.Option(False, "--json", help="Print {jobs, total, status_counts} as JSON."),
) -> None:
    """List jobs, newest first, with a totals line by state."""
    with reported_errors():
        if hours is not None and since is not None:
            raise fail("--hours and --since cannot be combined", code=EXIT_USAGE)
        when = parse_time(since, field="--since") if since else None
        if hours is not None:
            when = now() - timedelta(hours=hours)
        filters: dict[str, Any] = dict(
            site=site,
            status=_split(status),
            label=label,
            owner=owner,
            task_id=task,
            transformation=transformation,
            vo=vo,
            job_name=name,
            since=when,
        )
        with make_client(ctx) as client:
            first = client.list_page(page_size=min(limit, 5000), **filters)
            found = list(first.jobs)
            token = first.next_page_token
            while token and len(found) < limit:
                page = client.list_page(page_size=min(limit - len(found), 5000), page_token=token, **filters)
                found.extend(page.jobs)
                token = page.next_page_token
    found = found[:limit]
    if as_json:
        print_json(
            {"jobs": [job_to_dict(j) for j in found], "total": first.total, "status_counts": first.status_counts}
        )
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("PANDAID", "NAME", "OWNER", "SITE", "STATUS", "PRIO", "ATTEMPT", "CREATED", "MODIFIED"):
        table.add_column(
            column,
            justify="right" if column in ("PANDAID", "PRIO", "ATTEMPT") else "left",
            no_wrap=column not in ("NAME", "SITE", "OWNER"),
        )
    for j in found:
        table.add_row(
            str(j.panda_id),
            cell(j.job_name or "-"),
            cell(j.owner or "-"),
            cell(j.computing_site or "-"),
            styled_status(status_name(j.status)),
            str(j.current_priority),
            f"{j.attempt_nr}/{j.max_attempt}",
            format_time(j.creation_time),
            format_time(j.modification_time),
        )
    if found:
        console.print(table)
    console.print(_totals_line(first.status_counts, first.total, len(found)))


def _kv(title: str, rows: list[tuple[str, str | Text]]) -> Table:
    """A key/value table; plain ``str`` values are stored text and shown through :func:`cell`
    (only ``Text`` built here, such as a coloured state, keeps its style)."""
    table = Table(title=title, title_justify="left", title_style="bold", box=None, show_header=False)
    table.add_column(style="dim")
    table.add_column(overflow="fold")
    for key, value in rows:
        table.add_row(key, value if isinstance(value, Text) else cell(value))
    return table


@job_app.command("show")
def show(
    ctx: typer.Context,
    panda_id: int = typer.Argument(..., help="The job's panda id."),
    as_json: bool = typer.Option(False, "--json", help="Print the job as JSON."),
) -> None:
    """Show one job: parameters, files, errors, metrics and times."""
    with reported_errors(), make_client(ctx) as client:
        (job,) = client.get([panda_id])
    if as_json:
        print_json(job_to_dict(job))
        return
    env = " ".join(f"{k}={v}" for k, v in sorted(job.environment.items()))
    console.print(
        _kv(
            f"Job {job.panda_id}",
            [
                ("name", job.job_name),
                ("status", Text.from_markup(styled_status(status_name(job.status)))),
                ("owner", job.owner),
                ("vo / label", f"{job.vo or '-'} / {job.prod_source_label or '-'}"),
                ("task / definition", f"{job.task_id} / {job.job_definition_id}"),
                ("site", job.computing_site or "-"),
                ("brokerage", job.brokerage_reason or "-"),
                ("transformation", job.transformation),
                ("parameters", job.job_parameters or "-"),
                ("environment", env or "-"),
                ("priority", str(job.current_priority)),
                ("attempt", f"{job.attempt_nr}/{job.max_attempt}"),
                ("resources", f"{job.cores} cores, {job.memory_mb} MiB, walltime {job.max_walltime_s} s"),
                ("destination", f"{job.destination_se or '-'} {job.destination_dblock}".rstrip()),
                ("pilot / batch / node", f"{job.pilot_id or '-'} / {job.batch_id or '-'} / {job.node or '-'}"),
                ("created", format_time(job.creation_time)),
                ("modified", format_time(job.modification_time)),
                ("started", format_time(job.start_time)),
                ("ended", format_time(job.end_time)),
            ],
        ),
    )
    m = job.metrics
    if m.walltime_s or m.cpu_time_s or m.max_rss_kb:
        console.print(
            _kv(
                "Metrics",
                [
                    ("walltime", f"{m.walltime_s:.1f} s"),
                    ("cpu time", f"{m.cpu_time_s:.1f} s"),
                    ("max rss", f"{m.max_rss_kb} KiB"),
                    ("exit code", str(m.exit_code)),
                ],
            )
        )
    if job.files:
        files = Table(title="Files", title_justify="left", title_style="bold", box=None, header_style="bold")
        for column in ("TYPE", "LFN", "DATASET", "SIZE", "ADLER32", "STATUS", "PFN"):
            files.add_column(column, overflow="fold")
        for f in job.files:
            dataset = f"{f.scope}:{f.dataset}" if f.scope and f.dataset else f.dataset
            files.add_row(
                enum_name(job_pb2.FileType.DESCRIPTOR, f.type),
                cell(f.lfn),
                cell(dataset or "-"),
                str(f.size),
                cell(f.adler32 or "-"),
                cell(f.status or "-"),
                cell(f.pfn or "-"),
            )
        console.print(files)
    if job.errors:
        errors = Table(title="Errors", title_justify="left", title_style="bold red", box=None, header_style="bold")
        for column in ("COMPONENT", "CODE", "DIAG"):
            errors.add_column(column, overflow="fold")
        for e in job.errors:
            errors.add_row(enum_name(job_pb2.ErrorComponent.DESCRIPTOR, e.component), str(e.code), cell(e.diag))
        console.print(errors)


@job_app.command("why")
def why(
    ctx: typer.Context,
    panda_id: int = typer.Argument(..., help="The job's panda id."),
    as_json: bool = typer.Option(False, "--json", help="Print the whole explanation as JSON."),
) -> None:
    """Why the job waits: per queue whether it could run and why not, its place in the claim order."""
    with reported_errors(), make_client(ctx) as client:
        answer = client.brokerage.why(panda_id)
    if as_json:
        print_json(message_to_dict(answer))
        return
    console.print(cell(f"{answer.panda_id} {answer.status} on {answer.computing_site or '-'}: {answer.summary}"))
    console.print(cell(f"brokerage: {answer.brokerage_reason or '(not brokered yet)'}"))
    console.print(cell(f"share: {answer.share_leaf} (priority {answer.share_priority:.2f}; below 1: under target)"))
    if answer.claim_position:
        console.print(cell(f"claim order: {answer.claim_position} of {answer.claim_waiting} waiting"))
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("QUEUE", "CAN RUN", "WHY NOT"):
        table.add_column(column, overflow="fold")
    for v in answer.queues:
        table.add_row(cell(v.queue), "yes" if v.can_run else "[red]no[/]", cell("; ".join(v.reasons) or "-"))
    console.print(table)
    for line in answer.advice:
        console.print(cell(f"would change it: {line}"))


def _events_table(events: list[job_pb2.JobEvent]) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("TIME", "PANDAID", "FROM", "TO", "ATTEMPT", "ACTOR", "REASON"):
        table.add_column(column, overflow="fold", no_wrap=column in ("TIME", "PANDAID", "FROM", "TO"))
    for e in events:
        table.add_row(
            format_time(e.time),
            str(e.panda_id),
            status_name(e.from_status) or "-",
            styled_status(status_name(e.to_status)),
            str(e.attempt_nr),
            cell(e.actor or "-"),
            cell(e.reason or ""),
        )
    return table


@job_app.command("events")
def events(
    ctx: typer.Context,
    panda_id: int = typer.Argument(..., help="The job's panda id."),
    as_json: bool = typer.Option(False, "--json", help="Print the events as a JSON list."),
) -> None:
    """The job's state history, oldest first."""
    with reported_errors(), make_client(ctx) as client:
        history = client.events(panda_id)
    if as_json:
        print_json([message_to_dict(e) for e in history])
        return
    console.print(_events_table(history))


@job_app.command("log")
def log(
    ctx: typer.Context,
    panda_id: int = typer.Argument(..., help="The job's panda id."),
    stderr: bool = typer.Option(False, "--stderr", help="Show the payload's stderr instead of its stdout."),
    pilot: bool = typer.Option(False, "--pilot", help="Show the pilot's log for this job."),
    member: str = typer.Option("", "--member", help="Show this file from the log tarball (by base name)."),
    output: str = typer.Option("", "--output", "-o", help="Save the whole log tarball to this path."),
) -> None:
    """The job's log: payload stdout by default, or stderr / the pilot log / the whole tarball (-o)."""
    if sum(bool(x) for x in (stderr, pilot, member, output)) > 1:
        raise fail("use only one of --stderr, --pilot, --member, --output", code=EXIT_USAGE)
    wanted = "" if output else member or ("payload.stderr" if stderr else "pilot.log" if pilot else "payload.stdout")
    with reported_errors(), make_client(ctx) as client:
        data, head = client.job_log(panda_id, member=wanted)
    if output:
        with open(output, "wb") as f:
            f.write(data)
        console.print(cell(f"saved {head.lfn} ({head.size} bytes, from {head.pfn}) to {output}"))
        return
    # the payload's output is hostile text for a terminal: control characters are shown, not sent
    # (lines and tabs are kept; -o saves the exact bytes)
    typer.echo(printable(data.decode("utf-8", errors="replace")), nl=False)


@job_app.command("debug")
def debug(
    ctx: typer.Context,
    panda_id: int = typer.Argument(..., help="The running job's panda id."),
    timeout_s: float = typer.Option(30.0, "--timeout", help="Seconds to wait for the pilot's answer (at most 120)."),
    as_json: bool = typer.Option(False, "--json", help="Print the answer as JSON."),
) -> None:
    """A snapshot of a running job's payload, taken now by its pilot: processes and output tails."""
    with reported_errors(), make_client(ctx) as client:
        answer = client.debug(panda_id, timeout_s=timeout_s)
    if as_json:
        print_json(message_to_dict(answer))
        return
    console.print(
        cell(f"job {answer.panda_id} ({status_name(answer.status)}) on pilot {answer.pilot_id} @ {answer.node}")
    )
    # the snapshot quotes the payload's output: hostile text for a terminal
    typer.echo(printable(answer.snapshot), nl=not answer.snapshot.endswith("\n"))


@job_app.command("kill")
def kill(
    ctx: typer.Context,
    panda_ids: list[int] = typer.Argument(..., help="Panda ids of the jobs to kill."),
    reason: str = typer.Option("killed by user", "--reason", help="Recorded in the job history."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as a JSON list."),
) -> None:
    """Kill jobs: queued ones are cancelled at once, running ones are killed on their pilot."""
    with reported_errors(), make_client(ctx) as client:
        results = client.kill(panda_ids, reason=reason)
    if as_json:
        print_json([message_to_dict(r) for r in results])
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("PANDAID", "STATUS", "ACCEPTED", "MESSAGE"):
        table.add_column(column)
    for r in results:
        table.add_row(
            str(r.panda_id), styled_status(status_name(r.status)), "yes" if r.accepted else "no", cell(r.message)
        )
    console.print(table)


@job_app.command("retry")
def retry(
    ctx: typer.Context,
    panda_ids: list[int] = typer.Argument(..., help="Panda ids of final failed/cancelled/closed jobs."),
    as_json: bool = typer.Option(False, "--json", help="Print [{panda_id, new_panda_id}] as JSON."),
) -> None:
    """Resubmit failed, cancelled or closed jobs as new jobs; prints old -> new ids."""
    with reported_errors(), make_client(ctx) as client:
        new_ids = client.retry(panda_ids)
    pairs = list(zip(panda_ids, new_ids, strict=True))
    if as_json:
        print_json([{"panda_id": old, "new_panda_id": new} for old, new in pairs])
        return
    for old, new in pairs:
        console.print(f"{old} -> {new}", markup=False)


@job_app.command("watch")
def watch(
    ctx: typer.Context,
    panda_ids: list[int] = typer.Argument(None, help="Jobs to watch (none: every job you can see)."),
    task: int = typer.Option(0, "--task", help="Only this task."),
    owner: str = typer.Option("", "--owner", help="Only this owner."),
    site: str = typer.Option("", "--site", help="Only this queue."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object per event (JSON lines)."),
) -> None:
    """Stream state changes as they happen, until Ctrl-C or until every watched job is final."""
    import json
    import sys

    ids = list(panda_ids or [])
    with reported_errors(), make_client(ctx) as client:
        pending: set[int] = set()
        after = 0
        if ids:
            # replay from the oldest "latest event" of the watched jobs, so a change between the
            # lookup and the stream opening is not lost (at worst an event is shown twice)
            pending = {j.panda_id for j in client.get(ids) if j.status not in FINAL_STATUSES}
            lasts = [h[-1].event_id for h in (client.events(i) for i in pending) if h]
            after = min(lasts, default=0)
            if not pending:
                console.print("all watched jobs are already final", style="dim")
                return
        try:
            for event in client.watch(panda_ids=ids, task_id=task, owner=owner, site=site, after_event_id=after):
                if as_json:
                    sys.stdout.write(json.dumps(message_to_dict(event)) + "\n")
                    sys.stdout.flush()
                else:
                    console.print(
                        Text.assemble(
                            f"{format_time(event.time)} {event.panda_id} {status_name(event.from_status) or '-'} -> ",
                            Text.from_markup(styled_status(status_name(event.to_status))),
                            " ",
                            cell(f"{event.actor} {event.reason}", style="dim"),
                        )
                    )
                if event.to_status in FINAL_STATUSES:
                    pending.discard(event.panda_id)
                    if ids and not pending:
                        return
        except KeyboardInterrupt:
            return


def register(app: typer.Typer) -> None:
    """Add ``ailuro jobs`` and the ``ailuro job ...`` group."""
    app.command("jobs")(jobs)
    app.add_typer(job_app, name="job")
