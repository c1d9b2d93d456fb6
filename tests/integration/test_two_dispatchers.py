"""Two dispatcher processes on one PostgreSQL database, 50 concurrent pilot streams, 5,000 jobs.

Every job must be dispatched exactly once (one ``sent`` event, one assignment seen by a pilot),
none lost, all finished. Pilots are real gRPC streams split across the two processes.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from dispatcher_procs import DispatcherProcess
from sqlalchemy import create_engine, text

from ailuro.v1 import job_pb2, pilot_pb2, pilot_pb2_grpc, submission_pb2, submission_pb2_grpc

J = job_pb2
P = pilot_pb2
S = submission_pb2

N_JOBS = 5000
N_PILOTS = 50
DEADLINE_S = 240.0

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.timeout(400)]


@pytest.fixture
def two_dispatchers(pg_url: str, tmp_path: Path) -> Iterator[list[str]]:
    procs = [DispatcherProcess(pg_url, tmp_path, name) for name in ("d1", "d2")]
    try:
        yield [p.wait_ready() for p in procs]
        for p in procs:
            assert p.proc.poll() is None, f"{p.name} died during the test:\n{p.log()}"
    finally:
        codes = [p.stop() for p in procs]
        for p, rc in zip(procs, codes, strict=True):
            assert rc == 0, f"{p.name} did not stop cleanly (rc={rc}):\n{p.log()}"


class Tally:
    """What the pilots saw, shared by all pilot coroutines."""

    def __init__(self) -> None:
        self.assigned: Counter[int] = Counter()
        self.finished = 0
        self.bad_acks: list[P.Ack] = []


async def _pilot(address: str, pilot_id: str, tally: Tally) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        call = pilot_pb2_grpc.PilotServiceStub(channel).Connect()
        await call.write(P.PilotMessage(hello=P.Hello(pilot_id=pilot_id, queue="LOCAL", node="wn")))
        await call.write(P.PilotMessage(job_request=P.JobRequest(n=1)))
        pending_finals = 0
        while True:
            msg = await call.read()
            assert msg is not grpc.aio.EOF, f"{pilot_id}: stream ended early"
            kind = msg.WhichOneof("msg")
            if kind == "assignment":
                a = msg.assignment
                tally.assigned[a.job.panda_id] += 1
                hb = P.Heartbeat(panda_id=a.job.panda_id, lease_epoch=a.lease_epoch, status=J.JOB_STATUS_RUNNING)
                await call.write(P.PilotMessage(heartbeats=P.HeartbeatBatch(heartbeats=[hb])))
                final = P.JobFinal(panda_id=a.job.panda_id, lease_epoch=a.lease_epoch, status=J.JOB_STATUS_FINISHED)
                await call.write(P.PilotMessage(final=final))
                pending_finals += 1
                await call.write(P.PilotMessage(job_request=P.JobRequest(n=1)))
            elif kind == "no_job":
                if tally.finished >= N_JOBS and pending_finals == 0:
                    break
                await asyncio.sleep(0.05)
                await call.write(P.PilotMessage(job_request=P.JobRequest(n=1)))
            elif kind == "acks":
                for ack in msg.acks.acks:
                    if ack.is_final:
                        pending_finals -= 1
                        if ack.result == P.ACK_RESULT_OK:
                            tally.finished += 1
                        else:
                            tally.bad_acks.append(ack)
                    elif ack.result not in (P.ACK_RESULT_OK, P.ACK_RESULT_STALE_EPOCH):
                        # STALE is fine for a heartbeat flushed after its job's final committed
                        tally.bad_acks.append(ack)
        await call.done_writing()
        while await call.read() is not grpc.aio.EOF:
            pass


async def test_two_dispatchers_dispatch_every_job_exactly_once(two_dispatchers: list[str], pg_url: str) -> None:
    d1, d2 = two_dispatchers
    ids: list[int] = []
    for i in range(5):
        async with grpc.aio.insecure_channel(two_dispatchers[i % 2]) as ch:
            stub = submission_pb2_grpc.SubmissionServiceStub(ch)
            jobs = [J.Job(transformation="/bin/true", job_name=f"c{i}-{k}") for k in range(N_JOBS // 5)]
            resp = await stub.SubmitJobs(S.SubmitJobsRequest(request_id=f"batch-{i}", jobs=jobs))
            ids += resp.panda_ids
    assert len(set(ids)) == N_JOBS

    tally = Tally()
    pilots = [_pilot(d1 if i % 2 else d2, f"pilot-{i}", tally) for i in range(N_PILOTS)]
    await asyncio.wait_for(asyncio.gather(*pilots), DEADLINE_S)

    assert not tally.bad_acks, tally.bad_acks[:5]
    assert set(tally.assigned) == set(ids), "some jobs were never dispatched"
    assert max(tally.assigned.values()) == 1, "a job was dispatched twice"
    assert tally.finished == N_JOBS

    engine = create_engine(pg_url)
    try:
        with engine.connect() as conn:
            sent = conn.execute(
                text("SELECT count(*), count(DISTINCT panda_id) FROM job_events WHERE to_status = 'sent'")
            ).one()
            states = dict(conn.execute(text("SELECT status, count(*) FROM jobs GROUP BY status")).all())
            epochs = conn.execute(text("SELECT min(lease_epoch), max(lease_epoch), max(attempt_nr) FROM jobs")).one()
            finals = conn.execute(text("SELECT count(*) FROM job_events WHERE to_status = 'finished'")).scalar_one()
    finally:
        engine.dispose()
    assert tuple(sent) == (N_JOBS, N_JOBS)
    assert states == {"finished": N_JOBS}
    assert tuple(epochs) == (1, 1, 1)
    assert finals == N_JOBS
