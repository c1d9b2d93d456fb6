"""Pilots bound to their leases (issue 14), against real dispatchers in token mode, both databases.

A pilot id belongs to the principal whose token first presented it; heartbeats and finals count
only from the session holding the lease. A stranger (another valid pilot token) can neither
report on a job it does not hold, nor take over a live pilot's id, on the same dispatcher or
another one; a kill delivered to the pilot wins over its later "finished". Every test ends with
the consistency check.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlalchemy import create_engine, text

from ailuro import errorcodes
from ailuro.v1 import job_pb2, pilot_pb2, pilot_pb2_grpc, submission_pb2, submission_pb2_grpc
from dispatcher.auth import issuer as embedded
from dispatcher.auth.config import AuthConfig
from dispatcher.server import RunningDispatcher
from loadtests import consistency

J = job_pb2
P = pilot_pb2
S = submission_pb2


class TokenPilot:
    """A pilot speaking the Connect protocol directly, with a bearer token on its stream.

    (The shape of ``conftest.RawPilot``, which sends no credentials.)
    """

    def __init__(self, address: str, *, pilot_id: str, token: str, held: Any = ()) -> None:
        self._out: queue.Queue[Any] = queue.Queue()
        self._in: queue.Queue[Any] = queue.Queue()
        self._kept: list[Any] = []
        self.channel = grpc.insecure_channel(address)
        self._out.put(P.PilotMessage(hello=P.Hello(pilot_id=pilot_id, queue="LOCAL", held_jobs=held)))

        def requests() -> Iterator[Any]:
            while (msg := self._out.get()) is not None:
                yield msg

        self.call = pilot_pb2_grpc.PilotServiceStub(self.channel).Connect(requests(), metadata=bearer(token))

        def pump() -> None:
            try:
                for msg in self.call:
                    self._in.put(msg)
            except grpc.RpcError as exc:
                self._in.put(exc)
            self._in.put(None)

        self._thread = threading.Thread(target=pump, daemon=True)
        self._thread.start()

    def request(self, n: int = 1) -> None:
        self._out.put(P.PilotMessage(job_request=P.JobRequest(n=n)))

    def heartbeat(self, panda_id: int, epoch: int, status: int, **metrics: Any) -> None:
        hb = P.Heartbeat(panda_id=panda_id, lease_epoch=epoch, status=status, metrics=J.JobMetrics(**metrics))
        self._out.put(P.PilotMessage(heartbeats=P.HeartbeatBatch(heartbeats=[hb])))

    def final(self, panda_id: int, epoch: int, status: int, **fields: Any) -> None:
        self._out.put(P.PilotMessage(final=P.JobFinal(panda_id=panda_id, lease_epoch=epoch, status=status, **fields)))

    def expect(self, kind: str, timeout: float = 10.0) -> Any:
        """The next message whose oneof is ``kind``; raises the stream's error, EOFError or TimeoutError."""
        for i, msg in enumerate(self._kept):
            if msg.WhichOneof("msg") == kind:
                return getattr(self._kept.pop(i), kind)
        deadline = time.monotonic() + timeout
        while True:
            try:
                msg = self._in.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(f"no {kind} within {timeout} s") from None
            if msg is None:
                raise EOFError("stream ended")
            if isinstance(msg, BaseException):
                raise msg
            if msg.WhichOneof("msg") == kind:
                return getattr(msg, kind)
            self._kept.append(msg)

    def ack_for(self, panda_id: int, *, final: bool = False, timeout: float = 10.0) -> Any:
        """The next Ack about ``panda_id`` (a final's when ``final``); other acks are kept."""
        deadline = time.monotonic() + timeout
        pending: list[Any] = []
        while True:
            for i, ack in enumerate(pending):
                if ack.panda_id == panda_id and ack.is_final == final:
                    rest = pending[:i] + pending[i + 1 :]
                    if rest:
                        self._kept.append(P.DispatcherMessage(acks=P.AckBatch(acks=rest)))
                    return ack
            pending.extend(self.expect("acks", timeout=max(0.01, deadline - time.monotonic())).acks)

    def refusal(self, timeout: float = 10.0) -> grpc.RpcError:
        """The error the stream ended with (it must end with one)."""
        with pytest.raises(grpc.RpcError) as info:
            self.expect("assignment", timeout=timeout)
        return info.value

    def close(self) -> None:
        self._out.put(None)
        self._thread.join(10)
        self.channel.close()


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


