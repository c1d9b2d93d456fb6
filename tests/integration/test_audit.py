"""The audit log and the admin-only IssueToken RPC, against a real token-mode dispatcher.

Who submitted (one row per batch), killed, retried, issued a token, registered and changed
workers is recorded in the action's own transaction; only admins read it (``ListAudit``,
``ailuro audit``) or mint tokens (``IssueToken``, ``ailuro token issue``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from ailuro.client import FACTORY_ID_METADATA_KEY, FACTORY_SECRET_METADATA_KEY, Client
from ailuro.errors import InvalidArgument, PermissionDenied, Unauthenticated
from ailuro.v1 import admin_pb2, admin_pb2_grpc, factory_pb2, factory_pb2_grpc
from ailuro_cli.main import app
from dispatcher.auth.config import AuthConfig
from dispatcher.server import RunningDispatcher
from dispatcher.store import audit
from dispatcher.store.engine import open_database
from dispatcher.store.schema import audit as audit_table

RUNNER = CliRunner(env={"COLUMNS": "250", "AILURO_SERVER": None, "AILURO_USER": None, "AILURO_TOKEN": None})


@pytest.fixture
def secured(make_dispatcher: Callable[..., RunningDispatcher], tmp_path: Path) -> RunningDispatcher:
    return make_dispatcher(auth=AuthConfig(mode="token", state_dir=tmp_path / "auth"))


def admin_token(d: RunningDispatcher) -> str:
    assert d.config.auth.state_dir is not None
    return (d.config.auth.state_dir / "admin.token").read_text().strip()


def test_actions_are_recorded_once_per_batch_and_only_admins_read_them(secured: RunningDispatcher) -> None:
    with Client(secured.address, token=admin_token(secured)) as admin:
        issued = admin.admin.issue_token(user="jdoe", vo="compass", roles=["production"], lifetime_s=3600)
        assert issued.expires.seconds - time.time() == pytest.approx(3600, abs=120)
    with Client(secured.address, token=issued.token) as jdoe:
        ids = jdoe.submit([{"transformation": "/bin/true", "job_name": f"j{i}"} for i in range(3)])
        jdoe.kill([ids[2]], reason="wrong input")
        (retried,) = jdoe.retry([ids[2]])
        with pytest.raises(PermissionDenied, match="admin role"):
            list(jdoe.admin.audit())
        with pytest.raises(PermissionDenied, match="admin role"):
            jdoe.admin.issue_token(user="mallory", vo="compass", roles=["admin"])
    with Client(secured.address, token=admin_token(secured)) as admin:
        entries = list(admin.admin.audit())
    got = [(e.actor, e.vo, e.action, e.target) for e in entries]
    assert got == [
        ("jdoe", "compass", "jobs.retry", str(ids[2])),
        ("jdoe", "compass", "jobs.kill", str(ids[2])),
        ("jdoe", "compass", "jobs.submit", f"{ids[0]}..{ids[2]}"),  # one row for the batch of 3
        ("admin", "admin", "token.issue", "user jdoe vo compass"),
    ], got
    retry, kill, submit, token = (json.loads(e.detail) for e in entries)
    assert submit["jobs"] == 3 and submit["sites"] == {"LOCAL": 3}
    assert kill == {"accepted": 1, "jobs": 1, "reason": "wrong input"}
    assert retry["new_ids"] == str(retried)
    assert token["roles"] == ["production"] and token["jti"] == issued.token_id
    assert issued.token not in json.dumps([e.detail for e in entries])  # the token itself is never stored


def test_list_audit_filters_pages_and_bounds(secured: RunningDispatcher) -> None:
    with Client(secured.address, token=admin_token(secured)) as admin:
        for i in range(5):
            admin.admin.issue_token(user=f"u{i}", vo="compass")
        time.sleep(0.05)  # the clock moves on: the issuances above are strictly before start
        start = time.time()
        admin.submit([{"transformation": "/bin/true"}])
        assert [e.target for e in admin.admin.audit(action="token.issue", limit=3)] == [
            "user u4 vo compass",
            "user u3 vo compass",
            "user u2 vo compass",
        ]
        # pages of 2 walk all 5 issuances, newest first, each once
        assert len({e.id for e in admin.admin.audit(action="token.issue", limit=1000)}) == 5
        stub = admin_pb2_grpc.AdminServiceStub(admin._channel)
        meta = admin._metadata
        page = stub.ListAudit(admin_pb2.ListAuditRequest(limit=2), metadata=meta)
        page2 = stub.ListAudit(admin_pb2.ListAuditRequest(limit=2, page_token=page.next_page_token), metadata=meta)
        assert page.entries[-1].id > page2.entries[0].id
        assert [e.action for e in admin.admin.audit(actor="admin", action="jobs.submit")] == ["jobs.submit"]
        from datetime import UTC, datetime

        since = datetime.fromtimestamp(start, UTC)
        assert {e.action for e in admin.admin.audit(since=since)} == {"jobs.submit"}
        assert list(admin.admin.audit(actor="nobody")) == []
        bad = [
            (admin_pb2.ListAuditRequest(limit=1001), "limit"),
            (admin_pb2.ListAuditRequest(action="drop.tables"), "action"),
            (admin_pb2.ListAuditRequest(page_token="x" * 100), "page_token"),
            (admin_pb2.ListAuditRequest(actor="a\x00b"), "actor"),
        ]
        for request, field in bad:
            with pytest.raises(grpc.RpcError) as err:
                stub.ListAudit(request, metadata=meta)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (field, err.value.details())
            assert field in err.value.details() or dict(err.value.trailing_metadata()).get("ailuro-field") == field


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"user": "", "vo": "compass"}, "user"),
        ({"user": "u", "vo": "com pass"}, "vo"),
        ({"user": "u", "vo": "compass", "roles": ["root"]}, "roles[0]"),
        ({"user": "u", "vo": "compass", "queues": ["NOWHERE"]}, "queues[0]"),
        ({"user": "u", "vo": "compass", "lifetime_s": 31 * 86400}, "lifetime_s"),
        ({"user": "u", "vo": "compass", "lifetime_s": -5}, "lifetime_s"),
    ],
)
def test_issue_token_refuses_bad_requests_and_records_nothing(
    secured: RunningDispatcher, kwargs: dict[str, object], field: str
) -> None:
    with Client(secured.address, token=admin_token(secured)) as admin:
        with pytest.raises(InvalidArgument) as err:
            admin.admin.issue_token(**kwargs)  # type: ignore[arg-type]
        assert err.value.field == field
        assert list(admin.admin.audit()) == []


def test_issued_token_carries_its_claims(secured: RunningDispatcher) -> None:
    with Client(secured.address, token=admin_token(secured)) as admin:
        issued = admin.admin.issue_token(user="alice", vo="amber", lifetime_s=60)
    with Client(secured.address, token=issued.token) as alice:
        (pid,) = alice.submit([{"transformation": "/bin/true"}])
        job = alice.get([pid])[0]
        assert (job.owner, job.vo) == ("alice", "amber")
    with Client(secured.address, token=issued.token[:-2], retries=0) as forged, pytest.raises(Unauthenticated):
        forged.get([pid])


def test_worker_registration_and_updates_are_recorded(secured: RunningDispatcher) -> None:
    with Client(secured.address, token=admin_token(secured)) as admin:
        fac = factory_pb2_grpc.FactoryServiceStub(admin._channel)
        meta = (*admin._metadata, (FACTORY_ID_METADATA_KEY, "fac-1"), (FACTORY_SECRET_METADATA_KEY, "s" * 32))
        workers = [
            factory_pb2.Worker(worker_id=f"w{i}", queue="LOCAL", backend="local", factory_id="fac-1") for i in range(4)
        ]
        fac.RegisterWorkers(factory_pb2.RegisterWorkersRequest(workers=workers), metadata=meta)
        update = factory_pb2.WorkerUpdate(worker_id="w0", state=factory_pb2.WORKER_STATE_RUNNING)
        fac.UpdateWorkers(factory_pb2.UpdateWorkersRequest(updates=[update]), metadata=meta)
        entries = list(admin.admin.audit())
    assert [(e.actor, e.action, json.loads(e.detail)) for e in entries] == [
        ("fac-1", "workers.update", {"states": {"running": 1}, "workers": 1}),
        ("fac-1", "workers.register", {"queues": ["LOCAL"], "workers": 4}),
    ]


def test_record_shares_the_action_transaction(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'a.db'}")
    try:
        with pytest.raises(RuntimeError), db.write() as conn:
            audit.record(conn, actor="a", vo="v", action=audit.JOBS_KILL, target="1", detail={}, now=1.0)
            raise RuntimeError("the action failed after its record")
        with db.write() as conn:
            audit.record(
                conn, actor="a", vo="v", action=audit.JOBS_KILL, target="t" * 5000, detail={"x": "y" * 9000}, now=2.0
            )
        with db.read() as conn:
            assert conn.execute(select(func.count()).select_from(audit_table)).scalar() == 1
            (row,) = audit.list_audit(conn)
        assert len(row.target) <= audit.MAX_TARGET and len(row.detail) <= audit.MAX_DETAIL
        assert json.loads(row.detail)["truncated"] is True  # still a JSON object
        with pytest.raises(ValueError, match="unknown audit action"), db.write() as conn:
            audit.record(conn, actor="a", vo="v", action="nope", target="", detail={}, now=3.0)
    finally:
        db.dispose()


def test_ids_text_is_short() -> None:
    assert audit.ids_text([3, 1, 2]) == "1..3"
    assert audit.ids_text([1, 5]) == "1,5"
    assert audit.ids_text(list(range(0, 200, 2))).endswith("(100 ids)")


def test_cli_audit_and_token_issue_through_the_server(secured: RunningDispatcher) -> None:
    base = ["--server", secured.address, "--token", admin_token(secured)]
    issued = RUNNER.invoke(app, [*base, "token", "issue", "--user", "jdoe", "--vo", "compass", "--lifetime", "2h"])
    assert issued.exit_code == 0, issued.output
    token = issued.stdout.strip()
    assert "not in the audit log" not in issued.output
    with Client(secured.address, token=token) as jdoe:
        jdoe.submit([{"transformation": "/bin/true"}])
    shown = RUNNER.invoke(app, [*base, "audit", "--user", "jdoe", "--action", "jobs.submit", "--since", "1h", "--json"])
    assert shown.exit_code == 0, shown.output
    (entry,) = json.loads(shown.stdout)
    assert (entry["actor"], entry["vo"], entry["action"]) == ("jdoe", "compass", "jobs.submit")
    table = RUNNER.invoke(app, [*base, "audit"])
    assert table.exit_code == 0 and "token.issue" in table.stdout and "jobs.submit" in table.stdout
    denied = RUNNER.invoke(app, ["--server", secured.address, "--token", token, "audit"])
    assert denied.exit_code != 0 and "admin role" in denied.output
    too_long = RUNNER.invoke(app, [*base, "token", "issue", "--user", "x", "--vo", "compass", "--lifetime", "60d"])
    assert too_long.exit_code != 0 and "lifetime" in too_long.output
    bad_since = RUNNER.invoke(app, [*base, "audit", "--since", "yesterday"])
    assert bad_since.exit_code != 0 and "--since" in bad_since.output


def test_task_submission_is_recorded(make_dispatcher: Callable[..., RunningDispatcher], tmp_path: Path) -> None:
    from ailuro.queues import QueueConfig
    from tests.integration.test_ddm_api import _put, _storage, _task

    root = tmp_path / "se"
    root.mkdir()
    d = make_dispatcher(
        storage=_storage(root),
        queues=(QueueConfig(name="SITE"),),
        ddm_workers=0,
        auth=AuthConfig(mode="token", state_dir=tmp_path / "auth"),
    )
    for i in range(2):
        _put(root, "DISK", "compass", f"k{i}.raw", b"k%d" % i)
    with Client(d.address, token=admin_token(d)) as admin:
        prod = admin.admin.issue_token(user="prod", vo="compass", roles=["production"]).token
    with Client(d.address, token=prod) as c:
        c.ddm.register_files("compass:raw.K", "DISK", ["k0.raw", "k1.raw"])
        task_id, ids = c.tasks.submit(_task())
    with Client(d.address, token=admin_token(d)) as admin:
        (entry,) = admin.admin.audit(action="task.submit")
    assert (entry.actor, entry.vo, entry.target) == ("prod", "compass", f"task {task_id}")
    assert json.loads(entry.detail) == {"name": "T.api", "jobs": 2, "job_ids": audit.ids_text(ids)}
