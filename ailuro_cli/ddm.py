"""``ailuro ddm``: storage elements, datasets, replicas and transfers, through the dispatcher's DDMService.

Like every user command these talk to a dispatcher (``ailuro --server host:port ddm ...`` or
``AILURO_SERVER``); no database URL or queue file is needed on the client. The DDM agent that runs
the requests lives inside the dispatcher (``ailuro server --queues FILE`` with ``[[storage]]``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer
from google.protobuf import timestamp_pb2
from rich.table import Table

from ailuro.ddm import word, words
from ailuro.v1 import ddm_pb2
from ailuro_cli._common import EXIT_USAGE, cell, console, fail, make_client, print_json, reported_errors

ddm_app = typer.Typer(help="Data management: storage elements, datasets, replicas, transfers.", no_args_is_help=True)

JSON_OPT = typer.Option(False, "--json", help="Print JSON.")
TRANSFER_KEYS = (
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
"""Keys of one request in ``ailuro ddm transfers --json`` (and ``ailuro task show --json``)."""


def _table(columns: list[str], rows: list[list[Any]]) -> None:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for c in columns:
        table.add_column(c)
    for r in rows:
        table.add_row(*[cell(x) for x in r], end_section=False)
    console.print(table, markup=False)


def _seconds(ts: timestamp_pb2.Timestamp) -> float | None:
    return ts.seconds + ts.nanos / 1e9 if ts.seconds or ts.nanos else None


def transfer_dict(r: ddm_pb2.TransferRequest) -> dict[str, Any]:
    """A request as the JSON row the CLI prints."""
    row = {k: getattr(r, k) for k in TRANSFER_KEYS}
    row["kind"] = word(ddm_pb2.RequestKind, r.kind)
    row["state"] = word(ddm_pb2.RequestState, r.state)
    return row


def transfer_table(rows: list[dict[str, Any]]) -> None:
    """The table of requests (``ddm transfers``, ``task show``)."""
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


def _split(values: list[str]) -> list[str]:
    """``--state a,b --state c`` -> ``[a, b, c]``."""
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


def _staging(row: dict[str, Any]) -> str:
    """How a tape SE recalls files, for the table ("prepare", "delay 3600s"; "" for disk)."""
    if row["staging"] == "delay":
        return f"delay {row['staging_latency_s']:g}s"
    return row["staging"]


@ddm_app.command("se")
def list_se(ctx: typer.Context, as_json: bool = JSON_OPT) -> None:
    """List the storage elements the dispatcher is configured with."""
    with reported_errors(), make_client(ctx) as client:
        ses = client.ddm.storage_elements()
    rows = [
        {
            "name": s.name,
            "site": s.site,
            "kind": word(ddm_pb2.StorageKind, s.kind),
            "endpoints": list(s.endpoints),
            "staging": s.staging,
            "staging_latency_s": s.staging_latency_s,
            "max_transfers": s.max_transfers,
        }
        for s in ses
    ]
    if as_json:
        print_json(rows)
        return
    _table(
        ["SE", "SITE", "KIND", "STAGING", "MAX_XFERS", "ENDPOINTS"],
        [[r["name"], r["site"], r["kind"], _staging(r), r["max_transfers"], " ".join(r["endpoints"])] for r in rows],
    )


@ddm_app.command("dataset")
def dataset(
    ctx: typer.Context,
    did: str = typer.Argument("", help="scope:name (empty: list datasets)"),
    create: bool = typer.Option(False, "--create", help="Create the (empty) dataset scope:name."),
    as_json: bool = JSON_OPT,
) -> None:
    """List datasets, or the files of one dataset with size and adler32 (``--create`` makes one)."""
    with reported_errors(), make_client(ctx) as client:
        if create:
            if not did:
                raise fail("--create needs a dataset scope:name", code=EXIT_USAGE)
            ds, created = client.ddm.create_dataset(did)
            out = {"scope": ds.scope, "name": ds.name, "files": ds.file_count, "created": created}
            print_json(out) if as_json else console.print(cell(f"dataset {did} {'created' if created else 'exists'}"))
            return
        if not did:
            datasets, truncated = client.ddm.datasets()
            rows = [{"scope": d.scope, "name": d.name, "files": d.file_count} for d in datasets]
        else:
            _, files = client.ddm.dataset(did)
            truncated = False
            rows = [
                {"scope": f.scope, "lfn": f.lfn, "size": f.size, "adler32": f.adler32, "guid": f.guid} for f in files
            ]
    if as_json:
        print_json(rows)
    elif rows:
        _table([k.upper() for k in rows[0]], [list(r.values()) for r in rows])
        if truncated:
            console.print(f"(showing the first {len(rows)} datasets)")
    else:
        console.print(cell("no datasets" if not did else f"dataset {did} has no files"))


@ddm_app.command("replicas")
def replicas(
    ctx: typer.Context,
    did: str = typer.Argument(..., help="scope:dataset or scope:lfn"),
    se: str = typer.Option("", "--se", help="Only replicas on this SE."),
    as_json: bool = JSON_OPT,
) -> None:
    """Replicas (SE, state, online-until for tape) of a dataset's files or of one file."""
    with reported_errors(), make_client(ctx) as client:
        reps = client.ddm.replicas(did, storage_element=se)
    rows = [
        {
            "scope": r.scope,
            "lfn": r.lfn,
            "se": r.storage_element,
            "state": word(ddm_pb2.ReplicaState, r.state),
            "pfn": r.pfn,
            "online_until": _seconds(r.online_until),
        }
        for r in reps
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
    ctx: typer.Context,
    state: list[str] = typer.Option(
        [], "--state", help=f"Filter by state ({', '.join(words(ddm_pb2.RequestState))}); a,b or repeated."
    ),
    job: int = typer.Option(0, "--job", min=0, help="Requests made for this panda_id."),
    task: int = typer.Option(0, "--task", min=0, help="Requests of this task."),
    limit: int = typer.Option(200, "--limit", min=1, max=5000, help="At most this many (newest first)."),
    cancel: list[int] = typer.Option([], "--cancel", help="Withdraw these request ids."),
    as_json: bool = JSON_OPT,
) -> None:
    """Transfer, staging and verify requests with attempts and each one's last error; ``--cancel`` withdraws."""
    with reported_errors(), make_client(ctx) as client:
        if cancel:
            n = client.ddm.cancel(cancel, reason="withdrawn by the operator")
            console.print(f"withdrew {n} request(s)")
            return
        rows = [
            transfer_dict(r)
            for r in client.ddm.transfers(states=_split(state), panda_id=job, task_id=task, limit=limit)
        ]
    if as_json:
        print_json(rows)
    else:
        transfer_table(rows)


