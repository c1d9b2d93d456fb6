"""Every monitor page and its JSON twin over a populated database (SQLite and PostgreSQL).

The database is filled with :mod:`monitor.sampledata` rows through the dispatcher's own schema and
migrations; expected numbers are computed independently from the generated rows in Python, so
the SQL (grouping sets on PostgreSQL, per-facet GROUP BY on SQLite) is checked against an oracle.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from monitor_login import identities
from sqlalchemy import insert, update

from ailuro.v1 import factory_pb2
from dispatcher.store import counters, factories
from dispatcher.store.engine import open_database
from dispatcher.store.schema import files, jobs
from monitor.app import create_app
from monitor.config import MonitorConfig
from monitor.db import MonitorDatabase
from monitor.sampledata import SampleRows, SampleSpec, generate, load_sample
from pilot.logtar import log_lfn, make_log_tarball

N_JOBS = 400
PAGES = ("/jobs/", "/tasks/", "/sites/", "/pilots/", "/errors/", "/users/", "/datasets/", "/plots/")


@dataclass
class Populated:
    """A populated database, the rows that went into it, and a client of a monitor over it."""

    url: str
    rows: list[SampleRows]
    client: TestClient
    log_job: int
    tarball: Path


@pytest.fixture
def populated(db_url: str, tmp_path: Path) -> Iterator[Populated]:
    spec = SampleSpec(n_jobs=N_JOBS, now=time.time(), span_hours=48.0)
    load_sample(db_url, spec)
    rows = list(generate(spec))
    # one job gets a real log tarball, made by the pilot's own function, at a file:// pfn
    job = next(r.job for r in rows if r.job["status"] == "failed" and r.files)
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "payload.stdout").write_text("hello from the payload\nevent 1000 done\n")
    (tmp_path / "work" / "payload.stderr").write_text("warning: something odd\n")
    lfn = log_lfn(job["job_name"])
    tarball = make_log_tarball(
        tmp_path / lfn,
        [
            (tmp_path / "work" / "payload.stdout", "payload.stdout"),
            (tmp_path / "work" / "payload.stderr", "payload.stderr"),
        ],
    )
    db = open_database(db_url)
    with db.write() as conn:
        conn.execute(
            update(files).where(files.c.panda_id == job["panda_id"], files.c.type == "log").values(pfn=tarball.as_uri())
        )
    db.dispose()
    who = identities(tmp_path)
    app = create_app(MonitorConfig(db_url=db_url, log_roots=(tmp_path,), auth=who.auth()))
    with TestClient(app, headers=who.admin()) as client:
        yield Populated(url=db_url, rows=rows, client=client, log_job=job["panda_id"], tarball=tarball)
    app.state.db.dispose()


def _get_json(client: TestClient, path: str, **params: Any) -> dict[str, Any]:
    r = client.get(path, params={**params, "json": ""})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    return r.json()


FINAL = ("finished", "failed", "cancelled", "closed")


def _in_window(p: Populated, hours: float) -> list[dict[str, Any]]:
    """The window: jobs not final yet, plus jobs that became final in the last ``hours``."""
    since = time.time() - hours * 3600
    return [r.job for r in p.rows if r.job["status"] not in FINAL or r.job["modification_time"] >= since]


@pytest.mark.parametrize("path", PAGES)
def test_every_page_renders_html_and_json_twin(populated: Populated, path: str) -> None:
    html = populated.client.get(path, params={"hours": 72})
    assert html.status_code == 200
    assert html.headers["content-type"].startswith("text/html")
    assert "<nav>" in html.text and "Ailuro" in html.text
    twin = _get_json(populated.client, path, hours=72)
    by_accept = populated.client.get(path, params={"hours": 72}, headers={"Accept": "application/json"}).json()
    page = path.strip("/")
    assert twin["page"] == page == by_accept["page"]
    assert twin["filter"]["hours"] == 72.0
    expected_keys = {
        "jobs": {"facets", "jobs", "total", "pages", "pagenum", "limit", "sort", "order"},
        "tasks": {"tasks"},
        "sites": {"sites"},
        "pilots": {"pilots", "workers", "worker_states"},
        "errors": {"errors", "jobs_scanned", "truncated"},
        "users": {"users"},
        "datasets": {"datasets", "source"},
        "plots": {"hours", "transitions_per_hour", "completions_per_hour", "failure_rate_per_hour"},
    }[page]
    assert expected_keys <= set(twin)


def test_jobs_facets_match_the_rows(populated: Populated) -> None:
    data = _get_json(populated.client, "/jobs/", hours=72)
    window = _in_window(populated, 72)
    assert data["total"] == len(window) == N_JOBS  # span 48 h: every job is in a 72 h window
    for facet, column in (
        ("computingsite", "computing_site"),
        ("jobstatus", "status"),
        ("prodsourcelabel", "prod_source_label"),
        ("produsername", "owner"),
        ("transformation", "transformation"),
    ):
        got = {f["value"]: f["count"] for f in data["facets"][facet] if f["value"] is not None}
        other = sum(f["count"] for f in data["facets"][facet] if f["value"] is None)
        want = Counter(j[column] for j in window)
        assert sum(got.values()) + other == len(window)
        for value, n in got.items():
            assert want[value] == n, (facet, value)
    counts = [f["count"] for f in data["facets"]["computingsite"]]
    assert counts == sorted(counts, reverse=True)


def test_time_window_narrows_counts(populated: Populated) -> None:
    data = _get_json(populated.client, "/jobs/", hours=6)
    want = Counter(j["status"] for j in _in_window(populated, 6))
    got = {f["value"]: f["count"] for f in data["facets"]["jobstatus"]}
    assert got == dict(want)
    assert data["total"] < N_JOBS


def test_filters_in_the_url(populated: Populated) -> None:
    window = _in_window(populated, 72)
    site = Counter(j["computing_site"] for j in window).most_common(1)[0][0]
    data = _get_json(populated.client, "/jobs/", hours=72, computingsite=site, jobstatus="failed|finished", limit=1000)
    want = [j for j in window if j["computing_site"] == site and j["status"] in ("failed", "finished")]
    assert data["total"] == len(want) > 0
    assert {j["pandaid"] for j in data["jobs"]} == {j["panda_id"] for j in want}
    assert data["filter"]["computingsite"] == [site]
    assert data["filter"]["jobstatus"] == ["failed", "finished"]
    # the facet links in the HTML carry the filters already set
    html = populated.client.get("/jobs/", params={"hours": 72, "computingsite": site}).text
    assert f"computingsite={site}" in html and "jobstatus=failed" in html


def test_task_and_user_filters(populated: Populated) -> None:
    job = populated.rows[10].job
    data = _get_json(populated.client, "/jobs/", hours=72, taskid=job["task_id"], produsername=job["owner"], limit=1000)
    want = {
        r.job["panda_id"]
        for r in populated.rows
        if r.job["task_id"] == job["task_id"] and r.job["owner"] == job["owner"]
    }
    assert {j["pandaid"] for j in data["jobs"]} == want


def test_pagination_and_sorting(populated: Populated) -> None:
    first = _get_json(populated.client, "/jobs/", hours=72, limit=7)
    second = _get_json(populated.client, "/jobs/", hours=72, limit=7, page=2)
    ids = [j["pandaid"] for j in first["jobs"]] + [j["pandaid"] for j in second["jobs"]]
    assert ids == sorted((r.job["panda_id"] for r in populated.rows), reverse=True)[:14]
    assert first["pages"] == -(-N_JOBS // 7)
    last = _get_json(populated.client, "/jobs/", hours=72, limit=7, page=first["pages"])
    assert len(last["jobs"]) == N_JOBS - 7 * (first["pages"] - 1)
    by_created = _get_json(populated.client, "/jobs/", hours=72, sort="created", order="asc", limit=50)
    created = [j["creationtime"] for j in by_created["jobs"]]
    assert created == sorted(created)
    assert created[0] == min(r.job["creation_time"] for r in populated.rows)
    html = populated.client.get("/jobs/", params={"hours": 72, "limit": 7}).text
    assert 'id="next"' in html and "page=2" in html


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"hours": "abc"}, "hours"),
        ({"hours": "0"}, "hours"),
        ({"page": "0"}, "page"),
        ({"sort": "nope"}, "sort"),
        ({"limit": "5000"}, "limit"),
    ],
)
def test_bad_parameters_are_400_with_the_field(populated: Populated, params: dict[str, str], field: str) -> None:
    r = populated.client.get("/jobs/", params={**params, "json": ""})
    assert r.status_code == 400
    assert r.json()["field"] == field
    assert populated.client.get("/jobs/", params=params).status_code == 400


def test_job_page(populated: Populated) -> None:
    rows = next(r for r in populated.rows if r.job["panda_id"] == populated.log_job)
    data = _get_json(populated.client, f"/job/{populated.log_job}")
    assert data["job"]["pandaid"] == populated.log_job
    assert data["job"]["jobstatus"] == "failed"
    assert data["job"]["computingsite"] == rows.job["computing_site"]
    assert {f["lfn"] for f in data["files"]} == {f["lfn"] for f in rows.files}
    assert [e["to"] for e in data["events"]] == [e["to_status"] for e in rows.events]
    assert len(data["errors"]) == 1 and data["errors"][0]["code"] > 0 and data["errors"][0]["component"]
    assert data["log"]["available"] is True
    html = populated.client.get(f"/job/{populated.log_job}").text
    for part in ("State history", data["errors"][0]["diag"], "/stdout", rows.job["job_name"]):
        assert part in html


def test_job_that_never_ran_shows_no_usage(populated: Populated) -> None:
    """A waiting job has no sent/start/end, CPU time or exit code: dashes, not "0s" and exit code 0."""
    dash = "\N{EN DASH}"
    waiting = next(r.job for r in populated.rows if r.job["status"] == "activated")
    html = populated.client.get(f"/job/{waiting['panda_id']}").text
    for cell in ("job-usage", "job-exit"):
        assert f'<td id="{cell}">{dash}</td>' in html, cell
    assert f"<tr><th>Sent</th><td>{dash}</td></tr>" in html
    ran = populated.client.get(f"/job/{populated.log_job}").text
    assert f'<td id="job-usage">{dash}' not in ran and f'<td id="job-exit">{dash}' not in ran
    assert '<td id="job-usage">' in ran


def test_log_download_and_stdout_view(populated: Populated) -> None:
    r = populated.client.get(f"/job/{populated.log_job}/log")
    assert r.status_code == 200
    assert r.content == populated.tarball.read_bytes()
    out = _get_json(populated.client, f"/job/{populated.log_job}/stdout")
    assert out["text"] == "hello from the payload\nevent 1000 done\n" and out["truncated"] is False
    err = populated.client.get(f"/job/{populated.log_job}/stderr")
    assert "warning: something odd" in err.text
    assert populated.client.get(f"/job/{populated.log_job}/pilotlog").status_code == 404  # not in this tarball


def test_log_pfn_outside_the_tarball_name_is_not_served(populated: Populated) -> None:
    victim = next(
        r.job for r in populated.rows if r.job["status"] == "finished" and any(f["type"] == "log" for f in r.files)
    )
    db = open_database(populated.url)
    with db.write() as conn:
        conn.execute(
            update(files)
            .where(files.c.panda_id == victim["panda_id"], files.c.type == "log")
            .values(pfn="file:///etc/passwd")
        )
    db.dispose()
    data = _get_json(populated.client, f"/job/{victim['panda_id']}")
    assert data["log"]["available"] is False and "does not name" in data["log"]["reason"]
    r = populated.client.get(f"/job/{victim['panda_id']}/log")
    assert r.status_code == 404 and b"root:" not in r.content


def test_unknown_job_is_404(populated: Populated) -> None:
    assert populated.client.get("/job/99999999?json").status_code == 404
    assert populated.client.get("/job/99999999").status_code == 404


def test_sites_page_counts(populated: Populated) -> None:
    data = _get_json(populated.client, "/sites/", hours=72)
    sites = {s["computingsite"]: s for s in data["sites"]}
    for site in {r.job["computing_site"] for r in populated.rows}:
        jobs_here = [r.job for r in populated.rows if r.job["computing_site"] == site]
        assert sites[site]["activated"] == sum(j["status"] == "activated" for j in jobs_here)
        assert sites[site]["failed"] == sum(j["status"] == "failed" for j in jobs_here)
        assert sites[site]["running"] == sum(
            j["status"] in ("sent", "starting", "running", "transferring") for j in jobs_here
        )
    assert any(s["pilots_running"] > 0 for s in data["sites"])
    assert any(s["pilots_connected"] > 0 for s in data["sites"])


def test_sites_page_flags_a_queue_whose_pilots_die_at_start(populated: Populated) -> None:
    db = open_database(populated.url)
    with db.write() as conn:
        health = factory_pb2.QueueHealth(
            queue="SICK_SITE", start_failures=7, flagged=True, last_error="ModuleNotFoundError: No module named 'x'"
        )
        factories.report_health(conn, "f1", [health], now=time.time())
    db.dispose()
    sites = {s["computingsite"]: s for s in _get_json(populated.client, "/sites/")["sites"]}
    assert sites["SICK_SITE"]["flagged"] and sites["SICK_SITE"]["start_failures"] == 7
    html = populated.client.get("/sites/").text
    assert "7 FLAGGED: ModuleNotFoundError: No module named &#39;x&#39;" in html


def test_errors_summary(populated: Populated) -> None:
    data = _get_json(populated.client, "/errors/", hours=72)
    failed = [r.job for r in populated.rows if r.job["status"] == "failed"]
    assert data["jobs_scanned"] == len(failed)
    assert sum(e["count"] for e in data["errors"]) == len(failed)
    top = data["errors"][0]
    assert top["examples"] and all(x["pandaid"] in {j["panda_id"] for j in failed} for x in top["examples"])
    assert top["name"]  # code names come from ailuro.errorcodes


def test_tasks_users_datasets(populated: Populated) -> None:
    tasks = _get_json(populated.client, "/tasks/", hours=72)["tasks"]
    assert sum(t["njobs"] for t in tasks) == N_JOBS
    users = _get_json(populated.client, "/users/", hours=72)["users"]
    assert {u["produsername"]: u["njobs"] for u in users} == dict(Counter(r.job["owner"] for r in populated.rows))
    datasets = _get_json(populated.client, "/datasets/", hours=72)["datasets"]
    want = Counter((f["scope"], f["dataset"], f["type"]) for r in populated.rows for f in r.files)
    assert {(d["scope"], d["dataset"], d["type"]): d["nfiles"] for d in datasets} == dict(want)


def test_plots_series(populated: Populated) -> None:
    data = _get_json(populated.client, "/plots/", hours=72)
    assert len(data["hours"]) in (72, 73)
    finished = sum(r.job["status"] == "finished" for r in populated.rows)
    assert sum(sum(v) for v in data["completions_per_hour"].values()) == finished
    assert sum(data["transitions_per_hour"]["defined"]) == N_JOBS
    html = populated.client.get("/plots/", params={"hours": 72}).text
    assert html.count("<svg") == 3


def test_metrics(populated: Populated) -> None:
    text = populated.client.get("/metrics").text
    running = Counter(r.job["computing_site"] for r in populated.rows if r.job["status"] == "running")
    site, n = running.most_common(1)[0]
    assert f'ailuro_jobs{{site="{site}",state="running"}} {float(n)}' in text
    assert "ailuro_pilots_connected{" in text and "ailuro_workers{" in text
    assert "ailuro_dispatch_rate_per_second" in text


def test_monitor_connection_is_read_only(populated: Populated) -> None:
    db = MonitorDatabase(populated.url)
    try:
        with pytest.raises(Exception, match=r"(?i)read.only|readonly|query_only|attempt to write"), db.read() as conn:
            conn.execute(insert(jobs).values(**{**populated.rows[0].job, "panda_id": 10**9}))
    finally:
        db.dispose()


@pytest.mark.parametrize("hours", [1, 5.5, 13, 30])
def test_counter_facets_equal_row_counts(populated: Populated, hours: float) -> None:
    """Counters (unfiltered view) and a direct count (a filter naming every site) agree, and match the rows."""
    window = _in_window(populated, hours)
    every_site = "|".join(sorted({j["computing_site"] for j in window}))
    from_counters = _get_json(populated.client, "/jobs/", hours=hours)
    from_rows = _get_json(populated.client, "/jobs/", hours=hours, computingsite=every_site)
    assert from_counters["facets"] == from_rows["facets"]
    assert from_counters["total"] == len(window)
    got = {f["value"]: f["count"] for f in from_counters["facets"]["jobstatus"]}
    assert got == dict(Counter(j["status"] for j in window))
    users = _get_json(populated.client, "/users/", hours=hours)["users"]
    assert {u["produsername"]: u["njobs"] for u in users} == dict(Counter(j["owner"] for j in window))


def test_window_keeps_unfinished_jobs_and_drops_old_endings(populated: Populated) -> None:
    """An activated job untouched for days stays visible; a job that ended 3 h ago leaves a 1 h window."""
    queued = next(r.job for r in populated.rows if r.job["status"] == "activated")
    ended = next(r.job for r in populated.rows if r.job["status"] == "failed")
    db = open_database(populated.url)
    with db.write() as conn:  # rewrite history behind the counters' back, then recount like the migration
        conn.execute(update(jobs).where(jobs.c.panda_id == queued["panda_id"]).values(modification_time=1.0e9))
        three_h = time.time() - 3 * 3600
        conn.execute(update(jobs).where(jobs.c.panda_id == ended["panda_id"]).values(modification_time=three_h))
        counters.rebuild(conn)
    db.dispose()
    one = _get_json(populated.client, "/jobs/", hours=1, limit=1000)
    ids = {j["pandaid"] for j in one["jobs"]}
    assert queued["panda_id"] in ids and ended["panda_id"] not in ids
    four = _get_json(populated.client, "/jobs/", hours=4, limit=1000)
    assert ended["panda_id"] in {j["pandaid"] for j in four["jobs"]}
    assert one["total"] == len(one["jobs"]) and four["total"] == len(four["jobs"])


def _key(job: dict[str, Any], column: str) -> tuple[bool, float]:
    """A sort key for a time column (the columns sorted here are never NULL)."""
    value = job[column]
    return (value is not None, float(value) if value is not None else 0.0)


@pytest.mark.parametrize(
    ("sort", "column"), [("created", "creation_time"), ("modified", "modification_time"), ("pandaid", "panda_id")]
)
@pytest.mark.parametrize("order", ["asc", "desc"])
@pytest.mark.parametrize("hours", [2, 30])
def test_sorted_pages_read_from_both_window_halves_are_exact(
    populated: Populated, sort: str, column: str, order: str, hours: float
) -> None:
    """Every page of a sorted list equals the same slice of the window sorted here (PandaID breaks ties)."""
    window = _in_window(populated, hours)
    want = sorted(window, key=lambda j: (_key(j, column), j["panda_id"]), reverse=order == "desc")
    want_ids = [j["panda_id"] for j in want]
    got: list[int] = []
    page = 1
    while True:
        rows = _get_json(populated.client, "/jobs/", hours=hours, sort=sort, order=order, limit=37, page=page)["jobs"]
        if not rows:
            break
        got.extend(j["pandaid"] for j in rows)
        page += 1
    assert got == want_ids
    owner = window[0]["owner"]
    mine = [pid for pid, j in zip(want_ids, want, strict=True) if j["owner"] == owner]
    rows = _get_json(populated.client, "/jobs/", hours=hours, sort=sort, order=order, produsername=owner, limit=1000)
    assert [j["pandaid"] for j in rows["jobs"]] == mine


@pytest.mark.parametrize("hours", [1.5, 13, 72])
def test_tasks_page_ranks_the_latest_tasks_exactly(populated: Populated, hours: float) -> None:
    """With a limit smaller than the number of tasks, the SQL ranking picks the same tasks as ranking them all."""
    from monitor.filters import parse_filter
    from monitor.queries import counts

    db = MonitorDatabase(populated.url)
    try:
        with db.read() as conn:
            flt = parse_filter({"hours": str(hours)})
            everything, last = counts.facet_states_last(conn, flt, "taskid")
            ranked = sorted(
                (t for t, states in everything.items() if sum(states.values())),
                key=lambda t: (-last[t], -int(t)),
            )
            for limit in (1, 3, 10, len(ranked) + 5):
                matrix, got_last = counts.latest_tasks(conn, flt, limit)
                top = sorted(matrix, key=lambda t: (-got_last[t], -int(t)))[:limit]
                assert top == ranked[:limit]
                assert {t: matrix[t] for t in top} == {t: everything[t] for t in top}
    finally:
        db.engine.dispose()
    window = _in_window(populated, hours)
    tasks = _get_json(populated.client, "/tasks/", hours=hours)["tasks"]
    assert {t["taskid"]: t["njobs"] for t in tasks} == dict(Counter(j["task_id"] for j in window))


def test_logs_are_served_only_from_configured_storage(populated: Populated) -> None:
    """Issue 12 finding 1: without --log-root/--queues the monitor used to serve any local tarball."""
    who = identities(populated.tarball.parent)
    for config in (
        MonitorConfig(db_url=populated.url, auth=who.auth()),
        MonitorConfig(db_url=populated.url, log_roots=(populated.tarball.parent / "elsewhere",), auth=who.auth()),
    ):
        app = create_app(config)
        with TestClient(app, headers=who.admin()) as web:
            data = web.get(f"/job/{populated.log_job}?json").json()
            assert data["log"]["available"] is False
            for view in ("log", "stdout"):
                r = web.get(f"/job/{populated.log_job}/{view}")
                assert r.status_code == 404 and b"hello from the payload" not in r.content
        app.state.db.dispose()
