"""``ailuro demo``: the whole system on one machine, with one command.

It starts a dispatcher on SQLite, a pilot factory with the local backend serving two queues
(``CERN_LOCAL``, ``JINR_LOCAL``), generates small "megaDST" input files with known adler32 on two
``file://`` storage elements, and submits one job per input file running a real payload script
(``megadst_reco.py``). A few jobs fail on purpose (the payload exits non-zero) and one is killed
while it runs. A live table shows jobs by state per queue; the run ends with a summary and where
the outputs and logs are. Exit code 0 when the workload ended exactly as planned, 1 otherwise.

Authentication is on, as for any dispatcher: the demo's embedded issuer lives in
``<workdir>/auth`` and the demo issues itself least-privilege tokens — a ``user`` token for the
submitter, a ``factory`` token for the factory, and per queue a ``pilot`` token bound to that queue,
which the factory hands its pilots as a 0600 file.

Everything binds 127.0.0.1, lives under ``--workdir``, and is stopped at the end, also on Ctrl-C.
"""

from __future__ import annotations

import logging
import random
import shutil
import sys
import threading
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.table import Table

from ailuro.vocabulary import QUEUED_WORKER_STATES
from ailuro_cli._common import STATUS_STYLES, console, err_console

if TYPE_CHECKING:
    from ailuro.client import Client
    from ailuro.queues import QueueConfig
    from ailuro.v1 import factory_pb2_grpc, job_pb2

MARKER = ".ailuro-demo"
"""File marking a directory as the demo's own, so a re-run may clear it (and nothing else)."""

QUEUES = (("CERN_LOCAL", "CERN_EOS"), ("JINR_LOCAL", "JINR_EOS"))
"""Demo queues and the storage element each one's inputs and outputs live on."""

PAYLOAD_NAME = "megadst_reco.py"
SCOPE = "compass"
FAIL_EVERY = 20
"""One job in 20 fails on purpose (#7, #28, #47, #68, ...: both queues get some): the payload exits 3."""
FAIL_CODE = 3
KILL_INDEX = 3
"""This job runs long and is killed once it is running."""
FINAL = ("finished", "failed", "cancelled", "closed")
COLUMNS = (
    ("waiting", ("defined", "assigned", "activated")),
    ("on pilot", ("sent", "starting", "running", "holding", "transferring")),
    ("finished", ("finished",)),
    ("failed", ("failed",)),
    ("cancelled", ("cancelled", "closed")),
)