@ddm_app.command("requests")
def requests_progress(
    ctx: typer.Context,
    job: int = typer.Option(0, "--job", min=0, help="Requests made for this panda_id."),
    task: int = typer.Option(0, "--task", min=0, help="Requests of this task."),
    as_json: bool = JSON_OPT,
) -> None:
    """Progress of DDM requests (all, a job's or a task's): counts by state, and the open ones."""
    with reported_errors(), make_client(ctx) as client:
        rows = [transfer_dict(r) for r in client.ddm.transfers(panda_id=job, task_id=task, limit=5000)]
    counts = {s: 0 for s in words(ddm_pb2.RequestState)}
    for r in rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    ended = counts["done"] + counts["failed"] + counts["cancelled"]
    if as_json:
        print_json({"total": len(rows), "counts": counts, "open": [r for r in rows if r["state"] != "done"]})
        return
    share = f" ({100 * ended // len(rows)}% ended)" if rows else ""
    console.print(f"{len(rows)} request(s): " + ", ".join(f"{n} {s}" for s, n in counts.items()) + share)
    transfer_table([r for r in rows if r["state"] != "done"])


@ddm_app.command("register")
def register_files(
    ctx: typer.Context,
    did: str = typer.Argument(..., help="scope:dataset to add the files to"),
    se: str = typer.Option(..., "--se", help="Storage element holding the files."),
    lfns: list[str] = typer.Argument(None, help="File names (they live at <endpoint>/<scope>/<lfn>)."),
    files_from: str = typer.Option(
        "",
        "--files-from",
        help="A listing, one file a line: 'LFN SIZE ADLER32' (registered at once, verified by the agent) "
        "or 'LFN' (measured at the SE); '-' reads standard input.",
    ),
    as_json: bool = JSON_OPT,
) -> None:
    """Register files already on an SE (named: measured at the SE; --files-from: 10,000 in one call)."""
    with reported_errors():
        entries: list[Any] = list(lfns or []) + (read_listing(files_from) if files_from else [])
        if not entries:
            raise fail("name files to register, or give --files-from LISTING", code=EXIT_USAGE)
        started = time.monotonic()
        with make_client(ctx) as client:
            resp = client.ddm.register_files(did, se, entries)
        took = time.monotonic() - started
    out = [
        {"lfn": f.lfn, "size": f.size, "adler32": f.adler32, "se": se, "state": word(ddm_pb2.ReplicaState, st)}
        for f, st in zip(resp.files, resp.replica_states, strict=True)
    ]
    if as_json:
        print_json(out)
        return
    console.print(cell(f"registered {len(out)} file(s) in {did} on {se}"))
    if resp.verify_requests:
        console.print(f"{resp.verify_requests} verify request(s) queued ({took:.1f} s)")


