"""``IssuePilotTokens`` against a real token-mode dispatcher: a factory gets one pilot token per
worker for its own queues, signed by the dispatcher (the factory never holds the key), audited
once per call; the tokens it gets are accepted on the pilot's stream for that queue only."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import jwt
import pytest

from ailuro.credentials import bearer_metadata
from ailuro.queues import QueueConfig
from ailuro.v1 import admin_pb2, admin_pb2_grpc, factory_pb2, factory_pb2_grpc, pilot_pb2, pilot_pb2_grpc
from dispatcher.auth.config import AuthConfig
from dispatcher.auth.minting import Minter
from dispatcher.server import RunningDispatcher

QUEUES = (QueueConfig(name="QA", vos=("compass",)), QueueConfig(name="QB"))


@pytest.fixture
def secured(make_dispatcher: Callable[..., RunningDispatcher], tmp_path: Path) -> RunningDispatcher:
    return make_dispatcher(queues=QUEUES, auth=AuthConfig(mode="token", state_dir=tmp_path / "auth"))


def minter(d: RunningDispatcher) -> Minter:
    assert d.config.auth.state_dir is not None
    return Minter.from_state_dir(d.config.auth.state_dir)


def issue(d: RunningDispatcher, token: str, queue: str, workers: list[str], **kw: int) -> list[factory_pb2.PilotToken]:
    with grpc.insecure_channel(str(d.address)) as ch:
        stub = factory_pb2_grpc.FactoryServiceStub(ch)
        req = factory_pb2.IssuePilotTokensRequest(queue=queue, worker_ids=workers, **kw)
        return list(stub.IssuePilotTokens(req, timeout=10, metadata=bearer_metadata(token)).tokens)


def audit_rows(d: RunningDispatcher) -> list[admin_pb2.AuditEntry]:
    assert d.config.auth.state_dir is not None
    admin = (d.config.auth.state_dir / "admin.token").read_text().strip()
    with grpc.insecure_channel(str(d.address)) as ch:
        stub = admin_pb2_grpc.AdminServiceStub(ch)
        resp = stub.ListAudit(
            admin_pb2.ListAuditRequest(action="token.pilot"), timeout=10, metadata=bearer_metadata(admin)
        )
        return list(resp.entries)


def test_a_factory_gets_one_token_per_worker_for_its_queue(secured: RunningDispatcher) -> None:
    factory = minter(secured).factory("fac-east", "compass", ["QA"])
    got = issue(secured, factory, "QA", ["QA.x-0", "QA.x-1", "QA.x-2"], lifetime_s=3600)
    assert [t.worker_id for t in got] == ["QA.x-0", "QA.x-1", "QA.x-2"]
    assert len({t.token for t in got}) == 3 and len({t.token_id for t in got}) == 3
    for t in got:
        claims = jwt.decode(t.token, options={"verify_signature": False})
        assert claims["sub"] == f"pilot:fac-east:{t.worker_id}"
        assert claims["ailuro.queues"] == ["QA"]
        assert claims["wlcg.groups"] == ["/compass", "/compass/pilot"]  # the queue's one VO
        assert claims["exp"] - time.time() == pytest.approx(3600, abs=120) and claims["exp"] == t.expires.seconds
    (row,) = audit_rows(secured)  # one row for the call, never the tokens
    assert (row.actor, row.action, row.target) == ("fac-east", "token.pilot", "queue QA")
    detail = json.loads(row.detail)
    assert detail["tokens"] == 3 and detail["lifetime_s"] == 3600
    assert all(t.token not in row.detail for t in got)


def test_the_dispatcher_accepts_the_pilot_token_for_its_queue(secured: RunningDispatcher) -> None:
    """The token authenticates and serves its queue (a pilot's GetJob), and no other queue."""
    (t,) = issue(secured, minter(secured).factory("fac", "compass", ["QA"]), "QA", ["QA.y-0"])
    with grpc.insecure_channel(str(secured.address)) as ch:
        stub = pilot_pb2_grpc.PilotServiceStub(ch)

        def get_job(queue: str) -> None:
            hello = pilot_pb2.Hello(pilot_id="QA.y-0", queue=queue, node="n1")
            stub.GetJob(pilot_pb2.GetJobRequest(pilot=hello, n=1), timeout=10, metadata=bearer_metadata(t.token))

        get_job("QA")
        with pytest.raises(grpc.RpcError) as err:
            get_job("QB")
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_refusals_record_nothing(secured: RunningDispatcher) -> None:
    m = minter(secured)
    factory_a = m.factory("fac-a", "compass", ["QA"])
    cases = [
        (factory_a, "QB", ["QB.z-0"], {}, grpc.StatusCode.PERMISSION_DENIED),
        (m.user("alice", "compass"), "QA", ["QA.z-0"], {}, grpc.StatusCode.PERMISSION_DENIED),
        (m.pilot("QA", vos=("compass",)), "QA", ["QA.z-0"], {}, grpc.StatusCode.PERMISSION_DENIED),
        (factory_a, "QA", [f"QA.z-{i}" for i in range(1001)], {}, grpc.StatusCode.INVALID_ARGUMENT),
        (factory_a, "QA", ["QA.z-0"], {"lifetime_s": 30 * 86400}, grpc.StatusCode.INVALID_ARGUMENT),
        (factory_a, "NOPE", ["QA.z-0"], {}, grpc.StatusCode.INVALID_ARGUMENT),
    ]
    for token, queue, workers, kw, code in cases:
        with pytest.raises(grpc.RpcError) as err:
            issue(secured, token, queue, workers, **kw)
        assert err.value.code() == code, (queue, len(workers), kw, err.value.details())
    with pytest.raises(grpc.RpcError) as err:
        issue(secured, "not-a-token", "QA", ["QA.z-0"])
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert audit_rows(secured) == []
