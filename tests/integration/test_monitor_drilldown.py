"""The shifter's drill-down over a populated database (SQLite and PostgreSQL).

Every filter in a URL is applied or refused with a 400 naming it; error codes lead to exactly the
jobs that carry them (checked against the generated rows, decoded independently); numbers are
links; search, site, task, pilot and worker pages resolve; no link on a page is broken.
"""

# ruff: noqa: F811  (the shared `populated` fixture is imported, then named by each test)

from __future__ import annotations

import re
from collections import Counter
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit

import pytest
from test_monitor_pages import PAGES, Populated, _get_json, _in_window, populated  # noqa: F401

from ailuro.v1 import job_pb2

DETAIL_PAGES = ("/site/{site}", "/task/{task}", "/pilot/{pilot}", "/job/{job}", "/search/")


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        href = dict(attrs).get("href")
        if tag == "a" and href and href.startswith("/"):
            self.hrefs.append(href)


def links(html: str) -> list[str]:
    parser = _Links()
    parser.feed(html)
    return parser.hrefs


def _detail_urls(p: Populated) -> list[str]:
    job = next(r.job for r in p.rows if r.job["status"] == "failed" and r.job["pilot_id"])
    return [
        u.format(site=job["computing_site"], task=job["task_id"], pilot=job["pilot_id"], job=job["panda_id"])
        for u in DETAIL_PAGES
    ]


@pytest.mark.parametrize("path", [*PAGES, "/transfers/", "/search/"])
def test_every_page_refuses_an_unknown_filter(populated: Populated, path: str) -> None:
    r = populated.client.get(path, params={"nosuchfilter": "x", "json": ""})
    assert r.status_code == 400, r.text
    assert r.json()["field"] == "nosuchfilter"
    html = populated.client.get(path, params={"nosuchfilter": "x"})
    assert html.status_code == 400 and html.headers["content-type"].startswith("text/html")
    assert "nosuchfilter" in html.text and 'class="errorpage"' in html.text


def test_detail_pages_refuse_an_unknown_filter(populated: Populated) -> None:
    for url in _detail_urls(populated):
        r = populated.client.get(url, params={"bogus": "1", "json": ""})
        assert r.status_code == 400 and r.json()["field"] == "bogus", url


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/jobs/", {"pandaid": "8"}, "pandaid"),
        ("/jobs/", {"site": "BNL"}, "site"),
        ("/jobs/", {"jobstatus": "bogus"}, "jobstatus"),
        ("/jobs/", {"errorcomponent": "nope"}, "errorcomponent"),
        ("/jobs/", {"errorcode": "x"}, "errorcode"),
        ("/sites/", {"jobstatus": "failed"}, "jobstatus"),
        ("/plots/", {"errorcode": "1"}, "errorcode"),
    ],
)
def test_wrong_filters_are_400_naming_them(populated: Populated, path: str, params: dict[str, str], field: str) -> None:
    r = populated.client.get(path, params={**params, "json": ""})
    assert r.status_code == 400 and r.json()["field"] == field


def test_site_filters_are_applied_on_sites_and_pilots(populated: Populated) -> None:
    sites = sorted({r.job["computing_site"] for r in populated.rows})
    data = _get_json(populated.client, "/sites/", computingsite=sites[0], hours=72)
    assert [s["computingsite"] for s in data["sites"]] == [sites[0]]
    everything = _get_json(populated.client, "/pilots/", hours=72)
    pilots = _get_json(populated.client, "/pilots/", computingsite=sites[0], hours=72)
    assert pilots["pilots"] and {p["queue"] for p in pilots["pilots"]} == {sites[0]}
    assert pilots["pilots_total"] == sum(p["queue"] == sites[0] for p in everything["pilots"])


def _errors_of(populated: Populated, job: dict[str, Any]) -> set[tuple[str, int]]:
    (rows,) = [r for r in populated.rows if r.job["panda_id"] == job["panda_id"]]
    return {
        (job_pb2.ErrorComponent.Name(e["component"]).removeprefix("ERROR_COMPONENT_").lower(), e["code"])
        for e in rows.errors
    }


def test_error_filter_lists_exactly_the_jobs_with_that_error(populated: Populated) -> None:
    window = [j for j in _in_window(populated, 72) if j["status"] == "failed"]
    (component, code), n = Counter(e for j in window for e in _errors_of(populated, j)).most_common(1)[0]
    want = {j["panda_id"] for j in window if (component, code) in _errors_of(populated, j)}
    data = _get_json(
        populated.client, "/jobs/", errorcode=code, errorcomponent=component, jobstatus="failed", hours=72, limit=1000
    )
    assert data["total"] == len(want) == n
    assert {j["pandaid"] for j in data["jobs"]} == want
    assert all(j["error"]["code"] == code and j["error"]["component"] == component for j in data["jobs"])
    assert data["filter"]["errorcode"] == code
    # the errors page counts the same jobs, and its code and count link to that list
    errors = _get_json(populated.client, "/errors/", hours=72)["errors"]
    row = next(e for e in errors if (e["component"], e["code"]) == (component, code))
    assert row["count"] == n
    html = populated.client.get("/errors/", params={"hours": 72}).text
    assert f"errorcode={code}&amp;errorcomponent={component}" in html
    for cell in re.findall(r'<td class="num">(.*?)</td>', html):
        assert cell.startswith("<a "), f"a number on /errors/ is not a link: {cell}"


