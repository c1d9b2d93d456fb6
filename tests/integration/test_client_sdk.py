"""The Python SDK against a real in-process dispatcher (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ailuro import Client
from ailuro.errors import InvalidArgument, NotFound, Unavailable
from ailuro.jobspec import status_name
from ailuro.v1 import job_pb2
from dispatcher.services.events import EventTail

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def client(dispatcher: Any) -> Iterator[Client]:
    with Client(dispatcher.address, identity="jdoe", timeout=20) as c:
        yield c


def _job(name: str, **extra: Any) -> dict[str, Any]:
    return {"transformation": "/bin/true", "job_name": name, **extra}


def test_submit_dicts_and_messages_then_get(client: Client) -> None:
    message = job_pb2.Job(transformation="/bin/echo", job_parameters="hi", job_name="msg")
    ids = client.submit(
        [_job("d1", files=[{"lfn": "out.txt", "type": "output"}], env={"A": "1"}), message],
    )
    assert len(ids) == 2 and ids[0] != ids[1]
    first, second = client.get(ids)
    assert (first.panda_id, first.job_name, first.owner) == (ids[0], "d1", "jdoe")
    assert dict(first.environment) == {"A": "1"}
    assert [(f.lfn, f.type) for f in first.files] == [("out.txt", job_pb2.FILE_TYPE_OUTPUT)]
    assert (second.job_name, second.transformation, second.job_parameters) == ("msg", "/bin/echo", "hi")
    assert status_name(first.status) in {"defined", "assigned", "activated"}
    assert first.creation_time.seconds > 0


def test_submit_is_idempotent_on_request_id(client: Client) -> None:
    rid = f"test-{uuid.uuid4()}"
    ids = client.submit([_job("a"), _job("b")], request_id=rid)
    again = client.submit([_job("a"), _job("b")], request_id=rid)
    assert again == ids
    assert client.list_page(job_name="a", owner="jdoe").total == 1


def test_submit_bad_input_raises_invalid_argument_with_field(client: Client) -> None:
    with pytest.raises(InvalidArgument) as info:
        client.submit([_job("ok"), {"transformation": "", "job_name": "bad"}])
    assert info.value.field == "jobs[1].transformation"
    # all or nothing: the good job of the rejected batch was not stored
    assert client.list_page(job_name="ok").total == 0
    with pytest.raises(InvalidArgument) as info:
        client.submit([{"transformation": "x", "sitee": "LOCAL"}])
    assert info.value.field == "jobs[0].sitee"  # found locally, before any call
    with pytest.raises(InvalidArgument) as info:
        client.submit([])
    assert info.value.field == "jobs"


def test_submit_splits_big_batches_and_renumbers_errors(client: Client) -> None:
    jobs = [job_pb2.Job(transformation="/bin/true", job_name=f"big_{i}") for i in range(5003)]
    ids = client.submit(jobs)
    assert len(ids) == len(set(ids)) == 5003
    assert client.list_page(transformation="/bin/true", page_size=1).total >= 5003
    jobs[5001].transformation = ""
    with pytest.raises(InvalidArgument) as info:
        client.submit(jobs, request_id=f"split-{uuid.uuid4()}")
    # the error is in the second call, yet names the job's position in the whole list
    assert info.value.field == "jobs[5001].transformation"


def test_get_unknown_id_is_not_found(client: Client) -> None:
    (pid,) = client.submit([_job("known")])
    with pytest.raises(NotFound) as info:
        client.get([pid, 987_654_321])
    assert info.value.field == "panda_ids[1]"


def test_list_filters_pagination_and_counts(client: Client) -> None:
    site_ids = client.submit([_job(f"page_{i}", task_id=4242, label="test") for i in range(7)])
    page = client.list_page(task_id=4242, page_size=3)
    assert page.total == 7 and len(page.jobs) == 3 and page.next_page_token
    assert sum(page.status_counts.values()) == 7
    every = list(client.list_jobs(task_id=4242, page_size=3))
    assert sorted(j.panda_id for j in every) == sorted(site_ids)
    assert [j.panda_id for j in every] == sorted(site_ids, reverse=True)  # newest first
    assert len(list(client.list_jobs(task_id=4242, page_size=2, limit=5))) == 5
    states = list(page.status_counts)
    assert len(list(client.list_jobs(task_id=4242, status=states))) == 7
    assert list(client.list_jobs(task_id=4242, status="finished")) == []
    assert list(client.list_jobs(task_id=4242, label="managed")) == []
    since = datetime.now(UTC) - timedelta(hours=1)
    assert client.list_page(task_id=4242, since=since).total == 7
    assert client.list_page(task_id=4242, since=datetime.now(UTC) + timedelta(hours=1)).total == 0
    with pytest.raises(InvalidArgument):
        client.list_page(status=["nonsense"])


def test_kill_retry_and_events(client: Client) -> None:
    (pid,) = client.submit([_job("to_kill")])
    (result,) = client.kill([pid], reason="testing kill")
    assert result.accepted and result.status == job_pb2.JOB_STATUS_CANCELLED
    (again,) = client.kill([pid])
    assert not again.accepted  # already final: harmless
    (new_id,) = client.retry([pid])
    assert new_id != pid
    (new_job,) = client.get([new_id])
    assert new_job.job_name == "to_kill" and new_job.status not in (0, job_pb2.JOB_STATUS_CANCELLED)
    history = client.events(pid)
    assert history[-1].to_status == job_pb2.JOB_STATUS_CANCELLED
    assert "testing kill" in history[-1].reason
    assert [e.event_id for e in history] == sorted(e.event_id for e in history)
    with pytest.raises(NotFound):
        client.events(987_654_321)


def test_watch_streams_live_state_changes(client: Client, dispatcher: Any) -> None:
    first, second = client.submit([_job("watch_a"), _job("watch_b")])
    replay_from = client.events(first)[-1].event_id - 1
    seen: list[job_pb2.JobEvent] = []
    stream_open = threading.Event()

    def consume() -> None:
        with Client(dispatcher.address, identity="jdoe") as watcher:
            for event in watcher.watch(panda_ids=[first, second], after_event_id=replay_from):
                seen.append(event)
                stream_open.set()  # the replayed event of `first` proves the stream is live
                if event.panda_id == second and event.to_status == job_pb2.JOB_STATUS_CANCELLED:
                    return

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    assert stream_open.wait(30), "no replayed event arrived"
    client.kill([second], reason="watch test")
    thread.join(timeout=30)
    assert not thread.is_alive(), f"the kill was not streamed; saw {seen}"
    assert seen[0].panda_id == first
    assert (seen[-1].panda_id, seen[-1].to_status) == (second, job_pb2.JOB_STATUS_CANCELLED)
    assert "watch test" in seen[-1].reason


def test_watch_subscribing_while_the_idle_tail_moves_on_loses_nothing(
    client: Client, dispatcher: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race behind a busy-machine flake: with nobody watching, the shared tail moves its start
    point to the newest event; a watcher subscribing while that query runs replays up to the *old*
    point, so the tail must not jump past it. Here the query is held until the watcher is in."""
    real_newest = EventTail._newest

    def newest_once_a_watcher_subscribed(self: EventTail) -> int:
        deadline = time.monotonic() + 10  # the query "runs" until the watcher is in (bounded)
        while not self._watchers and time.monotonic() < deadline:
            time.sleep(0.01)
        return real_newest(self)

    monkeypatch.setattr(EventTail, "_newest", newest_once_a_watcher_subscribed)
    time.sleep(0.5)  # the idle tail is now inside the held query, its start point still old
    first, _ = client.submit([_job("race_a"), _job("race_b")])
    replay_from = client.events(first)[-1].event_id - 1
    seen: list[job_pb2.JobEvent] = []

    def consume() -> None:
        with Client(dispatcher.address, identity="jdoe") as watcher:
            for event in watcher.watch(panda_ids=[first], after_event_id=replay_from):
                seen.append(event)
                return

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive() and seen, "the replayed event never arrived"
    assert seen[0].panda_id == first


