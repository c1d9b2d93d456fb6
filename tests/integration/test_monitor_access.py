"""Who sees what on the monitor: every page and its JSON twin for every kind of viewer (issue 14).

Two VOs share one database: ``alpha`` (user alice, queue ALPHA_SITE) and ``beta`` (user bob,
queue BETA_SITE). Viewers are real: tokens of the dispatcher's embedded issuer, made in the test;
HTML pages are asked with the session cookie of a login through the form, JSON twins with
``Authorization: Bearer`` (as scripts do). The expected status of each page for each viewer is
the literal table :data:`MATRIX`; every 200 answer of one VO's viewer is also searched for the
other VO's job ids, job names, users, sites and pilots, which must never appear.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from monitor_login import Identities, identities

from ailuro.queues import QueueConfig
from ailuro.v1 import job_pb2
from dispatcher.store import audit, counters
from dispatcher.store.engine import open_database
from dispatcher.store.schema import files, job_events, jobs, pilots, workers
from monitor.app import create_app
from monitor.config import MonitorConfig
from monitor.sampledata import SampleSpec, generate
from pilot.logtar import make_log_tarball

A_IDS = tuple(range(7_100_001, 7_100_009))
B_IDS = tuple(range(8_200_001, 8_200_005))
A_TASK, B_TASK = 7_100_900, 8_200_900
A_LOG_JOB = A_IDS[0]
SECRET_VALUE = "s3cr3t-env-value-do-not-show"
"""An environment value of one alpha job: no page shows job environments, to anyone."""

# page → URL (the {placeholders} are VO alpha's things). Columns: the answer to the HTML page /
# its JSON twin for each viewer. 302 = to the login page; 303 = the search found exactly one thing.
PAGES = {
    "jobs": "/jobs/?hours=72",
    "job": f"/job/{A_IDS[0]}",
    "log": f"/job/{A_LOG_JOB}/stdout",
    "tasks": "/tasks/?hours=72",
    "task": f"/task/{A_TASK}",
    "sites": "/sites/?hours=72",
    "site": "/site/ALPHA_SITE?hours=72",
    "pilots": "/pilots/?hours=72",
    "pilot": "/pilot/pilot-alpha-1",
    "worker": "/worker/w-alpha-1",
    "errors": "/errors/?hours=72",
    "users": "/users/?hours=72",
    "datasets": "/datasets/?hours=72",
    "transfers": "/transfers/?hours=72",
    "plots": "/plots/?hours=72",
    "search": "/search/?q=alpha-secret-job-1",
    "audit": "/audit/",
    "metrics": "/metrics",
}
MATRIX = """
page       anonymous  alice_A  bob_B    admin    public_A
jobs       302/401    200/200  200/200  200/200  200/200
job        302/401    200/200  404/404  200/200  200/200
log        302/401    200/200  404/404  200/200  302/401
tasks      302/401    200/200  200/200  200/200  200/200
task       302/401    200/200  404/404  200/200  200/200
sites      302/401    200/200  200/200  200/200  200/200
site       302/401    200/200  404/404  200/200  200/200
pilots     302/401    200/200  200/200  200/200  200/200
pilot      302/401    200/200  404/404  200/200  200/200
worker     302/401    200/200  404/404  200/200  200/200
errors     302/401    200/200  200/200  200/200  200/200
users      302/401    200/200  200/200  200/200  200/200
datasets   302/401    200/200  200/200  200/200  200/200
transfers  302/401    200/200  200/200  200/200  200/200
plots      302/401    200/200  200/200  200/200  200/200
search     302/401    303/200  200/200  303/200  303/200
audit      302/401    403/403  403/403  200/200  302/401
metrics    302/401    403/403  403/403  200/200  302/401
"""
VIEWERS = MATRIX.split()[1:6]


def _table() -> list[tuple[str, str, int, int]]:
    lines = [line.split() for line in MATRIX.strip().splitlines()[1:]]
    out = []
    for page, *cells in lines:
        for viewer, cell in zip(VIEWERS, cells, strict=True):
            html, json = cell.split("/")
            out.append((page, viewer, int(html), int(json)))
    return out


A_SECRETS = (
    *(str(i) for i in A_IDS),
    "alpha-secret-job",
    "alice",
    "ALPHA_SITE",
    "pilot-alpha",
    "w-alpha",
    "alpha.dataset",
)
B_SECRETS = (*(str(i) for i in B_IDS), "beta-job", "bob", "BETA_SITE", "pilot-beta", "w-beta", "beta.dataset")


@dataclass
class World:
    """Two VOs' jobs in one database, a monitor over it, a public one, and the viewers' clients."""

    db_url: str
    ids: Identities
    closed: TestClient
    public: TestClient
    html: dict[str, TestClient]
    json_headers: dict[str, dict[str, str]]


def _rows(vo: str, ids: tuple[int, ...], *, now: float) -> tuple[list[Any], list[Any], list[Any]]:
    """Sample rows rewritten to one VO: its own ids, names, user, task, site, pilot and datasets."""
    tag = {"alpha": ("alpha-secret-job", "alice", A_TASK, "ALPHA_SITE", "pilot-alpha-1")}.get(
        vo, ("beta-job", "bob", B_TASK, "BETA_SITE", "pilot-beta-1")
    )
    name, owner, task, site, pilot = tag
    sample = list(generate(SampleSpec(n_jobs=len(ids), now=now, span_hours=24.0, seed=len(ids))))
    job_rows, file_rows, event_rows = [], [], []
    for k, (pid, rows) in enumerate(zip(ids, sample, strict=True)):
        job = dict(rows.job)
        job.update(
            panda_id=pid,
            vo=vo,
            job_name=f"{name}-{k + 1}",
            owner=owner,
            task_id=task,
            computing_site=site,
            pilot_id=pilot,
            batch_id="77",
            status="failed" if k == 0 else job["status"],
            modification_time=now - 60,
        )
        if k == 0:
            spec = job_pb2.Job.FromString(job["spec"])
            spec.environment["API_TOKEN"] = SECRET_VALUE
            spec.environment["PLAIN_SETTING"] = SECRET_VALUE
            job["spec"] = spec.SerializeToString()
        job_rows.append(job)
        for f in rows.files:
            file_rows.append(
                {**f, "panda_id": pid, "lfn": f"{name}-{k + 1}.{f['type']}", "dataset": f"{vo}.dataset", "scope": vo}
            )
        event_rows.extend({**e, "panda_id": pid, "actor": owner} for e in rows.events)
    return job_rows, file_rows, event_rows


def _fill(db_url: str, tmp_path: Path, now: float) -> None:
    db = open_database(db_url)
    with db.write() as conn:
        for vo, ids in (("alpha", A_IDS), ("beta", B_IDS)):
            job_rows, file_rows, event_rows = _rows(vo, ids, now=now)
            conn.execute(jobs.insert(), job_rows)
            conn.execute(files.insert(), file_rows)
            if event_rows:
                conn.execute(job_events.insert(), [{k: v for k, v in e.items() if k != "event_id"} for e in event_rows])
            site = f"{vo.upper()}_SITE"
            conn.execute(
                pilots.insert(),
                [
                    {
                        "pilot_id": f"pilot-{vo}-1",
                        "queue": site,
                        "node": f"node.{vo}",
                        "batch_id": "77",
                        "version": "1",
                        "dispatcher_id": "d",
                        "connected": True,
                        "first_seen": now - 100,
                        "last_seen": now - 5,
                    }
                ],
            )
            conn.execute(
                workers.insert(),
                [
                    {
                        "worker_id": f"w-{vo}-1",
                        "queue": site,
                        "backend": "local",
                        "factory_id": "f",
                        "batch_id": "77",
                        "state": "running",
                        "diag": "",
                        "submit_time": now - 200,
                        "update_time": now - 10,
                        "log_path": "",
                    }
                ],
            )
        # the log of one alpha job, in configured storage
        (tmp_path / "payload.stdout").write_text("alpha payload output\n")
        tarball = make_log_tarball(tmp_path / "alpha.job.log.tgz", [(tmp_path / "payload.stdout", "payload.stdout")])
        conn.execute(
            files.update()
            .where(files.c.panda_id == A_LOG_JOB, files.c.type == "log")
            .values(pfn=tarball.as_uri(), lfn="alpha.job.log.tgz")
        )
        # an audited action, recorded by the dispatcher's own function (table audit, migration 0010)
        audit.record(
            conn,
            actor="alice",
            vo="alpha",
            action=audit.JOBS_KILL,
            target=f"job {A_IDS[1]}",
            detail={"reason": "killed by owner"},
            now=now - 30,
        )
        counters.rebuild(conn)  # the rows bypassed the store
    db.dispose()


def _login(client: TestClient, token: str) -> None:
    """Log in through the form, as a browser does (the session cookie stays in ``client``)."""
    form = client.get("/login?next=/jobs/").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', form)
    assert csrf is not None
    r = client.post("/login", data={"token": token, "csrf": csrf.group(1), "next": "/jobs/"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/jobs/", r.text


@pytest.fixture
def world(db_url: str, tmp_path: Path) -> Iterator[World]:
    now = time.time()
    _fill(db_url, tmp_path, now)
    ids = identities(tmp_path)
    queues = (QueueConfig(name="ALPHA_SITE", vos=("alpha",)), QueueConfig(name="BETA_SITE", vos=("beta",)))
    closed_app = create_app(MonitorConfig(db_url=db_url, log_roots=(tmp_path,), queues=queues, auth=ids.auth()))
    public_app = create_app(
        MonitorConfig(db_url=db_url, log_roots=(tmp_path,), queues=queues, auth=ids.auth(public_vo="alpha"))
    )
    tokens = {
        "alice_A": ids.token("alice", "alpha"),
        "bob_B": ids.token("bob", "beta"),
        "admin": ids.token("admin", "admin", ("admin",)),
    }
    with TestClient(closed_app) as closed, TestClient(public_app) as public:
        html = {"anonymous": closed, "public_A": public}
        for viewer, token in tokens.items():
            html[viewer] = TestClient(closed_app)
            _login(html[viewer], token)
        headers = {viewer: {"Authorization": f"Bearer {token}"} for viewer, token in tokens.items()}
        yield World(db_url=db_url, ids=ids, closed=closed, public=public, html=html, json_headers=headers)
    for app in (closed_app, public_app):
        app.state.db.dispose()


def _ask(world: World, viewer: str, path: str, *, as_json: bool) -> Any:
    """HTML with the viewer's session cookie; the JSON twin with their bearer token and no cookie."""
    if not as_json:
        return world.html[viewer].get(path, follow_redirects=False)
    joined = path + ("&json" if "?" in path else "?json")
    client = world.public if viewer == "public_A" else world.closed
    return client.get(joined, headers=world.json_headers.get(viewer, {}), follow_redirects=False)