def test_job_list_columns_and_job_page_links(populated: Populated) -> None:
    job = next(r.job for r in populated.rows if r.job["status"] == "failed" and r.job["pilot_id"])
    html = populated.client.get("/jobs/", params={"hours": 72}).text
    for header in ("Duration", "Attempt", "Error"):
        assert f"<th>{header}</th>" in html
    page = populated.client.get(f"/job/{job['panda_id']}").text
    assert f'href="/pilot/{job["pilot_id"]}"' in page
    (component, code) = next(iter(_errors_of(populated, job)))
    assert f"errorcode={code}&amp;errorcomponent={component}" in page
    assert f'href="/site/{job["computing_site"]}"' in page
    assert re.search(r'<td class="num"><span title="[0-9.]+ s">', html), "durations carry the exact value on hover"


def test_legacy_job_url_and_styled_errors(populated: Populated) -> None:
    r = populated.client.get(f"/job?pandaid={populated.log_job}", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/job/{populated.log_job}"
    for url, status in (("/job/abc", 422), ("/dash/", 404), ("/site/NO-SUCH-SITE", 404), ("/job?pandaid=x", 400)):
        html = populated.client.get(url)
        assert html.status_code == status and 'class="errorpage"' in html.text, url
        assert populated.client.get(url, headers={"Accept": "application/json"}).json()["error"]


def test_search_jumps_or_lists(populated: Populated) -> None:
    job = populated.rows[0].job
    r = populated.client.get("/search/", params={"q": job["computing_site"]}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/site/{job['computing_site']}"
    r = populated.client.get("/search/", params={"q": job["owner"]}, follow_redirects=False)
    assert r.status_code == 303 and "produsername=" in r.headers["location"]
    found = _get_json(populated.client, "/search/", q=str(job["panda_id"]))
    kinds = {h["kind"] for h in found["results"]}
    assert "job" in kinds
    tasks = {r.job["task_id"] for r in populated.rows}
    assert ("task" in kinds) == (job["panda_id"] in tasks)
    nothing = populated.client.get("/search/", params={"q": "no such thing"})
    assert nothing.status_code == 200 and "Nothing is named" in nothing.text


def test_task_page_counts_failed_apart(populated: Populated) -> None:
    task = Counter(r.job["task_id"] for r in populated.rows if r.job["task_id"]).most_common(1)[0][0]
    mine = [r.job for r in populated.rows if r.job["task_id"] == task]
    data = _get_json(populated.client, f"/task/{task}")
    t = data["task"]
    assert t["njobs"] == len(mine) == data["total"]
    assert t["nfinished"] == sum(j["status"] == "finished" for j in mine)
    assert t["nfailed"] == sum(j["status"] in ("failed", "cancelled", "closed") for j in mine)
    assert t["progress"] == pytest.approx(t["nfinished"] / len(mine))
    listed = _get_json(populated.client, "/tasks/", hours=72)
    assert listed["total"] >= len(listed["tasks"]) and listed["pages"] >= 1


def test_no_broken_links(populated: Populated) -> None:
    seen: set[str] = set()
    for page in [*(f"{p}?hours=72" for p in PAGES), "/errors/?hours=72", *_detail_urls(populated)]:
        r = populated.client.get(page)
        assert r.status_code == 200, (page, r.text[:300])
        for href in links(r.text):
            path = urlsplit(href).path
            if href in seen or path.startswith("/static/") or path == "/metrics":
                continue
            seen.add(href)
            if len(seen) > 400:
                break
            got = populated.client.get(href, follow_redirects=True)
            # a log member a tarball does not hold is an honest 404 with a message; anything else must work
            if not (got.status_code == 404 and re.search(r"/job/\d+/(stdout|stderr|pilotlog|log)$", path)):
                assert got.status_code == 200, (page, href, got.status_code, got.text[:300])


def test_metrics_counters_and_histograms(populated: Populated) -> None:
    populated.client.get("/jobs/")
    text = populated.client.get("/metrics").text
    assert "# TYPE ailuro_jobs_ended_total counter" in text
    assert "# TYPE ailuro_monitor_request_duration_seconds histogram" in text
    ended = Counter(
        (r.job["computing_site"], r.job["status"])
        for r in populated.rows
        if r.job["status"] in ("finished", "failed", "cancelled", "closed")
    )
    (site, state), n = ended.most_common(1)[0]
    assert f'ailuro_jobs_ended_total{{site="{site}",state="{state}"}} {float(n)}' in text
    failed_here = [r.job for r in populated.rows if r.job["status"] == "failed" and r.job["computing_site"] == site]
    by_error = Counter(e for j in failed_here for e in _errors_of(populated, j))
    (component, code), k = by_error.most_common(1)[0]
    want = f'ailuro_job_errors_total{{code="{code}",component="{component}",site="{site}",state="failed"}} {float(k)}'
    assert want in text
    assert 'ailuro_monitor_requests_total{code="200",page="jobs"}' in text


@pytest.mark.parametrize("path", ["/sites/", "/users/", "/tasks/", "/errors/"])
def test_every_count_on_summary_pages_is_a_link(populated: Populated, path: str) -> None:
    html = populated.client.get(path, params={"hours": 72}).text
    cells = re.findall(r'<td class="num[^"]*">(.*?)</td>', html, flags=re.S)
    assert cells
    for cell in cells:
        assert cell.strip() in ("", "\u2013") or cell.strip().startswith("<a "), (
            f"{path}: a number is not a link: {cell}"
        )


def test_metrics_families_have_zero_samples_for_known_sites(populated: Populated) -> None:
    text = populated.client.get("/metrics").text
    for site in {r.job["computing_site"] for r in populated.rows}:
        assert f'ailuro_jobs{{site="{site}",state="activated"}}' in text
        assert f'ailuro_pilots_connected{{queue="{site}"}}' in text
