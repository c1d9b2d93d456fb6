"""``ailuro task submit FILE`` / ``ailuro task show ID``: chained production tasks (process -> merge -> archive).

A task is stored in the dispatcher's database with its processing jobs (one per input file, all
carrying the ``task_id``); the DDM agent adds the merge job and the archive transfer as steps
complete. ``ailuro jobs --task ID`` lists the jobs through the dispatcher as usual.
"""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.text import Text

from ailuro.cli._common import cell, console, print_json, reported_errors, settings
from ailuro.cli.ddm import CONFIG_OPT, DB_OPT, JSON_OPT, _db, _table

task_app = typer.Typer(help="Production tasks: process -> merge -> archive chains.", no_args_is_help=True)


@task_app.command("submit")
def submit(
    ctx: typer.Context,
    file: Path = typer.Argument(..., help="Task file (YAML)."),
    db: str = DB_OPT,
    config: Path | None = CONFIG_OPT,
    as_json: bool = JSON_OPT,
) -> None:
    """Submit a task: its processing jobs now, the merge and the archive when their turn comes."""
    import yaml

    from ailuro.queues import load_queues, load_storage
    from dispatcher.config import DispatcherConfig
    from dispatcher.services.tasks import parse_task, submit_task

    with reported_errors():
        task = parse_task(yaml.safe_load(file.read_text()), base_dir=file.resolve().parent)
        dconf = DispatcherConfig(queues=load_queues(config), storage=load_storage(config))
        database = _db(db)
        owner = settings(ctx).user or "anonymous"
        with database.write() as conn:
            task_id, ids = submit_task(conn, task, dconf, owner=owner, now=time.time())
    if as_json:
        print_json({"task_id": task_id, "panda_ids": ids})
    else:
        console.print(f"task {task_id}: {len(ids)} processing job(s) {ids[0]}..{ids[-1]}")


@task_app.command("show")
def show(task_id: int = typer.Argument(...), db: str = DB_OPT, as_json: bool = JSON_OPT) -> None:
    """A task's state, its jobs and its data requests."""
    from dispatcher.services.tasks import get_task

    with reported_errors(), _db(db).read() as conn:
        info = get_task(conn, task_id)
    if as_json:
        print_json(info)
        return
    console.print(
        Text.assemble(
            f"task {task_id} ", cell(info["name"]), ": ", cell(info["state"], style="bold"), " ", cell(info["diag"])
        )
    )
    _table(["PANDA_ID", "JOB", "STATUS", "SITE"], [list(j.values()) for j in info["jobs"]])
    _table(
        ["REQ", "KIND", "LFN", "FROM", "TO", "STATE", "TRIES", "LAST ERROR"],
        [list(r.values()) for r in info["requests"]],
    )


def register(app: typer.Typer) -> None:
    """Add ``ailuro task ...`` to the main app."""
    app.add_typer(task_app, name="task")