@dataclass(frozen=True, kw_only=True)
class DemoPlan:
    """The workload: how many jobs, which fail, which one is killed."""

    jobs: int
    failing: frozenset[int]
    kill: int | None

    @classmethod
    def for_jobs(cls, n: int) -> DemoPlan:
        """Fail one job in 20 (none below 8 jobs); kill job #3 (when there are more than 3)."""
        failing = frozenset(i for i in range(n) if i % FAIL_EVERY == 7 + (i // FAIL_EVERY) % 2)
        return cls(jobs=n, failing=failing, kill=KILL_INDEX if n > KILL_INDEX else None)

    def expected(self) -> dict[str, int]:
        """Final states the workload must end in."""
        cancelled = 1 if self.kill is not None else 0
        return {
            "finished": self.jobs - len(self.failing) - cancelled,
            "failed": len(self.failing),
            "cancelled": cancelled,
        }


@dataclass(kw_only=True)
class DemoState:
    """What the progress display shows, refreshed by polling the dispatcher."""

    counts: dict[str, Counter[str]] = field(default_factory=dict)
    pilots: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    """queue -> (connected pilots, running workers, queued workers)."""
    started: float = field(default_factory=time.monotonic)
    kill_sent: bool = False
    factory_error: str = ""
    """The factory's latest error (a pilot that cannot start shows up here, not as a silent hang)."""


def _payload_source() -> Path:
    """The payload script shipped with Ailuro (source tree, or the wheel's copy)."""
    here = Path(__file__).resolve()
    for candidate in (
        here.parents[1] / "examples" / "demo" / PAYLOAD_NAME,
        here.parent / "demo_assets" / PAYLOAD_NAME,
    ):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{PAYLOAD_NAME} is not installed (expected in examples/demo/)")


def prepare_workdir(workdir: Path) -> None:
    """Create the work dir, or clear a previous demo run from it; never touch a foreign directory."""
    if workdir.exists():
        if not (workdir / MARKER).exists() and any(workdir.iterdir()):
            raise typer.BadParameter(f"{workdir} exists and is not an ailuro demo directory", param_hint="--workdir")
        for name in ("ailuro.db", "ailuro.db-wal", "ailuro.db-shm", "storage", "factory", "bin"):
            path = workdir / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / MARKER).write_text("created by `ailuro demo`; safe to delete\n")


def make_inputs(storage: Path, plan: DemoPlan, *, size: int = 48 * 1024) -> list[tuple[str, str, int, str]]:
    """Write one input file per job; returns (queue, lfn, size, adler32) per job, in job order."""
    rng = random.Random(2015)  # the same files every run
    out: list[tuple[str, str, int, str]] = []
    for i in range(plan.jobs):
        queue, se = QUEUES[i % len(QUEUES)]
        lfn = f"mDST.run{281000 + i // 10}.chunk{i % 10:02d}.root"
        data = b"MDST" + rng.randbytes(size - 4)
        path = storage / se / SCOPE / lfn
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        out.append((queue, lfn, len(data), f"{zlib.adler32(data) & 0xFFFFFFFF:08x}"))
    return out


def make_jobs(inputs: list[tuple[str, str, int, str]], plan: DemoPlan, payload: Path) -> list[job_pb2.Job]:
    """One job per input file, as a physicist would submit them."""
    from ailuro.v1 import job_pb2

    se_of = dict(QUEUES)
    jobs = []
    for i, (queue, lfn, size, adler32) in enumerate(inputs):
        se = se_of[queue]
        name = f"demo.{lfn.removesuffix('.root')}"
        out_lfn = f"{name}.hist.json"
        params = f"--input {lfn} --output {out_lfn} --work-s 0.2"
        if i in plan.failing:
            params += f" --exit-code {FAIL_CODE}"
        if i == plan.kill:
            params = f"--input {lfn} --output {out_lfn} --work-s 600"
        jobs.append(
            job_pb2.Job(
                job_name=name,
                vo="compass",
                prod_source_label="user",
                transformation=str(payload),
                job_parameters=params,
                computing_site=queue,
                max_attempt=1,
                max_walltime_s=900,
                destination_se=se,
                destination_dblock="user.demo.hist",
                files=[
                    job_pb2.File(
                        lfn=lfn,
                        type=job_pb2.FILE_TYPE_INPUT,
                        scope=SCOPE,
                        dataset="compass.mDST.demo",
                        size=size,
                        adler32=adler32,
                        source_se=se,
                    ),
                    job_pb2.File(lfn=out_lfn, type=job_pb2.FILE_TYPE_OUTPUT, scope=SCOPE, dataset="user.demo.hist"),
                    job_pb2.File(
                        lfn=f"{name}.job.log.tgz", type=job_pb2.FILE_TYPE_LOG, scope=SCOPE, dataset="user.demo.log"
                    ),
                ],
            )
        )
    return jobs


def demo_queues(pilots_per_queue: int) -> tuple[QueueConfig, ...]:
    """The two demo queues: local backend, a few multi-job pilots each, quick idle exit."""
    from ailuro.queues import FactoryLimits, QueueConfig

    limits = FactoryLimits(
        max_queued=pilots_per_queue, max_total=pilots_per_queue, max_per_cycle=pilots_per_queue, idle_timeout_s=5.0
    )
    return tuple(
        QueueConfig(name=name, vos=("compass",), backend="local", factory=limits, backend_options={"kill_grace_s": 5})
        for name, _se in QUEUES
    )


def poll(
    client: Client,
    factory_stub: factory_pb2_grpc.FactoryServiceStub,
    state: DemoState,
    metadata: tuple[tuple[str, str], ...] = (),
) -> None:
    """Refresh job counts per queue and pilot counts from the dispatcher."""
    from ailuro.v1 import factory_pb2

    for queue, _se in QUEUES:
        page = client.list_page(site=queue, page_size=1)
        state.counts[queue] = Counter(page.status_counts)
    stats = factory_stub.GetQueueStats(
        factory_pb2.GetQueueStatsRequest(queues=[q for q, _ in QUEUES]), timeout=10, metadata=metadata
    )
    for s in stats.queues:
        workers = dict(s.workers)
        queued = sum(workers.get(w.value, 0) for w in QUEUED_WORKER_STATES)
        state.pilots[s.queue] = (int(s.connected_pilots), workers.get("running", 0), queued)


def render(state: DemoState, total: int) -> Table:
    """The live table: jobs by state per queue, and pilots."""
    done = sum(sum(c[s] for s in FINAL) for c in state.counts.values())
    table = Table(
        title=f"ailuro demo: {done}/{total} jobs done, {time.monotonic() - state.started:.0f} s",
        title_justify="left",
    )
    table.add_column("queue", no_wrap=True)
    for title, states in COLUMNS:
        table.add_column(title, justify="right", style=STATUS_STYLES.get(states[-1], ""))
    table.add_column("pilots", justify="right")
    totals: Counter[str] = Counter()
    for queue, _se in QUEUES:
        c = state.counts.get(queue, Counter())
        totals.update(c)
        _connected, running, queued = state.pilots.get(queue, (0, 0, 0))
        table.add_row(
            queue,
            *(str(sum(c[s] for s in states)) for _t, states in COLUMNS),
            f"{running}" + (f" +{queued} queued" if queued else ""),
        )
    table.add_row("total", *(str(sum(totals[s] for s in states)) for _t, states in COLUMNS), "", style="bold")
    if state.factory_error:
        table.caption = f"[red]factory: {state.factory_error}[/]"
    return table


def run_demo(*, workdir: Path, jobs: int, pilots_per_queue: int, timeout_s: float, out: Console, live: bool) -> int:
    """Run the demo; returns the exit code (0: the workload ended as planned)."""
    import grpc

    from ailuro.client import Client
    from ailuro.credentials import bearer_metadata, write_token_file
    from ailuro.v1 import factory_pb2_grpc
    from backends.factory import Factory, FactoryConfig
    from dispatcher.auth.config import AuthConfig
    from dispatcher.auth.minting import Minter
    from dispatcher.config import DispatcherConfig
    from dispatcher.server import run_in_thread

    workdir = workdir.resolve()
    prepare_workdir(workdir)
    plan = DemoPlan.for_jobs(jobs)
    payload = workdir / "bin" / PAYLOAD_NAME
    payload.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(_payload_source(), payload)
    payload.chmod(0o755)
    storage = workdir / "storage"
    queues = demo_queues(pilots_per_queue)

    out.print(f"[bold]ailuro demo[/] in {workdir}")
    inputs = make_inputs(storage, plan)
    out.print(f"  generated {len(inputs)} input files (megaDST-like, adler32 recorded) under {storage}")

    auth_dir = workdir / "auth"
    minter = Minter.from_state_dir(auth_dir, create=True)  # the dispatcher's embedded issuer
    user_token = minter.user("demo", "compass")
    factory_token = minter.factory("demo-factory", "compass", [q.name for q in queues])
    factory_token_file = write_token_file(workdir / "factory" / "tokens" / "factory.token", factory_token)
    dispatcher = run_in_thread(
        DispatcherConfig(
            db_url=f"sqlite:///{workdir / 'ailuro.db'}",
            host="127.0.0.1",
            port=0,
            auth=AuthConfig(state_dir=auth_dir),
            queues=queues,
            storage_root=storage,
            no_job_retry_s=1.0,
            heartbeat_flush_s=0.5,
            watchdog_interval_s=1.0,
        )
    )
    stop = threading.Event()
    factory: Factory | None = None
    factory_thread: threading.Thread | None = None
    try:
        out.print(f"  dispatcher listening on {dispatcher.address} (SQLite {workdir / 'ailuro.db'}), tokens required")
        out.print(f"  tokens from its embedded issuer ({auth_dir}): user demo, factory, a pilot token per worker")
        factory = Factory(
            FactoryConfig(
                server=dispatcher.address,
                queues=queues,
                workdir=workdir / "factory",
                factory_id="demo-factory",
                cycle_s=1.0,
                cancel_queued_after_s=0,
                pilot_args=("--heartbeat-s", "5"),
                pilot_environment={"AILURO_STORAGE_ROOT": str(storage)},
                token_file=factory_token_file,  # its pilots' tokens: one per worker from IssuePilotTokens
            )
        )
        factory_thread = threading.Thread(target=factory.run, args=(stop,), name="demo-factory", daemon=True)
        factory_thread.start()
        out.print(
            f"  factory with the local backend: queues {', '.join(q.name for q in queues)}, "
            f"up to {pilots_per_queue} pilots each"
        )

        with Client(dispatcher.address, token=user_token) as client, grpc.insecure_channel(dispatcher.address) as ch:
            ids = client.submit(make_jobs(inputs, plan, payload))
            out.print(
                f"  submitted {len(ids)} jobs ({len(plan.failing)} fail on purpose, "
                f"{'one' if plan.kill is not None else 'none'} to be killed)\n"
            )
            state = DemoState()
            finished_ok = _watch(
                client,
                factory,
                factory_pb2_grpc.FactoryServiceStub(ch),
                state,
                plan,
                ids,
                stats_metadata=bearer_metadata(factory_token),
                timeout_s=timeout_s,
                out=out,
                live=live,
            )
            final_jobs = client.get(ids)
        out.print()
        return _summary(out, plan, ids, final_jobs, workdir, storage, timed_out=not finished_ok)
    finally:
        stop.set()
        if factory_thread is not None:
            factory_thread.join(timeout=30)
        if factory is not None:
            try:
                factory.cancel_all()
            except Exception as exc:  # the dispatcher may already be unreachable on Ctrl-C
                err_console.print(f"[yellow]warning:[/] stopping pilots: {exc}")
                _cancel_pilots_locally(factory)
            factory.close()
        dispatcher.stop()


def _cancel_pilots_locally(factory: Any) -> None:
    """Stop pilots without asking the dispatcher (used when it is unreachable)."""
    for queue in factory.config.queues:
        backend = factory.backend_for(queue)
        known = getattr(backend, "known_batch_ids", None)
        if known is not None:
            backend.cancel(known())


def _watch(
    client: Client,
    factory: Any,
    factory_stub: factory_pb2_grpc.FactoryServiceStub,
    state: DemoState,
    plan: DemoPlan,
    ids: list[int],
    *,
    stats_metadata: tuple[tuple[str, str], ...] = (),
    timeout_s: float,
    out: Console,
    live: bool,
) -> bool:
    """Refresh the display until every job is final (True) or the timeout passes (False)."""
    from rich.live import Live

    from ailuro.v1 import job_pb2

    deadline = time.monotonic() + timeout_s
    kill_id = ids[plan.kill] if plan.kill is not None else None
    last_line = 0.0

    def step() -> bool:
        poll(client, factory_stub, state, stats_metadata)
        errors = sorted((r.last_error_time, r.last_error) for r in factory.reports.values() if r.last_error)
        state.factory_error = errors[-1][1] if errors else ""
        if kill_id is not None and not state.kill_sent:
            (job,) = client.get([kill_id])
            if job.status == job_pb2.JOB_STATUS_RUNNING:
                client.kill([kill_id], reason="killed while running, on purpose")
                state.kill_sent = True
        done = sum(sum(c[s] for s in FINAL) for c in state.counts.values())
        return done >= len(ids)

    if live:
        with Live(render(state, len(ids)), console=out, refresh_per_second=4) as display:
            while time.monotonic() < deadline:
                finished = step()
                display.update(render(state, len(ids)))
                if finished:
                    return True
                time.sleep(0.5)
        return False
    while time.monotonic() < deadline:
        finished = step()
        if finished or time.monotonic() - last_line >= 5:
            out.print(render(state, len(ids)))
            last_line = time.monotonic()
        if finished:
            return True
        time.sleep(0.5)
    return False


def _summary(
    out: Console,
    plan: DemoPlan,
    ids: list[int],
    jobs: list[job_pb2.Job],
    workdir: Path,
    storage: Path,
    *,
    timed_out: bool,
) -> int:
    """Print the outcome and where everything is; 0 when it matches the plan."""
    from ailuro.jobspec import status_name

    got = Counter(status_name(j.status) for j in jobs)
    expected = plan.expected()
    table = Table(title="Summary by state", title_justify="left")
    table.add_column("state")
    table.add_column("jobs", justify="right")
    table.add_column("expected", justify="right")
    for name in sorted(set(got) | set(expected)):
        style = STATUS_STYLES.get(name, "")
        ok = got.get(name, 0) == expected.get(name, 0)
        table.add_row(
            f"[{style}]{name}[/]" if style else name,
            str(got.get(name, 0)),
            str(expected.get(name, 0)) + ("" if ok else "  [red]<-[/]"),
        )
    out.print(table)

    examples = []
    for label, index in (
        ("failed on purpose", min(plan.failing) if plan.failing else None),
        ("killed while running", plan.kill),
    ):
        if index is None:
            continue
        job = jobs[index]
        err = "; ".join(f"{e.code} {e.diag}" for e in job.errors) or "no error recorded"
        examples.append(
            f"  {label}: job {job.panda_id} ({status_name(job.status)}) on {job.computing_site}, "
            f"pilot {job.pilot_id or '-'} (batch {job.batch_id or '-'}): {err}"
        )
    if examples:
        out.print("Examples:\n" + "\n".join(examples))
    outputs = sorted(storage.glob(f"*/{SCOPE}/*.hist.json"))
    logs = sorted(storage.glob(f"*/{SCOPE}/*.job.log.tgz"))
    out.print(
        f"Outputs: {len(outputs)} files under {storage}/<SE>/{SCOPE}/*.hist.json\n"
        f"Job logs: {len(logs)} tarballs under {storage}/<SE>/{SCOPE}/*.job.log.tgz\n"
        f"Pilot logs: {workdir / 'factory' / 'logs'}/<queue>/<pilot>.log\n"
        f"Database: {workdir / 'ailuro.db'}; admin token: {workdir / 'auth' / 'admin.token'}"
    )
    ok = not timed_out and all(got.get(k, 0) == v for k, v in expected.items()) and len(outputs) == expected["finished"]
    if timed_out:
        out.print("[red]demo timed out before every job ended[/]")
    out.print("[green]demo OK: the workload ended as planned[/]" if ok else "[red]demo FAILED: unexpected outcome[/]")
    return 0 if ok else 1


def register(app: typer.Typer) -> None:
    """Add ``ailuro demo`` to ``app``."""

    @app.command("demo")
    def demo(
        workdir: Path = typer.Option(Path("ailuro-demo"), "--workdir", help="Where everything is kept."),
        jobs: int = typer.Option(200, "--jobs", min=1, max=5000, help="Number of jobs (one per input file)."),
        pilots: int = typer.Option(2, "--pilots-per-queue", min=1, max=16, help="Concurrent pilots per queue."),
        timeout_s: float = typer.Option(600.0, "--timeout-s", min=10, help="Give up after this long."),
        live: bool | None = typer.Option(None, "--live/--no-live", help="Live table (default: on a terminal)."),
        verbose: bool = typer.Option(False, "--verbose", "-v", help="Show factory and dispatcher logs."),
    ) -> None:
        """Run dispatcher + pilot factory + local pilots on SQLite and a sample workload (~1 minute)."""
        logging.basicConfig(
            level=logging.INFO if verbose else logging.ERROR,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        use_live = console.is_terminal if live is None else live
        try:
            code = run_demo(
                workdir=workdir, jobs=jobs, pilots_per_queue=pilots, timeout_s=timeout_s, out=console, live=use_live
            )
        except KeyboardInterrupt:
            err_console.print("interrupted; everything was stopped")
            raise typer.Exit(130) from None
        raise typer.Exit(code)


if __name__ == "__main__":  # pragma: no cover
    _app = typer.Typer()
    register(_app)
    _app(sys.argv[1:])
