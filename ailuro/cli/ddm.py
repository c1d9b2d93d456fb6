"""``ailuro ddm``: storage elements, datasets, replicas, transfers, and the DDM agent.

These commands work on the catalog in the dispatcher's database (``--db``/``AILURO_DB_URL``) and
the storage elements of the queue file (``--config``/``AILURO_QUEUES``): they are operator tools
that run next to the dispatcher, like the agent itself.
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from ailuro.cli._common import cell, console, fail, print_json, reported_errors
from ailuro.names import check_dataset, check_lfn

ddm_app = typer.Typer(help="Data management: storage elements, datasets, replicas, transfers.", no_args_is_help=True)

DB_OPT = typer.Option("sqlite:///ailuro.db", "--db", envvar="AILURO_DB_URL", help="The dispatcher's database URL.")
CONFIG_OPT = typer.Option(None, "--config", envvar="AILURO_QUEUES", help="Queue file with [[storage]] tables.")
JSON_OPT = typer.Option(False, "--json", help="Print JSON.")


def _storage(config: Path | None) -> dict[str, Any]:
    from ailuro.queues import load_storage

    return {se.name: se for se in load_storage(config)}


def _db(url: str) -> Any:
    from dispatcher.store.engine import open_database

    return open_database(url, pool_size=2)


def _table(columns: list[str], rows: list[list[Any]]) -> None:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for c in columns:
        table.add_column(c)
    for r in rows:
        table.add_row(*[cell(x) for x in r])
    console.print(table)


@ddm_app.command("se")
def list_se(config: Path | None = CONFIG_OPT, as_json: bool = JSON_OPT) -> None:
    """List the configured storage elements."""
    with reported_errors():
        ses = list(_storage(config).values())
    rows = [
        {
            "name": s.name,
            "site": s.site,
            "kind": s.kind,
            "endpoints": list(s.endpoints),
            "staging_latency_s": s.staging_latency_s,
            "max_transfers": s.max_transfers,
        }
        for s in ses
    ]
    if as_json:
        print_json(rows)
        return
    _table(
        ["SE", "SITE", "KIND", "STAGING_S", "MAX_XFERS", "ENDPOINTS"],
        [
            [r["name"], r["site"], r["kind"], r["staging_latency_s"], r["max_transfers"], " ".join(r["endpoints"])]
            for r in rows
        ],
    )


@ddm_app.command("dataset")
def dataset(
    did: str = typer.Argument("", help="scope:name (empty: list datasets)"), db: str = DB_OPT, as_json: bool = JSON_OPT
) -> None:
    """List datasets, or the files of one dataset with size and adler32."""
    from dispatcher.store import catalog

    with reported_errors():
        database = _db(db)
        with database.read() as conn:
            if not did:
                rows = [dict(r) for r in catalog.list_datasets(conn)]
            else:
                scope, name = catalog.split_did(did)
                rows = [
                    {k: r[k] for k in ("scope", "lfn", "size", "adler32", "guid")}
                    for r in catalog.dataset_files(conn, scope, name)
                ]
    if as_json:
        print_json(rows)
    elif rows:
        _table([k.upper() for k in rows[0]], [list(r.values()) for r in rows])


@ddm_app.command("replicas")
def replicas(
    did: str = typer.Argument(..., help="scope:dataset or scope:lfn"), db: str = DB_OPT, as_json: bool = JSON_OPT
) -> None:
    """Replicas (SE, state, online-until for tape) of a dataset's files or of one file."""
    from dispatcher.store import catalog

    with reported_errors():
        database = _db(db)
        with database.read() as conn:
            scope, name = catalog.split_did(did)
            file_rows = catalog.lookup_files(conn, [(scope, name)])
            files = list(file_rows.values()) or catalog.dataset_files(conn, scope, name)
            reps = catalog.replicas_of(conn, [int(f["file_id"]) for f in files])
    rows = [
        {
            "scope": f["scope"],
            "lfn": f["lfn"],
            "se": r["se"],
            "state": r["state"],
            "pfn": r["pfn"],
            "online_until": r["online_until"],
        }
        for f in files
        for r in reps.get(int(f["file_id"]), [])
    ]
    if as_json:
        print_json(rows)
    else:
        _table(
            ["LFN", "SE", "STATE", "ONLINE", "PFN"],
            [
                [r["lfn"], r["se"], r["state"], "yes" if (r["online_until"] or 0) > time.time() else "-", r["pfn"]]
                for r in rows
            ],
        )