def test_watch_replays_history_after_an_event_id(client: Client) -> None:
    (pid,) = client.submit([_job("replayed")])
    client.kill([pid])
    history = client.events(pid)
    stream = client.watch(panda_ids=[pid], after_event_id=history[0].event_id)
    replayed = [next(stream) for _ in history[1:]]
    stream.close()
    assert [e.event_id for e in replayed] == [e.event_id for e in history[1:]]


def test_queues(client: Client) -> None:
    names = [q.name for q in client.queues()]
    assert "LOCAL" in names


def test_unreachable_server_raises_unavailable_after_bounded_retries() -> None:
    with Client("127.0.0.1:1", timeout=2, retries=2, backoff_s=0.01) as c:
        started = time.monotonic()
        with pytest.raises(Unavailable):
            c.get([1])
        assert time.monotonic() - started < 30  # bounded, not a performance assertion


def test_identity_and_server_from_environment(monkeypatch: pytest.MonkeyPatch, dispatcher: Any) -> None:
    monkeypatch.setenv("AILURO_SERVER", dispatcher.address)
    monkeypatch.setenv("AILURO_USER", "env-user")
    with Client() as c:
        (pid,) = c.submit([_job("env")])
        assert c.get([pid])[0].owner == "env-user"
    monkeypatch.delenv("AILURO_USER")
    with Client() as c:
        (pid,) = c.submit([_job("anon")])
        assert c.get([pid])[0].owner == "anonymous"


def test_retries_until_a_late_server_comes_up(make_dispatcher: Any) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    starter = threading.Timer(1.0, make_dispatcher, kwargs={"port": port})
    starter.start()
    try:
        # the first attempts find nothing listening (UNAVAILABLE); the backoff outlasts the start-up
        with Client(f"127.0.0.1:{port}", timeout=10, retries=8, backoff_s=0.3) as c:
            assert "LOCAL" in [q.name for q in c.queues()]
    finally:
        starter.join(timeout=60)
