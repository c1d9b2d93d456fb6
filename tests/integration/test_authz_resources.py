"""Resource-level authorization on a real dispatcher: owners, VOs, managed jobs, pilot queues,
factories, scopes and secret environments (token mode), and claimed roles (trusted metadata)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from ailuro.v1 import (
    factory_pb2,
    factory_pb2_grpc,
    job_pb2,
    pilot_pb2,
    pilot_pb2_grpc,
    submission_pb2,
    submission_pb2_grpc,
)
from dispatcher.auth import issuer as embedded
from dispatcher.auth.config import AuthConfig
from dispatcher.server import RunningDispatcher

VO_A, VO_B = "compass", "atlas"


class Caller:
    """Submission, pilot and factory stubs that send one token."""

    def __init__(self, channel: grpc.Channel, token: str) -> None:
        self.md = (("authorization", f"Bearer {token}"),)
        self.sub = submission_pb2_grpc.SubmissionServiceStub(channel)
        self.pilot = pilot_pb2_grpc.PilotServiceStub(channel)
        self.factory = factory_pb2_grpc.FactoryServiceStub(channel)

    def submit(self, *jobs: job_pb2.Job) -> list[int]:
        req = submission_pb2.SubmitJobsRequest(jobs=jobs or [job_pb2.Job(transformation="/bin/true")])
        return list(self.sub.SubmitJobs(req, metadata=self.md, timeout=30).panda_ids)

    def get(self, *ids: int) -> list[job_pb2.Job]:
        return list(self.sub.GetJobs(submission_pb2.GetJobsRequest(panda_ids=ids), metadata=self.md, timeout=30).jobs)

    def kill(self, *ids: int) -> Any:
        return self.sub.KillJobs(submission_pb2.KillJobsRequest(panda_ids=ids), metadata=self.md, timeout=30)

    def retry(self, *ids: int) -> Any:
        return self.sub.RetryJobs(submission_pb2.RetryJobsRequest(panda_ids=ids), metadata=self.md, timeout=30)

    def list(self, **kw: Any) -> submission_pb2.ListJobsResponse:
        return self.sub.ListJobs(submission_pb2.ListJobsRequest(**kw), metadata=self.md, timeout=30)


def refused(call: Callable[[], Any]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code(), info.value.details()


@pytest.fixture
def secured(make_dispatcher: Callable[..., RunningDispatcher], tmp_path: Path) -> RunningDispatcher:
    return make_dispatcher(auth=AuthConfig(mode="token", state_dir=tmp_path / "auth"))


@pytest.fixture
def channel(secured: RunningDispatcher) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(secured.address) as ch:
        yield ch


@pytest.fixture
def who(secured: RunningDispatcher, channel: grpc.Channel) -> Callable[..., Caller]:
    state = secured.config.auth.state_dir
    assert state is not None
    key = embedded.load_key(embedded.IssuerFiles(state_dir=state))

    def make(user: str, vo: str = VO_A, **kw: Any) -> Caller:
        token = embedded.issue(key, issuer="ailuro-embedded", audience="ailuro", user=user, vo=vo, **kw)
        return Caller(channel, token)

    return make


def test_another_vo_cannot_get_kill_retry_or_read_a_job(who: Callable[..., Caller]) -> None:
    alice, bob = who("alice"), who("bob", VO_B)
    (job,) = alice.submit()
    for call in (lambda: bob.get(job), lambda: bob.kill(job), lambda: bob.retry(job)):
        code, details = refused(call)
        assert (code, details) == (grpc.StatusCode.NOT_FOUND, f"panda_ids[0]: no job with panda_id {job}")
    # answered exactly like an id that does not exist: nothing leaks across VOs
    unknown = job + 1000
    assert refused(lambda: bob.get(unknown)) == (
        grpc.StatusCode.NOT_FOUND,
        f"panda_ids[0]: no job with panda_id {unknown}",
    )
    events = submission_pb2.GetJobEventsRequest(panda_id=job)
    assert refused(lambda: bob.sub.GetJobEvents(events, metadata=bob.md, timeout=30))[0] == grpc.StatusCode.NOT_FOUND
    log = submission_pb2.GetJobLogRequest(panda_id=job)
    assert refused(lambda: next(bob.sub.GetJobLog(log, metadata=bob.md, timeout=30)))[0] == grpc.StatusCode.NOT_FOUND
    # still queued and alice's: nothing was done to it
    (still,) = alice.get(job)
    assert (still.status, still.owner) == (job_pb2.JOB_STATUS_ACTIVATED, "alice")


def test_a_vo_member_reads_but_does_not_kill_or_retry_anothers_job(who: Callable[..., Caller]) -> None:
    alice, carol = who("alice"), who("carol")
    (job,) = alice.submit()
    assert [j.panda_id for j in carol.get(job)] == [job]
    code, details = refused(lambda: carol.kill(job))
    assert code == grpc.StatusCode.PERMISSION_DENIED and "belongs to 'alice'" in details
    alice.kill(job)
    code, _ = refused(lambda: carol.retry(job))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    (new,) = alice.retry(job).new_panda_ids
    assert alice.get(new)[0].owner == "alice"


def test_lists_and_watches_stay_inside_the_vo(who: Callable[..., Caller]) -> None:
    alice, bob = who("alice"), who("bob", VO_B)
    a_ids = alice.submit(job_pb2.Job(transformation="/bin/true"), job_pb2.Job(transformation="/bin/true"))
    (b_id,) = bob.submit()
    listed = bob.list()
    assert [j.panda_id for j in listed.jobs] == [b_id] and listed.total == 1
    assert list(bob.list(vo=VO_A).jobs) == [] and bob.list(vo=VO_A).total == 0
    assert sorted(j.panda_id for j in alice.list().jobs) == sorted(a_ids)
    # bob watches everything from his job's creation on; alice's kill comes first, bob's own
    # second: he sees only his own job's events (replayed from the table, then live)
    first = bob.sub.GetJobEvents(submission_pb2.GetJobEventsRequest(panda_id=b_id), metadata=bob.md, timeout=30)
    replay = bob.sub.WatchJobs(
        submission_pb2.WatchJobsRequest(after_event_id=first.events[0].event_id - 1), metadata=bob.md, timeout=60
    )
    alice.kill(*a_ids)
    bob.kill(b_id)
    seen = [next(replay) for _ in range(3)]  # b's two creation events, then its kill
    assert {e.panda_id for e in seen} == {b_id}
    replay.cancel()


def test_users_submit_user_jobs_production_managed_ones(who: Callable[..., Caller]) -> None:
    alice, prod = who("alice"), who("prod1", roles=["production"])
    managed = job_pb2.Job(transformation="/bin/true", prod_source_label="managed")
    code, details = refused(lambda: alice.submit(managed))
    assert code == grpc.StatusCode.PERMISSION_DENIED and "production" in details
    (job,) = prod.submit(managed)
    # production kills the VO's managed jobs; a plain user cannot, nor another user's plain job
    assert refused(lambda: alice.kill(job))[0] == grpc.StatusCode.PERMISSION_DENIED
    (mine,) = alice.submit()
    assert refused(lambda: prod.kill(mine))[0] == grpc.StatusCode.PERMISSION_DENIED
    assert prod.kill(job).results[0].accepted
    # nobody submits into another VO
    code, details = refused(lambda: alice.submit(job_pb2.Job(transformation="/bin/true", vo=VO_B)))
    assert code == grpc.StatusCode.PERMISSION_DENIED and VO_B in details


def test_a_pilot_serves_only_the_queues_of_its_token(who: Callable[..., Caller]) -> None:
    alice = who("alice")
    elsewhere, local = who("p1", roles=["pilot"], queues=["ELSEWHERE"]), who("p2", roles=["pilot"], queues=["LOCAL"])
    alice.submit(job_pb2.Job(transformation="/bin/true", environment={"API_TOKEN": "s3cret", "MODE": "fast"}))
    hello = pilot_pb2.Hello(pilot_id="p1", queue="LOCAL", node="n")
    msgs = [pilot_pb2.PilotMessage(hello=hello), pilot_pb2.PilotMessage(job_request=pilot_pb2.JobRequest(n=1))]
    code, details = refused(lambda: next(elsewhere.pilot.Connect(iter(msgs), metadata=elsewhere.md, timeout=30)))
    assert code == grpc.StatusCode.PERMISSION_DENIED and "'LOCAL'" in details
    req = pilot_pb2.GetJobRequest(pilot=hello, n=1)
    assert refused(lambda: elsewhere.pilot.GetJob(req, metadata=elsewhere.md, timeout=30))[0] == (
        grpc.StatusCode.PERMISSION_DENIED
    )
    # the pilot that holds the job gets its secret environment: it must run with it
    got = local.pilot.GetJob(
        pilot_pb2.GetJobRequest(pilot=pilot_pb2.Hello(pilot_id="p2", queue="LOCAL", node="n"), n=1),
        metadata=local.md,
        timeout=30,
    )
    assert dict(got.assignments[0].job.environment) == {"API_TOKEN": "s3cret", "MODE": "fast"}
    # a pilot token is no user: it reads no jobs
    assert refused(lambda: local.list())[0] == grpc.StatusCode.PERMISSION_DENIED


def test_secret_environment_only_for_the_owner(
    who: Callable[..., Caller], secured: RunningDispatcher, channel: grpc.Channel
) -> None:
    alice, carol = who("alice"), who("carol")
    env = {"API_TOKEN": "s3cret", "db_password": "pw", "MODE": "fast"}
    (job,) = alice.submit(job_pb2.Job(transformation="/bin/true", environment=env))
    assert dict(alice.get(job)[0].environment) == env
    hidden = {"API_TOKEN": "<hidden>", "db_password": "<hidden>", "MODE": "fast"}
    assert dict(carol.get(job)[0].environment) == hidden
    assert dict(carol.list().jobs[0].environment) == hidden
    state = secured.config.auth.state_dir
    assert state is not None
    admin = Caller(channel, (state / "admin.token").read_text().strip())
    assert dict(admin.get(job)[0].environment) == hidden


def test_a_factory_owns_its_workers_by_token(who: Callable[..., Caller]) -> None:
    fac1, fac2 = who("fac1", roles=["factory"], queues=["LOCAL"]), who("fac2", roles=["factory"])
    worker = factory_pb2.Worker(worker_id="w1", queue="LOCAL", factory_id="fac1", batch_id="1")
    fac1.factory.RegisterWorkers(factory_pb2.RegisterWorkersRequest(workers=[worker]), metadata=fac1.md, timeout=30)
    # no secret needed with a token; another factory can neither claim nor change the worker
    code, _ = refused(
        lambda: fac2.factory.RegisterWorkers(
            factory_pb2.RegisterWorkersRequest(workers=[worker]), metadata=fac2.md, timeout=30
        )
    )
    assert code == grpc.StatusCode.PERMISSION_DENIED
    update = factory_pb2.UpdateWorkersRequest(
        updates=[factory_pb2.WorkerUpdate(worker_id="w1", state=factory_pb2.WORKER_STATE_CANCELLED)]
    )
    assert refused(lambda: fac2.factory.UpdateWorkers(update, metadata=fac2.md, timeout=30))[0] == (
        grpc.StatusCode.PERMISSION_DENIED
    )
    listed = fac2.factory.ListWorkers(factory_pb2.ListWorkersRequest(), metadata=fac2.md, timeout=30)
    assert list(listed.workers) == []
    other = factory_pb2.ListWorkersRequest(factory_id="fac1")
    assert refused(lambda: fac2.factory.ListWorkers(other, metadata=fac2.md, timeout=30))[0] == (
        grpc.StatusCode.PERMISSION_DENIED
    )
    mine = fac1.factory.ListWorkers(factory_pb2.ListWorkersRequest(), metadata=fac1.md, timeout=30)
    assert [w.worker_id for w in mine.workers] == ["w1"]
    fac1.factory.UpdateWorkers(update, metadata=fac1.md, timeout=30)
    # its token binds the queues whose statistics it reads
    stats = fac1.factory.GetQueueStats(factory_pb2.GetQueueStatsRequest(), metadata=fac1.md, timeout=30)
    assert [q.queue for q in stats.queues] == ["LOCAL"]


def test_scopes_restrict_what_a_token_does(secured: RunningDispatcher, channel: grpc.Channel) -> None:
    import jwt

    state = secured.config.auth.state_dir
    assert state is not None
    key = embedded.load_key(embedded.IssuerFiles(state_dir=state))
    full = embedded.issue(key, issuer="ailuro-embedded", audience="ailuro", user="alice", vo=VO_A)
    claims = jwt.decode(full, options={"verify_signature": False})
    claims["scope"] = "compute.read"
    reader = Caller(
        channel, jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": embedded.public_jwk(key)["kid"]})
    )
    code, details = refused(lambda: reader.submit())
    assert code == grpc.StatusCode.PERMISSION_DENIED and "compute.create" in details
    assert reader.list().total == 0


def test_trusted_metadata_believes_claimed_roles(dispatcher: RunningDispatcher) -> None:
    """Development mode: a caller claiming the user role is held to it like a token holder."""
    with grpc.insecure_channel(dispatcher.address) as ch:
        stub = submission_pb2_grpc.SubmissionServiceStub(ch)

        def as_(user: str, vo: str) -> tuple[tuple[str, str], ...]:
            return (("ailuro-user", user), ("ailuro-vo", vo), ("ailuro-roles", "user"))

        req = submission_pb2.SubmitJobsRequest(jobs=[job_pb2.Job(transformation="/bin/true")])
        (job,) = stub.SubmitJobs(req, metadata=as_("alice", VO_A), timeout=30).panda_ids
        kill = submission_pb2.KillJobsRequest(panda_ids=[job])
        assert refused(lambda: stub.KillJobs(kill, metadata=as_("carol", VO_A), timeout=30))[0] == (
            grpc.StatusCode.PERMISSION_DENIED
        )
        assert refused(lambda: stub.KillJobs(kill, metadata=as_("bob", VO_B), timeout=30))[0] == (
            grpc.StatusCode.NOT_FOUND
        )
        pilot_md = (("ailuro-roles", "pilot"),)
        listing = submission_pb2.ListJobsRequest()
        assert refused(lambda: stub.ListJobs(listing, metadata=pilot_md, timeout=30))[0] == (
            grpc.StatusCode.PERMISSION_DENIED
        )
        # no role claimed: the development default acts on every job, as before roles existed
        assert stub.KillJobs(kill, timeout=30).results[0].accepted
