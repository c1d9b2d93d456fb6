"""``ailuro factory workers``: every worker (batch job running a pilot) the dispatcher knows.

One row per worker: its factory, queue, batch state and id, the node its pilot runs on, the job
it holds, and where its log is. Workers of a factory id no running factory serves (a factory
restarted with another ``--workdir`` got a new id) show up here with their old factory id:
``ailuro factory --factory-id <old id> --once`` adopts them, ``--cancel-all`` removes them.
"""

from __future__ import annotations

from collections.abc import Callable

import typer

from ailuro import targets


def register(factory_app: typer.Typer, server_of: Callable[[typer.Context, str | None], str]) -> None:
    """Add ``workers`` to the ``ailuro factory`` group; ``server_of(ctx, server)`` resolves the address."""

    @factory_app.command("workers")
    def workers(
        ctx: typer.Context,
        server: str | None = typer.Option(None, "--server", help="Dispatcher host:port (or a comma-separated list)."),
        queue: str = typer.Option("", "--queue", "-q", help="Only this queue."),
        factory_id: str = typer.Option("", "--factory-id", help="Only this factory's workers."),
        include_final: bool = typer.Option(False, "--all", "-a", help="Also ended workers (finished, failed, ...)."),
        limit: int = typer.Option(200, "--limit", min=1, max=5000, help="At most this many, newest first."),
        as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    ) -> None:
        """List workers: factory, queue, state, batch id, node, current job, log path, diag."""
        import grpc
        from rich.markup import escape
        from rich.table import Table

        from ailuro.v1 import factory_pb2, factory_pb2_grpc
        from ailuro_cli._common import console, err_console, print_json, token_metadata
        from backends.base import WorkerState

        request = factory_pb2.ListWorkersRequest(
            queue=queue, factory_id=factory_id, include_final=include_final, limit=limit
        )
        with targets.channel(server_of(ctx, server)) as channel:
            try:
                stub = factory_pb2_grpc.FactoryServiceStub(channel)
                listed = stub.ListWorkers(request, timeout=30, metadata=token_metadata(ctx))
            except grpc.RpcError as exc:
                err_console.print(f"error: {exc.code().name}: {exc.details()}", style="red", markup=False)  # type: ignore[attr-defined]
                raise typer.Exit(1) from None
        rows = [
            {
                "worker_id": w.worker_id,
                "factory_id": w.factory_id,
                "queue": w.queue,
                "backend": w.backend,
                "state": WorkerState.from_proto(w.state).value,
                "batch_id": w.batch_id,
                "node": w.node,
                "panda_id": w.current_panda_id,
                "log_path": w.log_path,
                "diag": w.diag,
                "submit_time": w.submit_time.ToSeconds(),
            }
            for w in listed.workers
        ]
        if as_json:
            print_json(rows)
            return
        table = Table(title=f"{len(rows)} worker(s)")
        for col in ("worker", "factory", "queue", "state", "batch id", "node", "job", "log", "diag"):
            table.add_column(col, overflow="fold")
        for r in rows:
            cells = (
                r["worker_id"],
                r["factory_id"],
                r["queue"],
                r["state"],
                r["batch_id"],
                r["node"],
                str(r["panda_id"] or ""),
                r["log_path"],
                r["diag"],
            )
            table.add_row(*(escape(str(c)) for c in cells))
        console.print(table)
