"""``ailuro task submit|list|show|retry|abort``: chained production tasks (process -> merge -> archive).

Through the dispatcher's TaskService: the dispatcher stores the task with its processing jobs (one
per input file, all carrying the ``task_id``) and adds the merge job and the archive transfer as
steps complete. ``ailuro jobs --task ID`` lists the jobs as usual.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.text import Text

from ailuro.ddm import task_from_dict, word, words
from ailuro.v1 import ddm_pb2, job_pb2
from ailuro_cli._common import cell, console, make_client, print_json, reported_errors
from ailuro_cli.ddm import JSON_OPT, _split, _table, transfer_dict, transfer_table

task_app = typer.Typer(help="Production tasks: process -> merge -> archive chains.", no_args_is_help=True)


@task_app.command("submit")
def submit(
    ctx: typer.Context,
    file: Path = typer.Argument(..., help="Task file (YAML)."),
    as_json: bool = JSON_OPT,
) -> None:
    """Submit a task: its processing jobs now, the merge and the archive when their turn comes."""
    import yaml

    with reported_errors():
        try:
            data = yaml.safe_load(file.read_text())
        except yaml.YAMLError as exc:
            from ailuro.errors import InvalidArgument

            raise InvalidArgument(f"not valid YAML: {exc}", field=str(file)) from None
        spec = task_from_dict(data, base_dir=file.resolve().parent)
        with make_client(ctx) as client:
            task_id, ids = client.tasks.submit(spec)
    if as_json:
        print_json({"task_id": task_id, "panda_ids": ids})
    else:
        console.print(f"task {task_id}: {len(ids)} processing job(s) {ids[0]}..{ids[-1]}")


@task_app.command("list")
def list_tasks(
    ctx: typer.Context,
    state: list[str] = typer.Option(
        [], "--state", help=f"Filter by state ({', '.join(words(ddm_pb2.TaskState))}); a,b or repeated."
    ),
    owner: str = typer.Option("", "--owner", help="Only this owner's tasks."),
    limit: int = typer.Option(200, "--limit", min=1, max=5000, help="At most this many (newest first)."),
    as_json: bool = JSON_OPT,
) -> None:
    """Tasks, newest first."""
    with reported_errors(), make_client(ctx) as client:
        tasks = client.tasks.list(states=_split(state), owner=owner, limit=limit)
    rows = [
        {
            "task_id": t.task_id,
            "name": t.name,
            "owner": t.owner,
            "state": word(ddm_pb2.TaskState, t.state),
            "merge_panda_id": t.merge_panda_id,
            "diag": t.diag,
        }
        for t in tasks
    ]
    if as_json:
        print_json(rows)
    else:
        _table(["TASK", "NAME", "OWNER", "STATE", "MERGE_JOB", "DIAG"], [list(r.values()) for r in rows])


@task_app.command("show")
def show(ctx: typer.Context, task_id: int = typer.Argument(..., min=1), as_json: bool = JSON_OPT) -> None:
    """A task's state, its jobs and its data requests."""
    with reported_errors(), make_client(ctx) as client:
        resp = client.tasks.get(task_id)
    t = resp.task
    info = {
        "task_id": t.task_id,
        "name": t.name,
        "owner": t.owner,
        "state": word(ddm_pb2.TaskState, t.state),
        "diag": t.diag,
        "merge_panda_id": t.merge_panda_id,
        "lost_inputs": t.spec.lost_inputs or "fail",
        "lost_files": list(t.lost_files),
        "jobs": [
            {
                "panda_id": j.panda_id,
                "job_name": j.job_name,
                "status": word(job_pb2.JobStatus, j.status),
                "computing_site": j.computing_site,
            }
            for j in resp.jobs
        ],
        "requests": [transfer_dict(r) for r in resp.requests],
    }
    if as_json:
        print_json(info)
        return
    console.print(
        Text.assemble(
            f"task {task_id} ", cell(info["name"]), ": ", cell(info["state"], style="bold"), " ", cell(info["diag"])
        )
    )
    if info["lost_files"]:
        console.print(cell(f"lost input(s) ({info['lost_inputs']}): {', '.join(info['lost_files'])}"))
    _table(["PANDA_ID", "JOB", "STATUS", "SITE"], [list(j.values()) for j in info["jobs"]])
    transfer_table(info["requests"])


@task_app.command("retry")
def retry(ctx: typer.Context, task_id: int = typer.Argument(..., min=1), as_json: bool = JSON_OPT) -> None:
    """Resubmit the failed jobs of a task's current step (or its failed archive transfer) and resume it."""
    with reported_errors(), make_client(ctx) as client:
        resp = client.tasks.retry(task_id)
    out = {
        "retried": list(resp.retried_panda_ids),
        "new_panda_ids": list(resp.new_panda_ids),
        "requeued_requests": resp.requeued_requests,
    }
    if as_json:
        print_json(out)
    elif out["retried"]:
        console.print(f"task {task_id}: retried job(s) {out['retried']} as {out['new_panda_ids']}")
    else:
        console.print(f"task {task_id}: archive transfer queued again")


@task_app.command("abort")
def abort(
    ctx: typer.Context,
    task_id: int = typer.Argument(..., min=1),
    reason: str = typer.Option("", "--reason", help="Kept in the task's diag and the jobs' errors."),
    as_json: bool = JSON_OPT,
) -> None:
    """Stop a task: kill its jobs, withdraw its data requests, create no new job."""
    with reported_errors(), make_client(ctx) as client:
        resp = client.tasks.abort(task_id, reason=reason)
    out = {"killed_jobs": resp.killed_jobs, "cancelled_requests": resp.cancelled_requests}
    if as_json:
        print_json(out)
    else:
        n, m = resp.killed_jobs, resp.cancelled_requests
        console.print(f"task {task_id} aborted: {n} job(s) killed, {m} request(s) withdrawn")


def register(app: typer.Typer) -> None:
    """Add ``ailuro task ...`` to the main app."""
    app.add_typer(task_app, name="task")
