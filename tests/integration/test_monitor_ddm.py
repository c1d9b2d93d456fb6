"""The monitor's data management pages over a catalog filled by the DDM's own functions (both DBs).

The catalog is written the way the dispatcher and the DDM agent write it: files and replicas by
:mod:`dispatcher.store.catalog`, a COMPASS chain task by ``submit_task`` (its jobs wait in
``assigned`` for stage-in transfers), requests claimed and finished with leases like the agent
does. No storage is touched: the monitor only reads the catalog. Expected numbers come from what
the test wrote, not from the monitor's SQL.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from monitor_login import identities
from sqlalchemy import text

from ailuro import errorcodes
from ailuro.queues import QueueConfig, StorageElementConfig
from dispatcher.config import DispatcherConfig
from dispatcher.services.tasks import parse_task, submit_task
from dispatcher.store import catalog
from dispatcher.store.engine import open_database
from monitor.app import create_app
from monitor.config import MonitorConfig
from monitor.queries import ddm as ddmq
from monitor.sampledata import SampleSpec, generate, load_sample

HOUR = 3600.0
N_RAW = 6
AGENT = "agent-test"


@dataclass
class Catalog:
    """What the test wrote, to compare the pages with."""

    client: TestClient
    now: float
    task_id: int
    job_ids: list[int]
    requests: dict[int, dict[str, Any]]  # request_id -> expected {state, kind, source, dest, code, job, task, updated}
    raw_fids: list[int]


def _file(lfn: str, size: int) -> catalog.FileEntry:
    return catalog.FileEntry(lfn=lfn, size=size, adler32=f"{size:08x}", guid=str(uuid.uuid4()))


@pytest.fixture
def filled(db_url: str, tmp_path: Path) -> Iterator[Catalog]:
    now = time.time()
    storage = (
        StorageElementConfig(name="EOS", site="CERN", endpoints=(f"file://{tmp_path}/eos",)),
        StorageElementConfig(name="CASTOR", site="CERN", kind="tape", endpoints=(f"file://{tmp_path}/castor",)),
    )
    queues = (QueueConfig(name="CERN", vos=("compass",), input_se=("EOS",), output_se=("EOS",)),)
    config = DispatcherConfig(db_url=db_url, queues=queues, storage=storage)
    db = open_database(db_url)
    expected: dict[int, dict[str, Any]] = {}
    with db.write() as conn:
        # raw data on tape: 6 files; 2 staged (online), 1 staged but expired, 3 never staged
        ds = catalog.ensure_dataset(conn, "compass", "raw.2026", now=now - 5 * HOUR)
        ids = catalog.add_files(
            conn, "compass", [_file(f"cdr{i:03d}.raw", 1000 + i) for i in range(N_RAW)], dataset_id=ds, now=now
        )
        raw = [ids[f"cdr{i:03d}.raw"] for i in range(N_RAW)]
        for fid in raw:
            catalog.set_replica(conn, fid, "CASTOR", state=catalog.AVAILABLE, pfn=f"castor:{fid}", now=now)
        for fid in raw[:2]:
            catalog.set_online(conn, fid, "CASTOR", until=now + HOUR, now=now)
        catalog.set_online(conn, raw[2], "CASTOR", until=now - HOUR, now=now)
        # a disk copy of 3 of them: available, unverified, bad
        for fid, state in zip(raw[3:], (catalog.AVAILABLE, catalog.UNVERIFIED, catalog.BAD), strict=True):
            catalog.set_replica(conn, fid, "EOS", state=state, pfn=f"eos:{fid}", now=now)
        # a second, empty dataset (newer)
        catalog.ensure_dataset(conn, "user.alice", "empty", now=now)
    task = parse_task(
        {
            "name": "chain-1",
            "vo": "compass",
            "input_dataset": "compass:raw.2026",
            "archive_se": "CASTOR",
            "process": {"transformation": "reco.sh", "output": "{stem}.out", "output_dataset": "compass:out.2026"},
            "merge": {"transformation": "merge.sh", "output": "merged.out", "output_dataset": "compass:merged.2026"},
        },
        base_dir=tmp_path,
    )
    with db.write() as conn:
        task_id, job_ids = submit_task(conn, task, config, owner="prod", now=now)
    with db.read() as conn:
        stage_in = {int(r["request_id"]): dict(r) for r in catalog.list_requests(conn, task_id=task_id)}
    # the planner requests a stage-in transfer for every input without a usable EOS copy
    for rid, r in stage_in.items():
        expected[rid] = {
            "state": "queued",
            "kind": r["kind"],
            "source": r["source_se"],
            "dest": r["dest_se"],
            "code": 0,
            "job": int(r["panda_id"]),
            "task": task_id,
            "updated": r["updated"],
        }
    assert len(stage_in) >= 4, stage_in
    order = sorted(stage_in)
    with db.write() as conn:
        claimed = catalog.claim_requests(conn, owner=AGENT, limit=len(order), lease_s=600, now=now + 1)
        assert {int(c["request_id"]) for c in claimed} == set(order)
        # done; requeued with a checksum error (1171) and a backoff; failed for good (1099); one stays active
        assert catalog.finish_request(conn, order[0], owner=AGENT, state=catalog.DONE, now=now + 2)
        assert catalog.finish_request(
            conn,
            order[1],
            owner=AGENT,
            state=catalog.QUEUED,
            now=now + 3,
            error="adler32 mismatch at EOS: 0000abcd != 000003e9",
            code=errorcodes.CHECKSUM_MISMATCH_STAGEIN,
            next_attempt=now + 600,
        )
        assert catalog.finish_request(
            conn,
            order[2],
            owner=AGENT,
            state=catalog.FAILED,
            now=now + 4,
            error="source file does not exist",
            code=errorcodes.STAGEIN_FAILED,
        )
    for rid, state, code, t in (
        (order[0], "done", 0, now + 2),
        (order[1], "queued", errorcodes.CHECKSUM_MISMATCH_STAGEIN, now + 3),
        (order[2], "failed", errorcodes.STAGEIN_FAILED, now + 4),
    ):
        expected[rid].update(state=state, code=code, updated=t)
    for rid in order[3:]:
        expected[rid].update(state="active", updated=now + 1)
    with db.write() as conn:
        # an operator's staging request (queued), a withdrawn transfer, and an old failed verify (2 days ago)
        stage = catalog.add_request(conn, kind="stage", file_id=raw[5], dest_se="CASTOR", now=now + 5)
        cancelled = catalog.add_request(
            conn, kind="transfer", file_id=raw[0], source_se="CASTOR", dest_se="EOS-BACKUP", now=now + 6
        )
        catalog.cancel_requests(conn, [cancelled], now=now + 7)
        old = catalog.add_request(conn, kind="verify", file_id=raw[5], dest_se="EOS", now=now - 48 * HOUR)
        got = catalog.claim_requests(conn, owner=AGENT, limit=1, lease_s=60, now=now - 48 * HOUR)
        assert [int(g["request_id"]) for g in got] == [old]
        catalog.finish_request(
            conn,
            old,
            owner=AGENT,
            state=catalog.FAILED,
            now=now - 47 * HOUR,
            error="adler32 mismatch",
            code=errorcodes.CHECKSUM_MISMATCH_STAGEOUT,
        )
    base = {"job": 0, "task": 0, "code": 0}
    expected[stage] = {**base, "state": "queued", "kind": "stage", "source": "", "dest": "CASTOR", "updated": now + 5}
    expected[cancelled] = {
        **base,
        "state": "cancelled",
        "kind": "transfer",
        "source": "CASTOR",
        "dest": "EOS-BACKUP",
        "updated": now + 7,
    }
    expected[old] = {
        **base,
        "state": "failed",
        "kind": "verify",
        "source": "",
        "dest": "EOS",
        "code": errorcodes.CHECKSUM_MISMATCH_STAGEOUT,
        "updated": now - 47 * HOUR,
    }
    db.dispose()
    who = identities(tmp_path)
    app = create_app(MonitorConfig(db_url=db_url, auth=who.auth()))
    with TestClient(app, headers=who.admin()) as client:
        yield Catalog(client=client, now=now, task_id=task_id, job_ids=job_ids, requests=expected, raw_fids=raw)
    app.state.db.dispose()


def _json(client: TestClient, path: str, **params: Any) -> dict[str, Any]:
    r = client.get(path, params={**params, "json": ""})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    return r.json()


def _html(client: TestClient, path: str, **params: Any) -> str:
    r = client.get(path, params=params)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/html")
    return r.text


def _in_window(c: Catalog, hours: float) -> dict[int, dict[str, Any]]:
    since = time.time() - hours * HOUR
    return {rid: r for rid, r in c.requests.items() if r["state"] in ("queued", "active") or r["updated"] >= since - 1}


def test_datasets_page_lists_the_catalog(filled: Catalog) -> None:
    data = _json(filled.client, "/datasets/")
    assert data["page"] == "datasets" and data["source"] == "catalog"
    assert {"datasets", "source", "total", "pages", "pagenum", "limit", "filter"} <= set(data)
    assert data["total"] == 2  # outputs are registered only when jobs finish
    dids = [d["did"] for d in data["datasets"]]
    raw = next(d for d in data["datasets"] if d["did"] == "compass:raw.2026")
    assert raw["nfiles"] == N_RAW and raw["bytes"] == sum(1000 + i for i in range(N_RAW))
    reps = {r["se"]: r for r in raw["replicas"]}
    assert reps["CASTOR"] == {"se": "CASTOR", "states": {"available": N_RAW}, "online": 2, "staged": 3}
    assert reps["EOS"]["states"] == {"available": 1, "unverified": 1, "bad": 1}
    assert reps["EOS"]["online"] == 0 and reps["EOS"]["staged"] == 0
    empty = next(d for d in data["datasets"] if d["did"] == "user.alice:empty")
    assert empty["nfiles"] == 0 and empty["replicas"] == []
    # newest first, paginated, scope filter
    assert dids.index("user.alice:empty") < dids.index("compass:raw.2026")
    one = _json(filled.client, "/datasets/", limit=1, page=2)
    assert [d["did"] for d in one["datasets"]] == dids[1:2] and one["pages"] == data["total"]
    alice = _json(filled.client, "/datasets/", scope="user.alice")
    assert [d["did"] for d in alice["datasets"]] == ["user.alice:empty"] and alice["total"] == 1
    html = _html(filled.client, "/datasets/")
    assert 'id="datasets-table"' in html and "compass:raw.2026" in html and "online 2/3" in html
    assert 'href="/dataset/compass%3Araw.2026"' in html or 'href="/dataset/compass:raw.2026"' in html


def test_dataset_page_lists_files_and_replicas(filled: Catalog) -> None:
    data = _json(filled.client, "/dataset/compass:raw.2026")
    assert data["page"] == "dataset" and data["did"] == "compass:raw.2026"
    assert data["nfiles"] == N_RAW and [f["lfn"] for f in data["files"]] == [f"cdr{i:03d}.raw" for i in range(N_RAW)]
    first = data["files"][0]
    assert first["size"] == 1000 and first["adler32"] == f"{1000:08x}"
    assert [(r["se"], r["state"], r["online"]) for r in first["replicas"]] == [("CASTOR", "available", True)]
    assert [(r["se"], r["state"], r["online"]) for r in data["files"][2]["replicas"]] == [
        ("CASTOR", "available", False)
    ]
    assert {(r["se"], r["state"]) for r in data["files"][5]["replicas"]} == {("CASTOR", "available"), ("EOS", "bad")}
    assert data["files"][5]["replicas"][0]["online"] is None  # never staged
    assert {r["se"]: r["states"] for r in data["replicas"]} == {
        "CASTOR": {"available": N_RAW},
        "EOS": {"available": 1, "unverified": 1, "bad": 1},
    }
    page2 = _json(filled.client, "/dataset/compass:raw.2026", limit=4, page=2)
    assert [f["lfn"] for f in page2["files"]] == ["cdr004.raw", "cdr005.raw"] and page2["pages"] == 2
    html = _html(filled.client, "/dataset/compass:raw.2026")
    assert 'id="dataset-files"' in html and "cdr003.raw" in html and "offline (tape)" in html
    assert filled.client.get("/dataset/compass:nope", params={"json": ""}).status_code == 404
    bad = filled.client.get("/dataset/nocolon", params={"json": ""})
    assert bad.status_code == 400 and bad.json()["field"] == "dataset"


def test_transfers_counts_and_rows_are_exact(filled: Catalog) -> None:
    for hours in (12, 72):
        want = _in_window(filled, hours)
        data = _json(filled.client, "/transfers/", hours=hours)
        assert data["page"] == "transfers"
        assert {"counts", "by_state", "by_kind", "total", "requests", "pages", "pagenum", "limit", "filter"} <= set(
            data
        )
        assert data["total"] == len(want)
        assert data["by_state"] == {s: sum(1 for r in want.values() if r["state"] == s) for s in ddmq.REQUEST_STATES}
        assert data["by_kind"] == {k: sum(1 for r in want.values() if r["kind"] == k) for k in catalog.KINDS}
        cells = Counter((r["state"], r["kind"]) for r in want.values())
        assert {(s, k): n for s, per in data["counts"].items() for k, n in per.items()} == dict(cells)
        rows = {r["requestid"]: r for r in data["requests"]}
        assert set(rows) == set(want)
        for rid, r in rows.items():
            w = want[rid]
            assert (r["state"], r["kind"], r["sourcese"], r["destse"], r["errorcode"], r["pandaid"], r["taskid"]) == (
                w["state"],
                w["kind"],
                w["source"],
                w["dest"],
                w["code"],
                w["job"],
                w["task"],
            )
        # newest change first
        assert [r["requestid"] for r in data["requests"]] == sorted(
            want, key=lambda i: (want[i]["updated"], i), reverse=True
        )
    # the requeued transfer shows its attempt, next attempt and last error with the code's name
    requeued = next(r for r in _json(filled.client, "/transfers/")["requests"] if r["errorcode"] == 1171)
    assert requeued["attempts"] == 1 and requeued["state"] == "queued" and requeued["due"] is False
    assert requeued["nextattempt"] == pytest.approx(filled.now + 600)
    assert "adler32 mismatch" in requeued["lasterror"] and requeued["errorname"] == "checksum_mismatch_stagein"
    assert requeued["lfn"].startswith("cdr") and requeued["scope"] == "compass"


@pytest.mark.parametrize(
    ("params", "keep"),
    [
        ({"state": "queued"}, lambda r: r["state"] == "queued"),
        ({"state": "done|failed"}, lambda r: r["state"] in ("done", "failed")),
        ({"kind": "stage"}, lambda r: r["kind"] == "stage"),
        ({"source": "CASTOR"}, lambda r: r["source"] == "CASTOR"),
        ({"dest": "EOS-BACKUP"}, lambda r: r["dest"] == "EOS-BACKUP"),
        ({"code": "1099"}, lambda r: r["code"] == 1099),
        ({"state": "failed", "kind": "transfer"}, lambda r: r["state"] == "failed" and r["kind"] == "transfer"),
    ],
)
def test_transfer_filters_in_the_url(filled: Catalog, params: dict[str, str], keep: Any) -> None:
    want = {rid for rid, r in _in_window(filled, 72).items() if keep(r)}
    data = _json(filled.client, "/transfers/", hours=72, **params)
    assert {r["requestid"] for r in data["requests"]} == want and data["total"] == len(want)
    assert _html(filled.client, "/transfers/", hours=72, **params).count("data-requestid=") == len(want)


def test_transfers_of_a_job_a_task_and_a_dataset(filled: Catalog) -> None:
    job = next(r["job"] for r in filled.requests.values() if r["job"])
    got = _json(filled.client, "/transfers/", job=job)["requests"]
    assert {r["requestid"] for r in got} == {rid for rid, r in filled.requests.items() if r["job"] == job}
    task = _json(filled.client, "/transfers/", task=filled.task_id, hours=72)
    assert task["total"] == sum(1 for r in filled.requests.values() if r["task"] == filled.task_id)
    ds = _json(filled.client, "/transfers/", dataset="compass:raw.2026", hours=72)
    assert ds["total"] == len(_in_window(filled, 72))  # every request here is about a raw file
    assert _json(filled.client, "/transfers/", dataset="user.alice:empty")["total"] == 0
    assert _json(filled.client, "/transfers/", dataset="no:such")["requests"] == []


def test_paging_through_transfers(filled: Catalog) -> None:
    want = _json(filled.client, "/transfers/", hours=72)["requests"]
    got: list[int] = []
    for page in range(1, len(want) + 2):
        got += [r["requestid"] for r in _json(filled.client, "/transfers/", hours=72, limit=2, page=page)["requests"]]
    assert got == [r["requestid"] for r in want]


@pytest.mark.parametrize(
    ("params", "field"),
    [({"state": "bogus"}, "state"), ({"kind": "copy"}, "kind"), ({"task": "x"}, "task"), ({"dataset": "x"}, "dataset")],
)
def test_bad_transfer_filters_are_400(filled: Catalog, params: dict[str, str], field: str) -> None:
    r = filled.client.get("/transfers/", params={**params, "json": ""})
    assert r.status_code == 400 and r.json()["field"] == field


def test_job_page_shows_its_requests(filled: Catalog) -> None:
    failed = next(rid for rid, r in filled.requests.items() if r["job"] and r["code"] == 1099)
    job = filled.requests[failed]["job"]
    data = _json(filled.client, f"/job/{job}")
    assert data["ddm"]["managed"] is True and data["ddm"]["inputse"] == "EOS"
    assert [r["requestid"] for r in data["ddm"]["requests"]] == [failed]
    assert data["ddm"]["requests"][0]["lasterror"] == "source file does not exist"
    html = _html(filled.client, f"/job/{job}")
    assert 'id="job-ddm"' in html and "source file does not exist" in html and f"/transfers/?job={job}" in html


def test_tasks_page_lists_ddm_tasks(filled: Catalog) -> None:
    data = _json(filled.client, "/tasks/")
    assert [t["taskid"] for t in data["ddm_tasks"]] == [filled.task_id]
    t = data["ddm_tasks"][0]
    assert (t["name"], t["owner"], t["state"]) == ("chain-1", "prod", "processing")
    mine = [r for r in filled.requests.values() if r["task"] == filled.task_id]
    assert t["requests"] == dict(Counter(r["state"] for r in mine))
    assert {x["taskid"] for x in data["tasks"]} == {filled.task_id}  # its jobs, counted by the jobs view
    html = _html(filled.client, "/tasks/")
    assert 'id="ddm-tasks-table"' in html and f"/transfers/?task={filled.task_id}" in html


def test_nav_links_every_page(filled: Catalog) -> None:
    html = _html(filled.client, "/jobs/")
    assert 'href="/transfers/"' in html and 'href="/datasets/"' in html


def test_without_catalog_datasets_come_from_the_newest_jobs(
    db_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    spec = SampleSpec(n_jobs=300, now=time.time(), span_hours=48.0)
    load_sample(db_url, spec)
    rows = list(generate(spec))
    who = identities(tmp_path)
    app = create_app(MonitorConfig(db_url=db_url, auth=who.auth()))
    final = {"finished", "failed", "cancelled", "closed"}
    since = spec.now - 72 * HOUR
    window = [r for r in rows if r.job["status"] not in final or r.job["modification_time"] >= since]

    def expect(chosen: list[Any]) -> dict[tuple[str, str, str], int]:
        return dict(Counter((f["scope"], f["dataset"], f["type"]) for r in chosen for f in r.files if f["dataset"]))

    with TestClient(app, headers=who.admin()) as client:
        data = _json(client, "/datasets/", hours=72)
        assert data["source"] == "jobs" and data["truncated"] is False and data["jobs_scanned"] == len(window)
        assert {(d["scope"], d["dataset"], d["type"]): d["nfiles"] for d in data["datasets"]} == expect(window)
        # bounded: only the newest N jobs of the window (by last change, then PandaID) are read
        monkeypatch.setattr(ddmq, "JOB_SCAN_LIMIT", 25)
        newest = sorted(window, key=lambda r: (r.job["modification_time"], r.job["panda_id"]), reverse=True)[:25]
        small = _json(client, "/datasets/", hours=72)
        assert small["truncated"] is True and small["jobs_scanned"] == 25 and small["job_limit"] == 25
        assert {(d["scope"], d["dataset"], d["type"]): d["nfiles"] for d in small["datasets"]} == expect(newest)
        assert {(d["scope"], d["dataset"], d["type"]): d["njobs"] for d in small["datasets"]} == {
            k: len({r.job["panda_id"] for r in newest for f in r.files if (f["scope"], f["dataset"], f["type"]) == k})
            for k in expect(newest)
        }
        html = _html(client, "/datasets/", hours=72)
        assert "newest 25 jobs of this window" in html and "catalog is empty" in html
        assert _json(client, "/transfers/")["total"] == 0
    app.state.db.dispose()


def test_transfer_queries_use_their_indexes(pg_url: str) -> None:
    """On PostgreSQL, each state's window and a task's requests are index ranges (migration 0007)."""
    db = open_database(pg_url)
    try:
        with db.engine.connect() as conn:
            conn.execute(text("SET enable_seqscan = off"))
            window = conn.execute(
                text(
                    "EXPLAIN SELECT request_id FROM ddm_requests WHERE state = 'done' AND updated >= 0 "
                    "ORDER BY updated DESC, request_id DESC LIMIT 100"
                )
            ).all()
            task = conn.execute(
                text("EXPLAIN SELECT state, count(*) FROM ddm_requests WHERE task_id = 1 GROUP BY state")
            ).all()
            tasks = conn.execute(text("EXPLAIN SELECT task_id FROM ddm_tasks WHERE updated >= 0")).all()
    finally:
        db.dispose()
    assert "ix_ddm_requests_window" in " ".join(r[0] for r in window)
    assert "ix_ddm_requests_task" in " ".join(r[0] for r in task)
    assert "ix_ddm_tasks_updated" in " ".join(r[0] for r in tasks)