@pytest.fixture
def secured(make_dispatcher: Callable[..., RunningDispatcher], tmp_path: Path) -> Callable[[], RunningDispatcher]:
    """Dispatchers in token mode sharing one embedded issuer (and the test's database)."""
    return lambda: make_dispatcher(auth=AuthConfig(mode="token", state_dir=tmp_path / "auth"))


def token(d: RunningDispatcher, user: str, *roles: str) -> str:
    key = embedded.load_key(embedded.IssuerFiles(state_dir=d.config.auth.state_dir))
    return embedded.issue(
        key, issuer="ailuro-embedded", audience="ailuro", user=user, vo="compass", roles=roles, queues=["LOCAL"]
    )


class World:
    """One secured dispatcher, a user who submits, a victim pilot and a stranger pilot."""

    def __init__(self, d: RunningDispatcher, make: Callable[..., TokenPilot]) -> None:
        self.d = d
        self.user = token(d, "alice")
        self.victim_token = token(d, "pilot-factory-a", "pilot")
        self.stranger_token = token(d, "mallory", "pilot")
        self.channel = grpc.insecure_channel(d.address)
        self.sub = submission_pb2_grpc.SubmissionServiceStub(self.channel)
        self.pilots = pilot_pb2_grpc.PilotServiceStub(self.channel)
        self.make = make
        self.ids: list[int] = []

    def submit(self, n: int = 1) -> list[int]:
        req = S.SubmitJobsRequest(jobs=[J.Job(transformation="/bin/true") for _ in range(n)])
        ids = list(self.sub.SubmitJobs(req, metadata=bearer(self.user), timeout=30).panda_ids)
        self.ids += ids
        return ids

    def job(self, pid: int) -> Any:
        return self.sub.GetJobs(S.GetJobsRequest(panda_ids=[pid]), metadata=bearer(self.user), timeout=30).jobs[0]

    def victim_with_job(self, pilot_id: str = "victim") -> tuple[TokenPilot, int, int]:
        (pid,) = self.submit()
        victim = self.make(self.d.address, pilot_id=pilot_id, token=self.victim_token)
        victim.request(1)
        a = victim.expect("assignment")
        assert a.job.panda_id == pid
        victim.heartbeat(pid, a.lease_epoch, J.JOB_STATUS_RUNNING)
        assert victim.ack_for(pid).result == P.ACK_RESULT_OK
        return victim, pid, a.lease_epoch

    def assert_consistent(self, db_url: str) -> None:
        res = consistency.check(db_url, submitted=self.ids)
        assert res.ok, res.summary()


@pytest.fixture
def world(secured: Callable[[], RunningDispatcher]) -> Iterator[World]:
    made: list[TokenPilot] = []

    def make(address: str, **kw: Any) -> TokenPilot:
        p = TokenPilot(address, **kw)
        made.append(p)
        return p

    w = World(secured(), make)
    yield w
    for p in made:
        p.close()
    w.channel.close()


def lease_expires(db_url: str, pid: int) -> float:
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            return float(conn.execute(text(f"SELECT lease_expires FROM jobs WHERE panda_id = {pid}")).scalar_one())
    finally:
        engine.dispose()


def test_a_strangers_final_for_a_leased_job_is_refused(world: World, db_url: str) -> None:
    victim, pid, epoch = world.victim_with_job()
    stranger = world.make(world.d.address, pilot_id="stranger", token=world.stranger_token)
    # on its own stream, naming the victim's live lease: REJECTED, nothing written
    stranger.final(pid, epoch, J.JOB_STATUS_FAILED, retryable=False)
    ack = stranger.ack_for(pid, final=True)
    assert ack.result == P.ACK_RESULT_REJECTED and "not leased to pilot stranger" in ack.message
    # through UpdateJob, claiming the victim's pilot id: the id is not the stranger's
    final = P.JobFinal(panda_id=pid, lease_epoch=epoch, status=J.JOB_STATUS_FINISHED)
    with pytest.raises(grpc.RpcError) as info:
        world.pilots.UpdateJob(
            P.UpdateJobRequest(pilot_id="victim", finals=[final]), metadata=bearer(world.stranger_token), timeout=30
        )
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert ("ailuro-field", "pilot_id") in tuple(info.value.trailing_metadata())
    assert world.job(pid).status == J.JOB_STATUS_RUNNING
    # the holder's own final still counts
    victim.final(pid, epoch, J.JOB_STATUS_FINISHED)
    assert victim.ack_for(pid, final=True).result == P.ACK_RESULT_OK
    assert world.job(pid).status == J.JOB_STATUS_FINISHED
    world.assert_consistent(db_url)


