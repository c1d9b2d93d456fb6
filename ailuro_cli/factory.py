"""``ailuro factory``: run the pilot factory loop, and ``ailuro factory status``.

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

from ailuro import targets
from ailuro_cli._common import console, err_console, settings

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
        factory_id: str | None = typer.Option(None, "--factory-id", help="Default: generated, kept in --workdir."),
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
        verbose: bool = typer.Option(False, "--verbose", "-v", help="Log every decision."),
    ) -> None:
        """Run the factory loop until Ctrl-C / SIGTERM (or one cycle with --once)."""
        if ctx.invoked_subcommand is not None:
            return
        from ailuro.errors import AiluroError
        from ailuro.queues import load_queues
        from backends.factory import Factory, FactoryConfig

        logging.basicConfig(
            level=logging.INFO if verbose else logging.WARNING,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        try:
            queues = load_queues(config)
        except AiluroError as exc:
            err_console.print(f"[red]error:[/] {exc}")
            raise typer.Exit(2) from None
        cfg = FactoryConfig(
            server=_server(ctx, server),
            queues=queues,
            workdir=workdir.resolve(),
            factory_id=factory_id or "",
            cycle_s=cycle_s,
            cancel_queued_after_s=cancel_queued_after_s,
            pilot_bundle_url=pilot_bundle_url,
            pilot_python=pilot_python,
        )
        factory = Factory(cfg)
        try:
            if once:
                reports = factory.run_cycle()
                for r in reports.values():
                    line = (
                        f"{r.queue}: activated {r.activated}, idle pilots {r.idle_pilots}, queued {r.queued}, "
                        f"running {r.running}, submitted {r.submitted}"
                    )
                    console.print(line + (f", [red]error: {r.last_error}[/]" if r.last_error else ""))
                return
            stop = threading.Event()

            def _stop(signum: int, _frame: FrameType | None) -> None:
                stop.set()

            signal.signal(signal.SIGINT, _stop)
            signal.signal(signal.SIGTERM, _stop)
            console.print(
                f"factory {factory.factory_id} serving {', '.join(q.name for q in queues)} "
                f"for {cfg.server} (work dir {cfg.workdir}); Ctrl-C stops"
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
                rows = collect_status(channel, queues=names, workdir=workdir)
            except grpc.RpcError as exc:
                err_console.print(f"[red]error:[/] {exc.code().name}: {exc.details()}")  # type: ignore[attr-defined]
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
            "last submission",
            "last error",
        ):
            table.add_column(col, justify="right" if col not in ("queue", "last error") else "left")
        for r in rows:
            error = f"{r.last_error} ({_ago(r.last_error_time)})" if r.last_error else r.last_worker_error
            table.add_row(
                r.queue,
                r.backend,
                str(r.activated_jobs),
                str(r.running_jobs),
                f"{r.connected_pilots} ({r.idle_pilots})",
                str(r.queued_workers),
                str(r.running_workers),
                str(r.held_workers),
                _ago(r.last_submission),
                f"[red]{error}[/]" if error else "",
            )
        console.print(table)

    app.add_typer(factory_app, name="factory")


def _ago(t: float) -> str:
    if not t:
        return "never"
    seconds = max(0, int(time.time() - t))
    if seconds < 120:
        return f"{seconds} s ago"
    if seconds < 7200:
        return f"{seconds // 60} min ago"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t))
