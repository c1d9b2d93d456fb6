"""``ailuro factory``: run the pilot factory loop; ``ailuro factory status`` and ``workers``.

The factory keeps pilots queued for the queues in ``--config`` (a ``queues.toml``), on each
queue's backend. Stopping it (Ctrl-C, SIGTERM) leaves submitted pilots running: they finish their
jobs, and a factory restarted with the same ``--workdir`` picks up their bookkeeping.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from pathlib import Path
from types import FrameType

import typer
from rich.text import Text

from ailuro import targets
from ailuro_cli._common import cell, console, err_console, settings, token_metadata

DEFAULT_WORKDIR = Path("ailuro-factory")


def _server(ctx: typer.Context, server: str | None) -> str:
    from ailuro.client import DEFAULT_SERVER

    return server or settings(ctx).server or DEFAULT_SERVER


def register(app: typer.Typer) -> None:
    """Add ``ailuro factory`` and ``ailuro factory status`` to ``app``."""
    factory_app = typer.Typer(
        help="Pilot factory: keep pilots queued for each configured queue.", no_args_is_help=False
    )

    @factory_app.callback(invoke_without_command=True)
    def run(
        ctx: typer.Context,
        config: Path | None = typer.Option(
            None, "--config", "-c", help="queues.toml (default: one LOCAL queue on the local backend)."
        ),
        server: str | None = typer.Option(None, "--server", help="Dispatcher host:port (or a comma-separated list)."),
        once: bool = typer.Option(False, "--once", help="Run one cycle and exit."),
        cycle_s: float = typer.Option(10.0, "--cycle-s", min=0.1, help="Seconds between cycles."),
        workdir: Path = typer.Option(DEFAULT_WORKDIR, "--workdir", help="Wrappers, backend state, pilot logs."),
        factory_id: str | None = typer.Option(
            None,
            "--factory-id",
            help="Which factory this is (default: generated at first start, kept in --workdir/factory-id). "
            "Workers of this id are adopted whatever the work dir.",
        ),
        secret_file: Path | None = typer.Option(
            None,
            "--secret-file",
            help="The factory's secret (created 0600 at first start; default: "
            "$AILURO_STATE_DIR or ~/.local/state/ailuro, factories/<factory id>.secret).",
        ),
        flag_after: int = typer.Option(
            5, "--flag-after-start-failures", min=0, help="Flag a queue after this many pilots in a row die at start."
        ),
        cancel_all: bool = typer.Option(
            False, "--cancel-all", help="Cancel every unfinished worker of this factory id, then exit."
        ),
        cancel_queued_after_s: float = typer.Option(
            900.0, "--cancel-queued-after-s", help="Cancel pilots queued this long for a queue with no work (0: never)."
        ),
        pilot_bundle_url: str = typer.Option(
            "",
            "--pilot-bundle-url",
            help="Dispatcher bundle server (http://host:port): pilots download the pilot from it, checked by sha256.",
        ),
        pilot_python: str = typer.Option(
            "python3", "--pilot-python", help="Python that runs a downloaded pilot bundle on the worker nodes."
        ),
        token_file: Path | None = typer.Option(
            None,
            "--token-file",
            help="The factory's own token (role factory; else $AILURO_TOKEN / $AILURO_TOKEN_FILE, "
            "or minted with --auth-dir).",
        ),
        pilot_token_dir: Path | None = typer.Option(
            None,
            "--pilot-token-dir",
            help="Static pilot tokens an admin issued, one per queue: DIR/<queue>.token (role pilot, --queue "
            "<queue>). Default: the dispatcher signs one per worker for the factory token's queues.",
        ),
        auth_dir: Path | None = typer.Option(
            None,
            "--auth-dir",
            help="On the dispatcher's account: mint the factory's and the pilots' tokens with the embedded issuer "
            "in this --auth-dir (e.g. ~/.ailuro/auth).",
        ),
        vo: str = typer.Option("ailuro", "--vo", help="VO of the factory token minted with --auth-dir."),
        verbose: bool = typer.Option(False, "--verbose", "-v", help="Log every decision."),
    ) -> None:
        """Run the factory loop until Ctrl-C / SIGTERM (or one cycle with --once)."""
        if ctx.invoked_subcommand is not None:
            return
        from ailuro.errors import AiluroError
        from ailuro.queues import load_queues
        from ailuro_cli.factory_auth import factory_tokens
        from backends.factory import Factory, FactoryConfig

        logging.basicConfig(
            level=logging.INFO if verbose else logging.WARNING,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        try:
            queues = load_queues(config)
        except AiluroError as exc:
            err_console.print(cell(f"error: {exc}", style="red"))
            raise typer.Exit(2) from None
        try:
            tokens = factory_tokens(
                queues,
                token_file=token_file,
                pilot_token_dir=pilot_token_dir,
                auth_dir=auth_dir,
                vo=vo,
                workdir=workdir,
                factory_id=factory_id or "",
            )
        except (OSError, ValueError) as exc:
            err_console.print(cell(f"error: {exc}", style="red"))
            raise typer.Exit(2) from None
        if tokens.pilot_tokens is None and not cancel_all and not _has_token(tokens.token_file):
            err_console.print(
                "warning: no factory token (--token-file, $AILURO_TOKEN, --auth-dir), so no pilot tokens: a "
                "dispatcher in token mode, the default, refuses the factory and its pilots",
                style="yellow",
                markup=False,
            )
        cfg = FactoryConfig(
            server=_server(ctx, server),
            queues=queues,
            workdir=workdir.resolve(),
            factory_id=factory_id or "",
            cycle_s=cycle_s,
            cancel_queued_after_s=cancel_queued_after_s,
            pilot_bundle_url=pilot_bundle_url,
            pilot_python=pilot_python,
            secret_file=secret_file,
            flag_after_start_failures=flag_after,
            token_file=tokens.token_file,
            pilot_tokens=tokens.pilot_tokens,
        )
        try:
            factory = Factory(cfg)
        except (AiluroError, OSError, ValueError) as exc:  # also an unreadable --token-file
            err_console.print(f"error: {exc}", style="red", markup=False)
            raise typer.Exit(2) from None
        try:
            if cancel_all:
                console.print(f"factory {factory.factory_id}: cancelled {factory.cancel_all()} worker(s)")
                return
            if once:
                reports = factory.run_cycle()
                for r in reports.values():
                    line = (
                        f"{r.queue}: activated {r.activated}, idle pilots {r.idle_pilots}, queued {r.queued}, "
                        f"running {r.running}, submitted {r.submitted}"
                    )
                    if r.start_failures:
                        line += f", {r.start_failures} pilot(s) failed at start{' (FLAGGED)' if r.flagged else ''}"
                    console.print(
                        Text.assemble(cell(line), cell(f", error: {r.last_error}", style="red") if r.last_error else "")
                    )
                return
            stop = threading.Event()

            def _stop(signum: int, _frame: FrameType | None) -> None:
                stop.set()

            signal.signal(signal.SIGINT, _stop)
            signal.signal(signal.SIGTERM, _stop)
            console.print(
                cell(
                    f"factory {factory.factory_id} serving {', '.join(q.name for q in queues)} "
                    f"for {cfg.server} (work dir {cfg.workdir}); Ctrl-C stops"
                )
            )
            factory.run(stop)
        finally:
            factory.close()

    @factory_app.command("status")
    def status(
        ctx: typer.Context,
        server: str | None = typer.Option(None, "--server", help="Dispatcher host:port (or a comma-separated list)."),
        config: Path | None = typer.Option(None, "--config", "-c", help="Only the queues in this queues.toml."),
        workdir: Path | None = typer.Option(
            None, "--workdir", help="A factory's work dir: adds its last submission error."
        ),
        as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    ) -> None:
        """Per queue: activated jobs, queued/running/held pilots, last submission, last error."""
        import grpc

        from ailuro.queues import load_queues
        from backends.status import collect_status

        names = [q.name for q in load_queues(config)] if config else []
        if workdir is None and DEFAULT_WORKDIR.is_dir():
            workdir = DEFAULT_WORKDIR
        with targets.channel(_server(ctx, server)) as channel:
            try:
                rows = collect_status(channel, queues=names, workdir=workdir, metadata=token_metadata(ctx))
            except grpc.RpcError as exc:
                details = exc.details()  # type: ignore[attr-defined]
                err_console.print(cell(f"error: {exc.code().name}: {details}", style="red"))
                raise typer.Exit(1) from None
        if as_json:
            console.print_json(json.dumps([r.as_dict() for r in rows]))
            return
        from rich.table import Table

        table = Table(title="Pilot factory status")
        for col in (
            "queue",
            "backend",
            "activated",
            "running jobs",
            "pilots (idle)",
            "queued",
            "running",
            "held",
            "start failures",
            "last submission",
            "last error",
        ):
            table.add_column(col, justify="right" if col not in ("queue", "last error") else "left")
        for r in rows:
            error = f"{r.last_error} ({_ago(r.last_error_time)})" if r.last_error else r.last_worker_error
            if r.last_worker_log and not r.last_error:
                error += f" (log: {r.last_worker_log})"
            failures = f"{r.start_failures}{' FLAGGED' if r.flagged else ''}" if r.start_failures else ""
            if r.flag_reason:
                failures += f": {r.flag_reason}"
            table.add_row(
                cell(r.queue),
                cell(r.backend),
                str(r.activated_jobs),
                str(r.running_jobs),
                f"{r.connected_pilots} ({r.idle_pilots})",
                str(r.queued_workers),
                str(r.running_workers),
                str(r.held_workers),
                cell(failures, style="red"),
                _ago(r.last_submission),
                cell(error, style="red") if error else "",
            )
        console.print(table)

    from ailuro_cli import factory_workers

    factory_workers.register(factory_app, _server)
    app.add_typer(factory_app, name="factory")


def _has_token(token_file: Path | None) -> bool:
    """Whether the factory has a token of its own (an unreadable file counts: the factory reports it)."""
    from ailuro.credentials import resolve_token

    try:
        return resolve_token(token_file=token_file) is not None
    except (OSError, ValueError):
        return True


def _ago(t: float) -> str:
    if not t:
        return "never"
    seconds = max(0, int(time.time() - t))
    if seconds < 120:
        return f"{seconds} s ago"
    if seconds < 7200:
        return f"{seconds // 60} min ago"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t))
