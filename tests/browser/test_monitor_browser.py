"""The monitor in a real headless Chromium: load jobs, click a facet, check the table, open a job.

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

from dispatcher.store import counters
from dispatcher.store.engine import open_database
from dispatcher.store.schema import jobs
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
    running = run_in_thread(MonitorConfig(db_url=url, port=0, refresh_s=3600))  # updates triggered by the test
    try:
        yield running, url, spec
    finally:
        running.stop()


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
    browser.get(f"{running.url}/jobs/?hours=72")
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
        row = dict(next(r.job for r in generate(spec) if r.job["status"] == "failed"))
        row.update(panda_id=new_id, modification_time=time.time(), computing_site="LIVE-SITE")
        conn.execute(jobs.insert().values(**row))
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
    browser.get(f"{running.url}/plots/?hours=72")
    charts = browser.find_elements(By.CSS_SELECTOR, "figure svg.chart")
    assert len(charts) == 3
    assert all(c.size["width"] > 300 for c in charts)
    assert len(browser.find_elements(By.CSS_SELECTOR, "#plot-transitions rect")) > 20
    browser.save_screenshot(str(tmp_path / "monitor-plots.png"))
