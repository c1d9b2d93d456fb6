"""A real dispatcher in token mode: the interceptor is the one gate, and the token decides who owns a job."""

from __future__ import annotations

import logging
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ailuro.v1 import job_pb2, pilot_pb2, pilot_pb2_grpc, submission_pb2, submission_pb2_grpc
from dispatcher.auth import issuer as embedded
from dispatcher.auth.config import AuthConfig
from dispatcher.server import RunningDispatcher

AUD = "ailuro"
ISS = "ailuro-embedded"


@pytest.fixture
def secured(make_dispatcher: Callable[..., RunningDispatcher], tmp_path: Path) -> RunningDispatcher:
    return make_dispatcher(auth=AuthConfig(mode="token", state_dir=tmp_path / "auth"))


@pytest.fixture
def stub(secured: RunningDispatcher) -> Iterator[submission_pb2_grpc.SubmissionServiceStub]:
    with grpc.insecure_channel(secured.address) as channel:
        yield submission_pb2_grpc.SubmissionServiceStub(channel)


def token(secured: RunningDispatcher, **kw: Any) -> str:
    key = embedded.load_key(embedded.IssuerFiles(state_dir=secured.config.auth.state_dir))
    kw.setdefault("issuer", ISS)
    kw.setdefault("audience", AUD)
    return embedded.issue(key, **kw)


def bearer(tok: str, *extra: tuple[str, str]) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {tok}"), *extra)


def code_and_details(call: Callable[[], Any]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code(), info.value.details()


def submit(stub: Any, metadata: Any) -> Any:
    req = submission_pb2.SubmitJobsRequest(jobs=[job_pb2.Job(transformation="/bin/true")])
    return stub.SubmitJobs(req, metadata=metadata, timeout=30)


def test_embedded_issuer_state_is_private(secured: RunningDispatcher) -> None:
    state = secured.config.auth.state_dir
    assert state is not None
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    for name in ("signing-key.pem", "jwks.json", "admin.token"):
        assert stat.S_IMODE((state / name).stat().st_mode) == 0o600, name


def test_no_token_is_unauthenticated_everywhere_but_health(secured: RunningDispatcher, stub: Any) -> None:
    code, details = code_and_details(lambda: submit(stub, ()))
    assert code == grpc.StatusCode.UNAUTHENTICATED and "authorization: Bearer" in details
    code, _ = code_and_details(lambda: stub.ListJobs(submission_pb2.ListJobsRequest(), timeout=30))
    assert code == grpc.StatusCode.UNAUTHENTICATED
    # trusted metadata means nothing in token mode
    code, _ = code_and_details(lambda: submit(stub, (("ailuro-user", "alice"), ("ailuro-vo", "compass"))))
    assert code == grpc.StatusCode.UNAUTHENTICATED
    with grpc.insecure_channel(secured.address) as channel:
        hello = pilot_pb2.PilotMessage(hello=pilot_pb2.Hello(pilot_id="p1", queue="LOCAL"))
        stream = pilot_pb2_grpc.PilotServiceStub(channel).Connect(iter([hello]), timeout=30)
        code, _ = code_and_details(lambda: next(stream))
        assert code == grpc.StatusCode.UNAUTHENTICATED
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=30)
        assert health.status == health_pb2.HealthCheckResponse.SERVING


def test_the_token_not_the_metadata_names_the_owner(secured: RunningDispatcher, stub: Any) -> None:
    tok = token(secured, user="alice", vo="compass", roles=["user"])
    lying = bearer(tok, ("ailuro-user", "mallory"), ("ailuro-vo", "evil"))
    ids = submit(stub, lying).panda_ids
    got = stub.GetJobs(submission_pb2.GetJobsRequest(panda_ids=ids), metadata=bearer(tok), timeout=30).jobs
    assert [(j.owner, j.vo) for j in got] == [("alice", "compass")]
    listed = stub.ListJobs(submission_pb2.ListJobsRequest(), metadata=bearer(tok), timeout=30)
    assert [j.panda_id for j in listed.jobs] == list(ids)


def test_streams_carry_the_identity(secured: RunningDispatcher, stub: Any) -> None:
    """A server-streaming call (WatchJobs) is authenticated too; with a token it is served."""
    tok = token(secured, user="alice", vo="compass")
    two = submission_pb2.SubmitJobsRequest(jobs=[job_pb2.Job(transformation="t"), job_pb2.Job(transformation="t")])
    earlier, later = stub.SubmitJobs(two, metadata=bearer(tok), timeout=30).panda_ids
    # the earlier job's first event is a replay start that the later job's events follow
    events = stub.GetJobEvents(submission_pb2.GetJobEventsRequest(panda_id=earlier), metadata=bearer(tok), timeout=30)
    ids = [later]
    req = submission_pb2.WatchJobsRequest(panda_ids=ids, after_event_id=events.events[0].event_id)
    watch = stub.WatchJobs(req, metadata=bearer(tok), timeout=30)
    first = next(watch)
    assert first.panda_id == ids[0]
    watch.cancel()
    code, _ = code_and_details(lambda: next(stub.WatchJobs(req, timeout=30)))
    assert code == grpc.StatusCode.UNAUTHENTICATED


def test_expired_wrong_audience_and_garbage_are_refused(secured: RunningDispatcher, stub: Any) -> None:
    old = token(secured, user="alice", vo="compass", lifetime_s=60, now=time.time() - 3600)
    code, details = code_and_details(lambda: submit(stub, bearer(old)))
    assert (code, details) == (grpc.StatusCode.UNAUTHENTICATED, "authentication failed: token expired")
    other = token(secured, user="alice", vo="compass", audience="another-dispatcher")
    code, details = code_and_details(lambda: submit(stub, bearer(other)))
    assert code == grpc.StatusCode.UNAUTHENTICATED and "audience" in details
    code, details = code_and_details(lambda: submit(stub, (("authorization", "Basic abc"),)))
    assert code == grpc.StatusCode.UNAUTHENTICATED and "Bearer" in details
    code, _ = code_and_details(lambda: submit(stub, bearer("x" * 12_000)))
    assert code == grpc.StatusCode.UNAUTHENTICATED
    # gRPC's own metadata limit (16 KiB) refuses larger headers before the interceptor sees them
    code, _ = code_and_details(lambda: submit(stub, bearer("x" * 20_000)))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_admin_token_written_at_first_start_works(secured: RunningDispatcher, stub: Any) -> None:
    state = secured.config.auth.state_dir
    assert state is not None
    admin = (state / "admin.token").read_text().strip()
    ids = submit(stub, bearer(admin)).panda_ids
    got = stub.GetJobs(submission_pb2.GetJobsRequest(panda_ids=ids), metadata=bearer(admin), timeout=30).jobs
    assert (got[0].owner, got[0].vo) == ("admin", "admin")


def test_trusted_metadata_is_loopback_only_and_loud(
    make_dispatcher: Callable[..., RunningDispatcher], caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(ValueError, match="loopback only"):
        make_dispatcher(host="0.0.0.0")
    with caplog.at_level(logging.WARNING, logger="dispatcher.auth.interceptor"):
        d = make_dispatcher()
    assert any("INSECURE" in r.getMessage() for r in caplog.records)
    with grpc.insecure_channel(d.address) as channel:
        stub = submission_pb2_grpc.SubmissionServiceStub(channel)
        ids = submit(stub, (("ailuro-user", "bob"), ("ailuro-vo", "amber"))).panda_ids
        got = stub.GetJobs(submission_pb2.GetJobsRequest(panda_ids=ids), timeout=30).jobs
        assert (got[0].owner, got[0].vo) == ("bob", "amber")
