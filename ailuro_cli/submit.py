"""``ailuro submit``: one job from flags, many from a YAML/JSON file, or one per line of a file list."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ailuro.errors import InvalidArgument
from ailuro.v1 import job_pb2
from ailuro_cli._common import EXIT_USAGE, console, err_console, fail, make_client, print_json, reported_errors

_FILE_HELP = "Jobs file (YAML or JSON): a list of job mappings, or {defaults: {...}, jobs: [...]}."
_EACH_HELP = "File list: one job per non-empty line, the line being the input LFN ({} / {lfn} in --params)."


def _env(pairs: list[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidArgument(f"expected KEY=VALUE, got {pair!r}", field="--env")
        env[key] = value
    return env


def _flag_fields(**flags: Any) -> dict[str, Any]:
    """The job keys the user actually gave on the command line (unset flags are left out)."""
    return {k: v for k, v in flags.items() if v not in (None, [], {}, "")}


def submit(
    ctx: typer.Context,
    transformation: str | None = typer.Option(None, "--transformation", "-t", help="Payload executable or script."),
    params: str | None = typer.Option(None, "--params", "-p", help="Argument string for the payload."),
    site: str | None = typer.Option(None, "--site", help="Queue (computing_site); default: brokerage chooses."),
    name: str | None = typer.Option(None, "--name", help="Job name (with --count/--each-line: <name>_<n>)."),
    priority: int | None = typer.Option(None, "--priority", help="current_priority (higher runs first)."),
    label: str | None = typer.Option(None, "--label", help="prod_source_label: user, managed, test, ..."),
    vo: str | None = typer.Option(None, "--vo", help="Virtual organisation."),
    task_id: int | None = typer.Option(None, "--task-id", help="Task id the jobs belong to."),
    cores: int | None = typer.Option(None, "--cores", help="Cores the payload needs."),
    memory_mb: int | None = typer.Option(None, "--memory-mb", help="Memory limit in MiB."),
    walltime_s: int | None = typer.Option(None, "--walltime-s", help="Wall-clock limit in seconds."),
    disk_mb: int | None = typer.Option(None, "--disk-mb", help="Scratch disk the payload needs, MiB."),
    tags: list[str] = typer.Option([], "--tag", help="Feature the worker must have, e.g. gpu (repeatable)."),
    max_attempt: int | None = typer.Option(None, "--max-attempt", help="Attempts for retryable failures."),
    env: list[str] = typer.Option([], "--env", "-e", help="Environment variable KEY=VALUE (repeatable)."),
    inputs: list[str] = typer.Option([], "--input", help="Input file LFN (repeatable)."),
    outputs: list[str] = typer.Option([], "--output", help="Output file LFN (repeatable)."),
    destination_se: str | None = typer.Option(None, "--destination-se", help="Storage element for outputs."),
    count: int = typer.Option(1, "--count", "-n", min=1, help="Submit N copies of the job."),
    jobs_file: Path | None = typer.Option(None, "--file", "-f", help=_FILE_HELP),
    each_line: Path | None = typer.Option(None, "--each-line", help=_EACH_HELP),
    request_id: str | None = typer.Option(
        None, "--request-id", help="Idempotency key: re-running submits nothing new."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the jobs as JSON instead of submitting them."),
    as_json: bool = typer.Option(False, "--json", help="Print the panda ids as a JSON list."),
) -> None:
    """Submit jobs; prints one panda id per line.

    Flags describe one job. With --file they are defaults for every job in the file (a job's own
    keys win); with --each-line they are the template of every job.
    """
    from ailuro.jobspec import job_from_dict, job_to_dict, jobs_for_each_line, load_jobs_file

    with reported_errors():
        if jobs_file is not None and each_line is not None:
            raise fail("--file and --each-line cannot be combined", code=EXIT_USAGE)
        files = [{"lfn": lfn, "type": "input"} for lfn in inputs] + [{"lfn": lfn, "type": "output"} for lfn in outputs]
        flags = _flag_fields(
            transformation=transformation,
            job_parameters=params,
            computing_site=site,
            job_name=name,
            current_priority=priority,
            prod_source_label=label,
            vo=vo,
            task_id=task_id,
            cores=cores,
            memory_mb=memory_mb,
            max_walltime_s=walltime_s,
            disk_mb=disk_mb,
            tags=tags,
            max_attempt=max_attempt,
            environment=_env(env),
            files=files,
            destination_se=destination_se,
        )
        jobs: list[job_pb2.Job]
        if jobs_file is not None:
            jobs = load_jobs_file(jobs_file, overrides=flags)
        elif each_line is not None:
            lines = each_line.read_text(encoding="utf-8").splitlines()
            jobs = jobs_for_each_line(lines, template=flags)
        else:
            base = job_from_dict(flags, field="jobs[0]")
            jobs = [base]
            if count > 1:
                stem = base.job_name or "job"
                jobs = []
                for n in range(1, count + 1):
                    copy = job_pb2.Job()
                    copy.CopyFrom(base)
                    copy.job_name = f"{stem}_{n}"
                    jobs.append(copy)
        if count > 1 and (jobs_file is not None or each_line is not None):
            raise fail("--count applies to a job given by flags only", code=EXIT_USAGE)
        if dry_run:
            print_json([job_to_dict(j) for j in jobs])
            return
        with make_client(ctx) as client:
            ids = client.submit(jobs, request_id=request_id)
    if as_json:
        print_json(ids)
        return
    for panda_id in ids:
        console.print(str(panda_id), markup=False)
    if len(ids) > 1:
        err_console.print(f"submitted {len(ids)} jobs", style="green")


def register(app: typer.Typer) -> None:
    """Add ``ailuro submit``."""
    app.command("submit")(submit)