def test_a_strangers_heartbeat_is_refused_and_does_not_displace_the_holders(world: World, db_url: str) -> None:
    victim, pid, epoch = world.victim_with_job()
    stranger = world.make(world.d.address, pilot_id="stranger", token=world.stranger_token)
    # alone in its flush, with the job's own status: PostgreSQL's one-UPDATE renewal must miss it too
    stranger.heartbeat(pid, epoch, J.JOB_STATUS_RUNNING)
    ack = stranger.ack_for(pid)
    assert ack.result == P.ACK_RESULT_REJECTED and "not leased to pilot stranger" in ack.message
    before = lease_expires(db_url, pid)
    # both in the same coalescing window: the stranger's beat must not replace the holder's
    stranger.heartbeat(pid, epoch, J.JOB_STATUS_HOLDING)
    victim.heartbeat(pid, epoch, J.JOB_STATUS_RUNNING, cpu_time_s=3.0)
    ack = stranger.ack_for(pid)
    assert ack.result == P.ACK_RESULT_REJECTED and "not leased to pilot stranger" in ack.message
    assert victim.ack_for(pid).result == P.ACK_RESULT_OK
    assert lease_expires(db_url, pid) > before
    got = world.job(pid)
    assert got.status == J.JOB_STATUS_RUNNING and got.metrics.cpu_time_s == 3.0
    beat = P.Heartbeat(panda_id=pid, lease_epoch=epoch, status=J.JOB_STATUS_RUNNING)
    with pytest.raises(grpc.RpcError) as info:
        world.pilots.UpdateJob(
            P.UpdateJobRequest(pilot_id="victim", heartbeats=[beat]), metadata=bearer(world.stranger_token), timeout=30
        )
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    victim.final(pid, epoch, J.JOB_STATUS_FINISHED)
    assert victim.ack_for(pid, final=True).result == P.ACK_RESULT_OK
    world.assert_consistent(db_url)


def test_a_hello_stealing_a_live_pilot_id_is_refused(
    world: World, db_url: str, make_dispatcher: Callable[..., RunningDispatcher]
) -> None:
    victim, pid, epoch = world.victim_with_job()
    thief = world.make(world.d.address, pilot_id="victim", token=world.stranger_token)
    err = thief.refusal()
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED and "another principal" in (err.details() or "")
    assert ("ailuro-field", "hello.pilot_id") in tuple(err.trailing_metadata())
    # nor through another dispatcher on the same database, nor through GetJob
    other = make_dispatcher(auth=world.d.config.auth)
    err = world.make(other.address, pilot_id="victim", token=world.stranger_token).refusal()
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    hello = P.Hello(pilot_id="victim", queue="LOCAL")
    with pytest.raises(grpc.RpcError) as info:
        world.pilots.GetJob(P.GetJobRequest(pilot=hello, n=1), metadata=bearer(world.stranger_token), timeout=30)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # the live pilot was not disturbed
    victim.heartbeat(pid, epoch, J.JOB_STATUS_RUNNING)
    assert victim.ack_for(pid).result == P.ACK_RESULT_OK
    # its own principal may reconnect and take the session over, holding its job
    victim.close()
    back = world.make(
        world.d.address, pilot_id="victim", token=world.victim_token, held=[P.HeldJob(panda_id=pid, lease_epoch=epoch)]
    )
    assert back.ack_for(pid).result == P.ACK_RESULT_OK
    # while it holds the lease, even a closed id stays its own
    back.close()
    err = world.make(world.d.address, pilot_id="victim", token=world.stranger_token).refusal()
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    world.assert_consistent(db_url)


