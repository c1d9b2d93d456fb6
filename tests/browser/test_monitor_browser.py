"""The monitor in a real headless Chromium: log in, load jobs, click a facet, check the table, open a job.

The shifter logs in first, as on a real monitor: a token of the dispatcher's embedded issuer (made
in the test's directory) pasted into the login form; the session cookie then carries every page,
the live updates and the link checks' requests (which send the same token as a bearer header).

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them). Without them the
test FAILS, unless ``AILURO_ALLOW_NO_BROWSER=1`` (then it skips), so CI can never pass by not
running it. No browser is downloaded: selenium is pointed at /usr/bin/chromium and chromedriver.
Screenshots are saved under the test's tmp directory (and named in the output).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ailuro.queues import QueueConfig
from dispatcher.auth.config import DEFAULT_AUDIENCE, EMBEDDED_ISSUER
from dispatcher.auth.issuer import IssuerFiles, ensure, issue, load_key
from dispatcher.store import counters
from dispatcher.store.engine import open_database
from dispatcher.store.schema import job_errors, jobs
from monitor.auth import MonitorAuth
from monitor.config import MonitorConfig
from monitor.sampledata import SampleSpec, generate, load_sample
from monitor.server import RunningMonitor, run_in_thread

ALLOW_NO_BROWSER_ENV = "AILURO_ALLOW_NO_BROWSER"
CHROMIUM = os.environ.get("AILURO_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("AILURO_CHROMEDRIVER", "/usr/bin/chromedriver")
CHROME_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--window-size=1400,1000",
)
N_JOBS = 300


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if shutil.which(p) is None]
    if missing:
        message = f"headless browser not installed: {', '.join(missing)} (apt-get install chromium chromium-driver)"
        if os.environ.get(ALLOW_NO_BROWSER_ENV) == "1":
            pytest.skip(message)
        pytest.fail(f"{message}; set {ALLOW_NO_BROWSER_ENV}=1 to skip locally")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def monitor(tmp_path: Path) -> Iterator[tuple[RunningMonitor, str, SampleSpec]]:
    url = f"sqlite:///{tmp_path / 'monitor.db'}"
    spec = SampleSpec(n_jobs=N_JOBS, now=time.time(), span_hours=48.0)
    load_sample(url, spec)
    files = IssuerFiles(state_dir=tmp_path / "auth")
    ensure(files, issuer=EMBEDDED_ISSUER, audience=DEFAULT_AUDIENCE, admin_vo="admin")
    # logs are served only from configured storage: the test writes its log tarball under tmp_path
    config = MonitorConfig(
        db_url=url,
        port=0,
        refresh_s=3600,  # updates triggered by the test
        log_roots=(tmp_path,),
        auth=MonitorAuth(embedded_jwks=str(files.jwks)),
        queues=tuple(QueueConfig(name=site, vos=("compass",)) for site in spec.sites),
    )
    running = run_in_thread(config)
    try:
        yield running, url, spec
    finally:
        running.stop()


def _token(tmp_path: Path) -> str:
    """The shifter's token: a member of the sample's VO (compass), from the test's embedded issuer."""
    key = load_key(IssuerFiles(state_dir=tmp_path / "auth"))
    return issue(key, issuer=EMBEDDED_ISSUER, audience=DEFAULT_AUDIENCE, user="shifter", vo="compass")


def _login(browser: Any, url: str, tmp_path: Path) -> None:
    """Open ``url``: the monitor sends the browser to its login page; paste the token; land on ``url``."""
    from selenium.webdriver.common.by import By

    browser.get(url)
    _wait(lambda: "/login" in browser.current_url)
    browser.find_element(By.ID, "token").send_keys(_token(tmp_path))
    browser.find_element(By.ID, "login-submit").click()
    _wait(lambda: "/login" not in browser.current_url)
    assert browser.current_url.endswith(url.split("/", 3)[3]), browser.current_url
    assert "shifter" in browser.find_element(By.ID, "who").text