def test_every_page_and_json_twin_answers_each_viewer_as_the_matrix_says(world: World) -> None:
    wrong = []
    for page, viewer, want_html, want_json in _table():
        path = PAGES[page]
        got_html = _ask(world, viewer, path, as_json=False)
        got_json = _ask(world, viewer, path, as_json=True)
        if (got_html.status_code, got_json.status_code) != (want_html, want_json):
            wrong.append(
                f"{page} as {viewer}: {got_html.status_code}/{got_json.status_code}, want {want_html}/{want_json}"
            )
            continue
        if want_html == 302:
            assert got_html.headers["location"].startswith("/login?next="), (page, viewer)
        if want_json == 401:
            assert got_json.json()["error"] and got_json.headers["www-authenticate"].startswith("Bearer")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize(("viewer", "secrets"), [("bob_B", A_SECRETS), ("alice_A", B_SECRETS), ("public_A", B_SECRETS)])
def test_one_vo_never_sees_another_vos_jobs(world: World, viewer: str, secrets: tuple[str, ...]) -> None:
    for page, path in PAGES.items():
        for as_json in (False, True):
            r = _ask(world, viewer, path, as_json=as_json)
            if r.status_code != 200 or page == "search":  # errors and the search echo what was asked
                continue
            leaked = [s for s in secrets if s in r.text]
            assert not leaked, f"{viewer} sees {leaked} on {path} ({'json' if as_json else 'html'})"
    found = _ask(world, viewer, PAGES["search"], as_json=True).json()
    if viewer == "bob_B":
        assert found["results"] == []
    # the other VO's things are not found by asking for them directly either
    for other in (B_IDS[0],) if viewer != "bob_B" else (A_IDS[0],):
        assert _ask(world, viewer, f"/job/{other}", as_json=True).status_code == 404