@ddm_app.command("transfers")
def transfers(
    db: str = DB_OPT,
    state: list[str] = typer.Option([], "--state", help="Filter by state."),
    job: int = typer.Option(0, "--job", help="Requests made for this panda_id."),
    task: int = typer.Option(0, "--task", help="Requests of this task."),
    cancel: list[int] = typer.Option([], "--cancel", help="Withdraw these request ids."),
    as_json: bool = JSON_OPT,
) -> None:
    """Transfer, staging and verify requests with attempts and each one's last error; ``--cancel`` withdraws."""
    from dispatcher.store import catalog

    with reported_errors():
        database = _db(db)
        if cancel:
            with database.write() as conn:
                n = catalog.cancel_requests(conn, cancel, now=time.time(), reason="withdrawn by the operator")
            console.print(f"withdrew {n} request(s)")
            return
        with database.read() as conn:
            rows = [dict(r) for r in catalog.list_requests(conn, states=state, panda_id=job, task_id=task)]
    keys = (
        "request_id",
        "kind",
        "scope",
        "lfn",
        "source_se",
        "dest_se",
        "state",
        "attempts",
        "error_code",
        "last_error",
        "panda_id",
        "task_id",
        "activity",
    )
    rows = [{k: r[k] for k in keys} for r in rows]
    if as_json:
        print_json(rows)
    else:
        _table(
            ["ID", "KIND", "FILE", "FROM", "TO", "STATE", "TRIES", "LAST ERROR"],
            [
                [
                    r["request_id"],
                    r["kind"],
                    f"{r['scope']}:{r['lfn']}",
                    r["source_se"] or "-",
                    r["dest_se"],
                    r["state"],
                    r["attempts"],
                    (f"{r['error_code']}: " if r["error_code"] else "") + r["last_error"][:80],
                ]
                for r in rows
            ],
        )


@ddm_app.command("register")
def register_files(
    did: str = typer.Argument(..., help="scope:dataset to add the files to"),
    se: str = typer.Option(..., "--se", help="Storage element holding the files."),
    lfns: list[str] = typer.Argument(..., help="File names (they live at <endpoint>/<scope>/<lfn>)."),
    db: str = DB_OPT,
    config: Path | None = CONFIG_OPT,
    as_json: bool = JSON_OPT,
) -> None:
    """Register files already on an SE: size and adler32 are asked from the SE itself."""
    from ddm.protocols import protocol_for
    from ddm.storage import se_file_url
    from dispatcher.store import catalog

    with reported_errors():
        ses = _storage(config)
        if se not in ses:
            raise fail(f"unknown storage element {se!r}")
        scope, name = catalog.split_did(did)
        check_dataset(did, "did")  # the SDK's name rules: the catalog holds only names jobs can use
        for i, lfn in enumerate(lfns):
            check_lfn(lfn, f"lfns[{i}]")
        entries, urls = [], {}
        for lfn in lfns:
            url = se_file_url(ses[se].endpoints[0], scope=scope, lfn=lfn)
            proto = protocol_for(url)
            entries.append(
                catalog.FileEntry(
                    lfn=lfn, size=proto.stat(url).size, adler32=proto.checksum(url), guid=str(uuid.uuid4())
                )
            )
            urls[lfn] = url
        database = _db(db)
        now = time.time()
        with database.write() as conn:
            ds = catalog.ensure_dataset(conn, scope, name, now=now)
            ids = catalog.add_files(conn, scope, entries, dataset_id=ds, now=now)
            for lfn, fid in ids.items():
                catalog.set_replica(conn, fid, se, state=catalog.AVAILABLE, pfn=urls[lfn], now=now)
    out = [{"lfn": e.lfn, "size": e.size, "adler32": e.adler32, "se": se} for e in entries]
    print_json(out) if as_json else console.print(cell(f"registered {len(out)} file(s) in {did} on {se}"))