def _wait(predicate: Any, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met within timeout")
        time.sleep(0.1)


def test_jobs_facet_filter_and_job_page(
    browser: Any, monitor: tuple[RunningMonitor, str, SampleSpec], tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    running, db_url, spec = monitor
    expected_failed = sum(r.job["status"] == "failed" for r in generate(spec))
    _login(browser, f"{running.url}/jobs/?hours=72", tmp_path)
    assert browser.find_element(By.ID, "total").text == str(N_JOBS)
    browser.save_screenshot(str(tmp_path / "monitor-jobs.png"))

    facet = browser.find_element(By.CSS_SELECTOR, '#facet-jobstatus a[data-value="failed"]')
    assert facet.find_element(By.XPATH, "..").find_element(By.TAG_NAME, "b").text == str(expected_failed)
    facet.click()
    _wait(lambda: "jobstatus=failed" in browser.current_url)
    assert browser.find_element(By.ID, "total").text == str(expected_failed)
    statuses = [c.text for c in browser.find_elements(By.CSS_SELECTOR, "#jobs-body tr td:nth-child(5)")]
    assert statuses and set(statuses) == {"failed"}
    assert len(statuses) == min(expected_failed, 100)
    chip = browser.find_element(By.CSS_SELECTOR, ".window .chip").text
    assert "jobstatus=failed" in chip

    # live update: a job failing now appears after the page polls its JSON twin (no reload)
    new_id = 10**6
    db = open_database(db_url)
    with db.write() as conn:
        sample = next(r for r in generate(spec) if r.job["status"] == "failed")
        row = dict(sample.job)
        row.update(panda_id=new_id, modification_time=time.time(), computing_site="LIVE-SITE")
        conn.execute(jobs.insert().values(**row))
        conn.execute(job_errors.insert(), [{**e, "panda_id": new_id} for e in sample.errors])
        # written behind the store's back, so recount the way a bulk loader must
        counters.rebuild(conn)
    db.dispose()
    marker = browser.execute_script("document.body.setAttribute('data-marker', 'same-page'); return 1")
    assert marker == 1
    browser.execute_script("window.ailuroMonitorRefresh()")
    _wait(lambda: browser.find_elements(By.CSS_SELECTOR, f'#jobs-body tr[data-pandaid="{new_id}"]'))
    assert browser.find_element(By.ID, "total").text == str(expected_failed + 1)
    assert browser.execute_script("return document.body.getAttribute('data-marker')") == "same-page"

    first = browser.find_element(By.CSS_SELECTOR, f'#jobs-body tr[data-pandaid="{new_id}"] td:nth-child(3) a')
    first.click()
    _wait(lambda: f"/job/{new_id}" in browser.current_url)
    heading = browser.find_element(By.TAG_NAME, "h1").text
    assert heading.startswith(f"Job {new_id}") and "failed" in heading
    assert browser.find_element(By.ID, "job-errors").is_displayed()
    assert "LIVE-SITE" in browser.find_element(By.ID, "job-params").text
    shot = tmp_path / "monitor-job.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    print(f"screenshots: {tmp_path / 'monitor-jobs.png'} {shot}")


def test_plots_page_draws_svg(browser: Any, monitor: tuple[RunningMonitor, str, SampleSpec], tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    running, _url, _spec = monitor
    _login(browser, f"{running.url}/plots/?hours=72", tmp_path)
    charts = browser.find_elements(By.CSS_SELECTOR, "figure svg.chart")
    assert len(charts) == 3
    assert all(c.size["width"] > 300 for c in charts)
    assert len(browser.find_elements(By.CSS_SELECTOR, "#plot-transitions rect")) > 20
    browser.save_screenshot(str(tmp_path / "monitor-plots.png"))


DOCS = Path(__file__).parents[2] / "docs"
SAVE_DOCS_ENV = "AILURO_DOCS_SCREENSHOTS"
"""Set to 1 to refresh the README's screenshots in docs/ (otherwise they go to the test's tmp dir)."""


def _broken_links(browser: Any, base: str, checked: set[str], token: str, limit: int = 60) -> list[str]:
    """Every same-origin link on the current page that does not answer 200 (a missing log member: 404 ok).

    Asked with the shifter's token (a redirect to the login page would otherwise pass for a 200)."""
    import urllib.error
    import urllib.parse
    import urllib.request

    hrefs = browser.execute_script(
        "return Array.from(document.querySelectorAll('a[href]')).map(a => a.getAttribute('href'))"
    )
    broken = []
    for href in hrefs:
        if not href.startswith("/") or href in checked or href.startswith("/static/") or len(checked) > limit * 6:
            continue
        checked.add(href)
        try:
            request = urllib.request.Request(base + href, headers={"Authorization": f"Bearer {token}"})
            with urllib.request.urlopen(request, timeout=30) as r:
                status = 401 if urllib.parse.urlsplit(r.geturl()).path == "/login" else r.status
        except urllib.error.HTTPError as e:
            status = e.code
        is_log_member = "/job/" in href and href.rsplit("/", 1)[-1] in ("stdout", "stderr", "pilotlog", "log")
        if status != 200 and not (status == 404 and is_log_member):
            broken.append(f"{href}: {status}")
    return broken


def _fits(browser: Any) -> bool:
    """No page-level sideways scrolling: wide tables scroll inside their own container."""
    return bool(browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth + 1"))


def _shots(browser: Any, name: str, tmp_path: Path) -> None:
    """Screenshots at 1400 and 800 px wide; each width must fit without page-level sideways scroll."""
    for width in (1400, 800):
        browser.set_window_size(width, 1000)
        assert _fits(browser), f"{name} runs off the right edge at {width} px"
        target = (DOCS if os.environ.get(SAVE_DOCS_ENV) == "1" else tmp_path) / f"monitor-{name}-{width}.png"
        browser.save_screenshot(str(target))
        assert target.stat().st_size > 10_000
    browser.set_window_size(1400, 1000)


def test_shifter_path_by_clicks(browser: Any, monitor: tuple[RunningMonitor, str, SampleSpec], tmp_path: Path) -> None:
    """Front page → a failing site → its error code → the failed jobs → one job → its pilot → its log."""
    from selenium.webdriver.common.by import By

    from ailuro.v1 import job_pb2
    from dispatcher.store.schema import files
    from pilot.logtar import log_lfn, make_log_tarball

    running, db_url, spec = monitor
    rows = list(generate(spec))
    # the job the shifter will end on: failed on a pilot, with a real log tarball holding a pilot log
    target_rows = next(
        r
        for r in sorted(rows, key=lambda r: -r.job["panda_id"])
        if r.job["status"] == "failed"
        and r.job["pilot_id"]
        and r.job["modification_time"] > spec.now - 6 * 3600  # inside the pages' default 12-hour window
        and any(f["type"] == "log" for f in r.files)
    )
    target = target_rows.job
    first = target_rows.errors[0]
    error = job_pb2.JobError(component=first["component"], code=first["code"], diag=first["diag"])
    (tmp_path / "pilot.log").write_text("pilot: job started\npilot: payload failed\n")
    tarball = make_log_tarball(tmp_path / log_lfn(target["job_name"]), [(tmp_path / "pilot.log", "pilot.log")])
    db = open_database(db_url)
    with db.write() as conn:
        conn.execute(
            files.update()
            .where(files.c.panda_id == target["panda_id"], files.c.type == "log")
            .values(pfn=tarball.as_uri())
        )
    db.dispose()
    checked: set[str] = set()
    site = target["computing_site"]

    token = _token(tmp_path)
    _login(browser, f"{running.url}/jobs/", tmp_path)
    browser.get(f"{running.url}/")  # front page
    _wait(lambda: "/jobs/" in browser.current_url)
    assert not _broken_links(browser, running.url, checked, token)
    browser.find_element(By.CSS_SELECTOR, f'#jobs-body a[href="/site/{site}"]').click()

    _wait(lambda: f"/site/{site}" in browser.current_url)  # the failing site
    assert browser.find_element(By.TAG_NAME, "h1").text.startswith(f"Site {site}")
    assert not _broken_links(browser, running.url, checked, token)
    _shots(browser, "site", tmp_path)
    codes = browser.find_elements(By.CSS_SELECTOR, "#site-errors a.errcode")
    next(a for a in codes if a.text == str(error.code)).click()

    _wait(lambda: f"errorcode={error.code}" in browser.current_url)  # the failed jobs with that error
    statuses = {c.text for c in browser.find_elements(By.CSS_SELECTOR, "#jobs-body tr td:nth-child(5)")}
    assert statuses == {"failed"}
    cells = browser.find_elements(By.CSS_SELECTOR, "#jobs-body td.err")
    assert cells and all(str(error.code) in c.text for c in cells)
    assert {c.text for c in browser.find_elements(By.CSS_SELECTOR, "#jobs-body tr td:nth-child(11)")} == {site}
    assert not _broken_links(browser, running.url, checked, token)
    _shots(browser, "failed-jobs", tmp_path)
    browser.find_element(
        By.CSS_SELECTOR, f'#jobs-body tr[data-pandaid="{target["panda_id"]}"] td:nth-child(3) a'
    ).click()

    _wait(lambda: f"/job/{target['panda_id']}" in browser.current_url)  # one job
    assert str(error.code) in browser.find_element(By.ID, "job-errors").text
    assert not _broken_links(browser, running.url, checked, token)
    _shots(browser, "job", tmp_path)
    browser.find_element(By.CSS_SELECTOR, "#job-pilot a").click()

    _wait(lambda: f"/pilot/{target['pilot_id']}" in browser.current_url)  # its pilot
    assert browser.find_elements(By.CSS_SELECTOR, f'#pilot-jobs-body tr[data-pandaid="{target["panda_id"]}"]')
    assert not _broken_links(browser, running.url, checked, token)
    _shots(browser, "pilot", tmp_path)
    browser.find_element(By.CSS_SELECTOR, f'#pilot-logs a.pilotlog[href="/job/{target["panda_id"]}/pilotlog"]').click()

    _wait(lambda: browser.current_url.endswith(f"/job/{target['panda_id']}/pilotlog"))  # its log
    assert "pilot: payload failed" in browser.find_element(By.TAG_NAME, "main").text
    print(f"screenshots in {DOCS if os.environ.get(SAVE_DOCS_ENV) == '1' else tmp_path}; links checked: {len(checked)}")


def test_log_out_button_ends_the_session(
    browser: Any, monitor: tuple[RunningMonitor, str, SampleSpec], tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    running, _url, _spec = monitor
    _login(browser, f"{running.url}/sites/", tmp_path)
    browser.find_element(By.ID, "logout").click()
    _wait(lambda: "/login" in browser.current_url)
    browser.get(f"{running.url}/sites/")
    _wait(lambda: "/login?next=" in browser.current_url)  # the session is gone: back to the login form
    assert browser.find_element(By.ID, "token").is_displayed()


def test_login_task_and_waiting_job_pages(
    browser: Any, monitor: tuple[RunningMonitor, str, SampleSpec], tmp_path: Path
) -> None:
    """The login form, one task (progress, files, jobs) and a waiting job with its "why": links work, shots taken."""
    from selenium.webdriver.common.by import By

    running, _url, spec = monitor
    rows = [r.job for r in generate(spec)]
    waiting = max((j for j in rows if j["status"] == "activated"), key=lambda j: j["panda_id"])
    task_id = waiting["task_id"]
    browser.get(f"{running.url}/sites/")
    _wait(lambda: "/login" in browser.current_url)
    assert browser.find_element(By.ID, "token").is_displayed()
    _shots(browser, "login", tmp_path)
    _login(browser, f"{running.url}/task/{task_id}", tmp_path)
    token = _token(tmp_path)
    checked: set[str] = set()

    assert browser.find_element(By.TAG_NAME, "h1").text.startswith(f"Task {task_id}")
    assert browser.find_element(By.ID, "task-progress").text
    assert browser.find_elements(By.CSS_SELECTOR, f'#task-jobs-body tr[data-pandaid="{waiting["panda_id"]}"]')
    assert not _broken_links(browser, running.url, checked, token)
    _shots(browser, "task", tmp_path)
    browser.find_element(
        By.CSS_SELECTOR,
        f'#task-jobs-body tr[data-pandaid="{waiting["panda_id"]}"] a[href="/job/{waiting["panda_id"]}"]',
    ).click()

    _wait(lambda: f"/job/{waiting['panda_id']}" in browser.current_url)  # a waiting job says why
    assert browser.find_element(By.ID, "job-why-summary").text
    assert not _broken_links(browser, running.url, checked, token)
    _shots(browser, "job-why", tmp_path)