def test_each_vo_sees_all_of_its_own_jobs_and_admins_see_both(world: World) -> None:
    def listed(viewer: str) -> set[int]:
        data = _ask(world, viewer, "/jobs/?hours=72&limit=1000", as_json=True).json()
        return {j["pandaid"] for j in data["jobs"]}

    assert listed("alice_A") == set(A_IDS)
    assert listed("bob_B") == set(B_IDS)
    assert listed("public_A") == set(A_IDS)
    assert listed("admin") == set(A_IDS) | set(B_IDS)
    assert {s["computingsite"] for s in _ask(world, "bob_B", "/sites/?hours=72", as_json=True).json()["sites"]} == {
        "BETA_SITE"
    }
    pilots_seen = _ask(world, "alice_A", "/pilots/?hours=72", as_json=True).json()
    assert [p["pilotid"] for p in pilots_seen["pilots"]] == ["pilot-alpha-1"]
    assert [w["workerid"] for w in pilots_seen["workers"]] == ["w-alpha-1"]


@pytest.mark.parametrize("viewer", ["alice_A", "admin", "public_A"])
def test_no_page_shows_job_environment_values(world: World, viewer: str) -> None:
    for path in PAGES.values():
        for as_json in (False, True):
            assert SECRET_VALUE not in _ask(world, viewer, path, as_json=as_json).text, path