def read_listing(source: str) -> list[dict[str, Any] | str]:
    """A ``--files-from`` listing: ``LFN SIZE ADLER32`` or ``LFN`` per line (``#`` comments, blank lines skipped)."""
    import sys

    from ailuro.errors import InvalidArgument

    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"cannot read the listing: {exc}", field="--files-from") from None
    out: list[dict[str, Any] | str] = []
    for n, line in enumerate(text.splitlines(), 1):
        words_ = line.split("#", 1)[0].split()
        if not words_:
            continue
        if len(words_) == 1:
            out.append(words_[0])
        elif len(words_) == 3 and words_[1].isdigit():
            out.append({"lfn": words_[0], "size": int(words_[1]), "adler32": words_[2]})
        else:
            raise InvalidArgument("expected 'LFN SIZE ADLER32' or 'LFN'", field=f"--files-from line {n}")
    return out


def _request(ctx: typer.Context, kind: str, did: str, se: str, as_json: bool, lifetime_s: float = 0) -> None:
    with reported_errors(), make_client(ctx) as client:
        ids = client.ddm.request(kind, did, se, lifetime_s=lifetime_s)
    noun = {"transfer": "transfer", "stage": "staging", "verify": "verify", "delete": "delete"}[kind]
    print_json(ids) if as_json else console.print(f"{len(ids)} {noun} request(s): {ids}")


@ddm_app.command("replicate")
def replicate(
    ctx: typer.Context,
    did: str = typer.Argument(..., help="scope:dataset or scope:lfn"),
    se: str = typer.Option(..., "--to", help="Destination storage element."),
    lifetime: float = typer.Option(0, "--lifetime", min=0, help="Seconds after which the copies are deleted."),
    as_json: bool = JSON_OPT,
) -> None:
    """Request copies of a dataset (or a file) on another SE; the dispatcher's DDM agent runs them."""
    _request(ctx, "transfer", did, se, as_json, lifetime_s=lifetime)


@ddm_app.command("stage")
def stage(
    ctx: typer.Context,
    did: str = typer.Argument(..., help="scope:dataset or scope:lfn"),
    se: str = typer.Option(..., "--se", help="The tape SE to bring the files online on."),
    as_json: bool = JSON_OPT,
) -> None:
    """Bring files online on a tape SE (ready after its staging latency)."""
    _request(ctx, "stage", did, se, as_json)


@ddm_app.command("verify")
def verify(
    ctx: typer.Context,
    did: str = typer.Argument(..., help="scope:dataset or scope:lfn"),
    se: str = typer.Option(..., "--se", help="SE whose replicas to check."),
    as_json: bool = JSON_OPT,
) -> None:
    """Compare replicas' adler32 at the SE with the catalog (bad ones are repaired from another copy)."""
    _request(ctx, "verify", did, se, as_json)


@ddm_app.command("delete")
def delete(
    ctx: typer.Context,
    did: str = typer.Argument(..., help="scope:dataset or scope:lfn"),
    se: str = typer.Option(..., "--se", help="SE whose replicas to delete."),
    as_json: bool = JSON_OPT,
) -> None:
    """Delete replicas on one SE, at the SE and in the catalog (never a file's last available one)."""
    _request(ctx, "delete", did, se, as_json)


def register(app: typer.Typer) -> None:
    """Add ``ailuro ddm ...`` to the main app."""
    app.add_typer(ddm_app, name="ddm")
