"""Queue status and ``job why`` on the monitor, over a real dispatcher's database.

The status is set through the dispatcher's own RPC (``ailuro queue set-status``); the job page's
explanation is compared with what the ExplainJob RPC answers for the same job at the same time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from monitor_login import Identities, identities

from ailuro import Client
from ailuro.queues import QueueConfig
from ailuro.v1 import job_pb2
from dispatcher.server import RunningDispatcher
from monitor.app import create_app
from monitor.config import MonitorConfig

QUEUES = (QueueConfig(name="LOCAL"), QueueConfig(name="OTHER", labels=("managed",)))

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def dispatcher2(make_dispatcher: Callable[..., RunningDispatcher]) -> RunningDispatcher:
    return make_dispatcher(queues=QUEUES)


@pytest.fixture
def who(tmp_path: Path) -> Identities:
    return identities(tmp_path)


@pytest.fixture
def monitor(db_url: str, who: Identities, dispatcher2: RunningDispatcher) -> Iterator[TestClient]:
    app = create_app(MonitorConfig(db_url=db_url, auth=who.auth(), queues=QUEUES))
    with TestClient(app, headers=who.admin()) as client:
        yield client
    app.state.db.dispose()


def _json(client: TestClient, path: str, **headers: str) -> dict[str, Any]:
    r = client.get(path, params={"json": ""}, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def test_offline_site_shows_status_with_reason(dispatcher2: RunningDispatcher, monitor: TestClient) -> None:
    with Client(dispatcher2.address, identity="alice", vo="compass") as user:
        user.submit([job_pb2.Job(transformation="/bin/true", vo="compass", computing_site="LOCAL")])
    with Client(dispatcher2.address, identity="ops", roles=("admin",)) as admin:
        admin.brokerage.set_queue_status("LOCAL", "offline", "disk <full> at the SE")
    site = _json(monitor, "/site/LOCAL")["site"]["queue_status"]
    assert (site["status"], site["reason"], site["changed_by"]) == ("offline", "disk <full> at the SE", "ops")
    assert site["changed_at"] > 0
    html = monitor.get("/site/LOCAL").text
    assert '<span class="qs qs-offline"' in html and ">offline</span>" in html
    assert "disk &lt;full&gt; at the SE" in html and "by ops" in html
    rows = {s["computingsite"]: s for s in _json(monitor, "/sites/")["sites"]}
    assert rows["LOCAL"]["queue_status"]["status"] == "offline"
    listing = monitor.get("/sites/").text
    assert 'class="qs qs-offline"' in listing


def test_waiting_job_page_explains_like_explain_job(
    dispatcher2: RunningDispatcher, monitor: TestClient, who: Identities
) -> None:
    with Client(dispatcher2.address, identity="alice", vo="compass") as user:
        ids = user.submit(
            [
                job_pb2.Job(transformation="/bin/true", vo="compass", computing_site="LOCAL", current_priority=p)
                for p in (1, 5)
            ]
        )
        with Client(dispatcher2.address, identity="ops", roles=("admin",)) as admin:
            admin.brokerage.set_queue_status("LOCAL", "test", "validating a new release")
            admin.brokerage.set_queue_status("LOCAL", "online", "validated")
        rpc = user.brokerage.why(ids[0])
        page = _json(monitor, f"/job/{ids[0]}")["why"]
    assert page is not None
    assert {v["queue"]: v["reasons"] for v in page["queues"]} == {v.queue: list(v.reasons) for v in rpc.queues}
    assert {v["queue"]: v["can_run"] for v in page["queues"]} == {v.queue: v.can_run for v in rpc.queues}
    assert any(v["reasons"] for v in page["queues"])  # OTHER refuses (label), LOCAL has no pilot
    assert page["summary"] == rpc.summary and page["advice"] == list(rpc.advice)
    assert (page["claim_position"], page["claim_waiting"]) == (rpc.claim_position, rpc.claim_waiting) == (2, 2)
    assert page["share_leaf"] == rpc.share_leaf
    html = monitor.get(f"/job/{ids[0]}").text
    assert 'id="job-why"' in html and "no pilot is connected" in html
    # the owner's VO sees it; another VO does not see the job at all
    assert _json(monitor, f"/job/{ids[0]}", **who.bearer("alice", "compass"))["why"]["summary"] == rpc.summary
    assert monitor.get(f"/job/{ids[0]}", params={"json": ""}, headers=who.bearer("bob", "amber")).status_code == 404


def test_a_deep_queue_is_not_ranked_on_the_job_page(
    dispatcher2: RunningDispatcher, db_url: str, who: Identities
) -> None:
    """Over ``why_max_ranked`` waiting jobs the page says "more than N" (no position, no full read);
    at N or fewer it ranks exactly as ExplainJob does."""
    with Client(dispatcher2.address, identity="alice", vo="compass") as user:
        ids = user.submit([job_pb2.Job(transformation="/bin/true", vo="compass", computing_site="LOCAL")] * 3)
        rpc = user.brokerage.why(ids[2])
    assert (rpc.claim_position, rpc.claim_waiting) == (3, 3)

    def page(cap: int) -> dict[str, Any]:
        app = create_app(MonitorConfig(db_url=db_url, auth=who.auth(), queues=QUEUES, why_max_ranked=cap))
        try:
            with TestClient(app, headers=who.admin()) as client:
                data = _json(client, f"/job/{ids[2]}")["why"]
                data["html"] = client.get(f"/job/{ids[2]}").text
                return data
        finally:
            app.state.db.dispose()

    shallow = page(3)
    assert (shallow["claim_position"], shallow["claim_waiting"], shallow["claim_deeper_than"]) == (3, 3, 0)
    assert shallow["summary"] == rpc.summary
    deep = page(2)
    assert (deep["claim_position"], deep["claim_waiting"], deep["claim_deeper_than"]) == (0, 0, 2)
    assert "more than 2 waiting" in deep["html"]