def test_public_view_hides_logs_and_the_job_page_says_log_in(world: World) -> None:
    page = world.public.get(f"/job/{A_LOG_JOB}").text
    assert f"/job/{A_LOG_JOB}/stdout" not in page and "log in" in page
    assert world.public.get(f"/job/{A_LOG_JOB}?json").json()["log"] is None
    signed = _ask(world, "alice_A", f"/job/{A_LOG_JOB}/stdout", as_json=True).json()
    assert "alpha payload output" in signed["text"]


def test_site_page_shows_the_queue_configuration(world: World) -> None:
    data = _ask(world, "alice_A", PAGES["site"], as_json=True).json()
    assert data["queue"]["vos"] == ["alpha"] and data["queue"]["backend"] == "local"
    assert 'id="site-config"' in world.html["alice_A"].get(PAGES["site"]).text


def test_audit_page_for_admins_reads_the_audit_table(world: World) -> None:
    data = _ask(world, "admin", "/audit/?actor=alice", as_json=True).json()
    assert data["present"] is True and data["total"] == 1
    assert data["rows"][0]["action"] == "jobs.kill" and data["rows"][0]["target"] == f"job {A_IDS[1]}"
    assert _ask(world, "admin", "/audit/?actor=nobody", as_json=True).json()["total"] == 0
    assert _ask(world, "admin", "/audit/?bogus=1", as_json=True).status_code == 400
    assert 'id="audit-table"' in world.html["admin"].get("/audit/").text
    # the nav shows the audit page to admins only
    assert 'href="/audit/"' in world.html["admin"].get("/jobs/").text
    assert 'href="/audit/"' not in world.html["alice_A"].get("/jobs/").text