def test_finished_after_a_delivered_kill_ends_cancelled_with_the_kills_error(world: World, db_url: str) -> None:
    victim, pid, epoch = world.victim_with_job()
    res = world.sub.KillJobs(
        S.KillJobsRequest(panda_ids=[pid], reason="wrong input"), metadata=bearer(world.user), timeout=30
    ).results[0]
    assert res.accepted
    assert victim.expect("command", timeout=10).type == P.COMMAND_TYPE_KILL  # delivered
    out = J.File(lfn="out.dat", type=J.FILE_TYPE_OUTPUT, size=1, adler32="00000001", pfn="file:///x/out.dat")
    victim.final(pid, epoch, J.JOB_STATUS_FINISHED, files=[out])
    ack = victim.ack_for(pid, final=True)
    assert ack.result == P.ACK_RESULT_OK and "kill" in ack.message
    got = world.job(pid)
    assert got.status == J.JOB_STATUS_CANCELLED
    assert [(e.component, e.code, e.diag) for e in got.errors] == [
        (J.ERROR_COMPONENT_DISPATCHER, errorcodes.KILLED_BY_USER, "killed by alice: wrong input")
    ]
    world.assert_consistent(db_url)


def test_finished_before_the_kill_reached_the_pilot_stands(world: World, db_url: str) -> None:
    """Unary pilots get commands in UpdateJob's answer: a final in the same call precedes the kill."""
    (pid,) = world.submit()
    hello = P.Hello(pilot_id="unary-victim", queue="LOCAL")
    tok = bearer(world.victim_token)
    (a,) = world.pilots.GetJob(P.GetJobRequest(pilot=hello, n=1), metadata=tok, timeout=30).assignments
    world.sub.KillJobs(S.KillJobsRequest(panda_ids=[pid]), metadata=bearer(world.user), timeout=30)
    final = P.JobFinal(panda_id=pid, lease_epoch=a.lease_epoch, status=J.JOB_STATUS_FINISHED)
    up = world.pilots.UpdateJob(P.UpdateJobRequest(pilot_id="unary-victim", finals=[final]), metadata=tok, timeout=30)
    assert [x.result for x in up.acks] == [P.ACK_RESULT_OK]
    assert world.job(pid).status == J.JOB_STATUS_FINISHED
    world.assert_consistent(db_url)


def test_a_spooled_final_handed_in_by_the_holders_principal_counts(world: World, db_url: str) -> None:
    """The spool hand-off (a dead pilot's final sent by the next pilot on the node) stays possible
    for pilots of the same principal, and only for them."""
    victim, pid, epoch = world.victim_with_job()
    victim.close()
    stranger = world.make(world.d.address, pilot_id="stranger", token=world.stranger_token)
    stranger.final(pid, epoch, J.JOB_STATUS_FINISHED)
    assert stranger.ack_for(pid, final=True).result == P.ACK_RESULT_REJECTED
    heir = world.make(world.d.address, pilot_id="heir", token=world.victim_token)
    heir.final(pid, epoch, J.JOB_STATUS_FINISHED)
    assert heir.ack_for(pid, final=True).result == P.ACK_RESULT_OK
    got = world.job(pid)
    assert got.status == J.JOB_STATUS_FINISHED and got.pilot_id == "victim"
    world.assert_consistent(db_url)


def test_a_kill_sent_on_reconnect_counts_as_delivered(world: World, db_url: str) -> None:
    """A pilot that was away when its job was killed gets the kill with its resumed lease (marked
    delivered in the same transaction); its "finished" after that is overruled as well."""
    victim, pid, epoch = world.victim_with_job()
    victim.close()
    world.sub.KillJobs(S.KillJobsRequest(panda_ids=[pid]), metadata=bearer(world.user), timeout=30)
    back = world.make(
        world.d.address, pilot_id="victim", token=world.victim_token, held=[P.HeldJob(panda_id=pid, lease_epoch=epoch)]
    )
    assert back.ack_for(pid).result == P.ACK_RESULT_OK
    assert back.expect("command").type == P.COMMAND_TYPE_KILL
    back.final(pid, epoch, J.JOB_STATUS_FINISHED)
    assert back.ack_for(pid, final=True).result == P.ACK_RESULT_OK
    got = world.job(pid)
    assert got.status == J.JOB_STATUS_CANCELLED and [e.code for e in got.errors] == [errorcodes.KILLED_BY_USER]
    world.assert_consistent(db_url)