def _request_all(kind: str, did: str, se: str, db: str) -> list[int]:
    from dispatcher.store import catalog

    database = _db(db)
    scope, name = catalog.split_did(did)
    now = time.time()
    with database.write() as conn:
        files = list(catalog.lookup_files(conn, [(scope, name)]).values()) or catalog.dataset_files(conn, scope, name)
        return [
            catalog.add_request(conn, kind=kind, file_id=int(f["file_id"]), dest_se=se, now=now, activity=f"cli-{kind}")
            for f in files
        ]


@ddm_app.command("replicate")
def replicate(
    did: str = typer.Argument(..., help="scope:dataset or scope:lfn"),
    se: str = typer.Option(..., "--to", help="Destination storage element."),
    db: str = DB_OPT,
    as_json: bool = JSON_OPT,
) -> None:
    """Request copies of a dataset (or a file) on another SE; the agent runs them."""
    with reported_errors():
        ids = _request_all("transfer", did, se, db)
    print_json(ids) if as_json else console.print(f"{len(ids)} transfer request(s): {ids}")


@ddm_app.command("stage")
def stage(
    did: str = typer.Argument(..., help="scope:dataset or scope:lfn"),
    se: str = typer.Option(..., "--se", help="The tape SE to bring the files online on."),
    db: str = DB_OPT,
    config: Path | None = CONFIG_OPT,
    as_json: bool = JSON_OPT,
) -> None:
    """Bring files online on a tape SE (ready after its staging latency)."""
    with reported_errors():
        ses = _storage(config)
        if se not in ses or ses[se].kind != "tape":
            raise fail(f"{se!r} is not a configured tape storage element")
        ids = _request_all("stage", did, se, db)
    print_json(ids) if as_json else console.print(f"{len(ids)} staging request(s): {ids}")


@ddm_app.command("verify")
def verify(
    did: str = typer.Argument(..., help="scope:dataset or scope:lfn"),
    se: str = typer.Option(..., "--se", help="SE whose replicas to check."),
    db: str = DB_OPT,
    as_json: bool = JSON_OPT,
) -> None:
    """Compare replicas' adler32 at the SE with the catalog (bad ones are repaired from another copy)."""
    with reported_errors():
        ids = _request_all("verify", did, se, db)
    print_json(ids) if as_json else console.print(f"{len(ids)} verify request(s): {ids}")


@ddm_app.command("agent")
def agent(
    db: str = DB_OPT,
    config: Path | None = CONFIG_OPT,
    workers: int = typer.Option(8, "--workers", help="Requests run at once."),
    poll_s: float = typer.Option(1.0, "--poll-s", help="Pause between cycles."),
    scratch: Path = typer.Option(Path("/tmp/ailuro-ddm"), "--scratch", help="Scratch directory."),
) -> None:
    """Run the DDM agent: transfers, tape staging, verification; advances DDM jobs and tasks."""
    import signal

    from ailuro.queues import load_queues, load_storage
    from dispatcher.services.ddm import AgentConfig, DDMAgent

    with reported_errors():
        cfg = AgentConfig(
            db_url=db,
            storage=load_storage(config),
            queues=load_queues(config) if config else (),
            max_workers=workers,
            poll_s=poll_s,
            scratch_dir=scratch,
        )
        runner = DDMAgent(cfg)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    runner.run(stop)


def register(app: typer.Typer) -> None:
    """Add ``ailuro ddm ...`` to the main app."""
    app.add_typer(ddm_app, name="ddm")
