"""One bad item of a group commit fails alone (issue 12, finding 3), on SQLite and PostgreSQL.

Several real pilot streams (raw Connect clients over real gRPC) each hold jobs; one item of a
heartbeat flush or of a finals group commit is poisoned, either with a value validation must
refuse (NaN metric, NUL in a diag, an unknown error component) or with a row the database
itself refuses (a trigger that raises on UPDATE of one job: an error nobody foresaw). The
poisoned item's sender gets REJECTED for that item alone; every other pilot's acks, lease
renewals and final reports go through, and every stream stays open. Each test ends with the
consistency check.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import grpc
import pytest
from poison import poisoned_row
from sqlalchemy import create_engine, text

from ailuro.v1 import job_pb2, pilot_pb2, submission_pb2, submission_pb2_grpc
from dispatcher.server import RunningDispatcher
from loadtests import consistency

J = job_pb2
P = pilot_pb2
PILOTS = 6
JOBS_EACH = 4


def leases(db_url: str, ids: list[int]) -> dict[int, float]:
    """``lease_expires`` per job, read straight from the database."""
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(f"SELECT panda_id, lease_expires FROM jobs WHERE panda_id IN ({','.join(map(str, ids))})")
            )
            return {int(pid): float(exp) for pid, exp in rows}
    finally:
        engine.dispose()


class Fleet:
    """``PILOTS`` raw pilots, each holding ``JOBS_EACH`` jobs in state starting."""

    def __init__(self, d: RunningDispatcher, raw_pilot: Callable[..., Any]) -> None:
        with grpc.insecure_channel(d.address) as ch:
            sub = submission_pb2_grpc.SubmissionServiceStub(ch)
            jobs = [J.Job(transformation="/bin/true", job_name=f"iso-{i}") for i in range(PILOTS * JOBS_EACH)]
            self.ids = list(sub.SubmitJobs(submission_pb2.SubmitJobsRequest(jobs=jobs)).panda_ids)
        self.pilots = [raw_pilot(d.address, pilot_id=f"iso-pilot-{k}") for k in range(PILOTS)]
        self.held: dict[int, tuple[Any, int]] = {}  # panda_id -> (pilot, epoch)
        for p in self.pilots:
            p.request(JOBS_EACH)
            for _ in range(JOBS_EACH):
                a = p.expect("assignment")
                self.held[a.job.panda_id] = (p, a.lease_epoch)
        for pid, (p, epoch) in self.held.items():
            p.heartbeat(pid, epoch, J.JOB_STATUS_STARTING)
        for pid, (p, _) in self.held.items():
            assert p.ack_for(pid).result == P.ACK_RESULT_OK

    def heartbeat_all(self, poisoned: int, poison_metrics: dict[str, Any]) -> None:
        """One HeartbeatBatch per pilot with all its jobs, sent back to back (one flush gets them all)."""
        for p in self.pilots:
            beats = [
                P.Heartbeat(
                    panda_id=pid,
                    lease_epoch=epoch,
                    status=J.JOB_STATUS_RUNNING,
                    metrics=J.JobMetrics(**(poison_metrics if pid == poisoned else {"cpu_time_s": 1.0})),
                )
                for pid, (q, epoch) in self.held.items()
                if q is p
            ]
            p.send(P.PilotMessage(heartbeats=P.HeartbeatBatch(heartbeats=beats)))

    def finals_all(self, poisoned: int, poison: dict[str, Any]) -> None:
        """Every job's final report, round-robin over the pilots so the group commit mixes them."""
        for pid, (p, epoch) in self.held.items():
            fields: dict[str, Any] = {"metrics": J.JobMetrics(exit_code=0)}
            if pid == poisoned:
                fields.update(poison)
            p.final(pid, epoch, J.JOB_STATUS_FINISHED, **fields)

    def streams_alive(self) -> None:
        """Every stream still answers (a JobRequest on an empty queue gets NoJob)."""
        for p in self.pilots:
            p.request(1)
        for p in self.pilots:
            assert p.expect("no_job").retry_after_s > 0


HEARTBEAT_POISONS = {
    "nan-metric": {"cpu_time_s": math.nan},
    "db-refuses-row": {"cpu_time_s": 2.0},
}


@pytest.mark.parametrize("poison", sorted(HEARTBEAT_POISONS))
def test_poisoned_heartbeat_fails_alone(
    make_dispatcher: Callable[..., RunningDispatcher], raw_pilot: Callable[..., Any], db_url: str, poison: str
) -> None:
    d = make_dispatcher(heartbeat_flush_s=0.5)
    fleet = Fleet(d, raw_pilot)
    poisoned = fleet.ids[len(fleet.ids) // 2]
    before = leases(db_url, fleet.ids)
    guard = poisoned_row(db_url, poisoned) if poison == "db-refuses-row" else nullcontext()
    with guard:
        fleet.heartbeat_all(poisoned, HEARTBEAT_POISONS[poison])
        acks = {pid: p.ack_for(pid) for pid, (p, _) in fleet.held.items()}
    assert acks[poisoned].result == P.ACK_RESULT_REJECTED, acks[poisoned]
    others = [pid for pid in fleet.ids if pid != poisoned]
    assert {pid: acks[pid].result for pid in others} == dict.fromkeys(others, P.ACK_RESULT_OK)
    after = leases(db_url, fleet.ids)
    assert all(after[pid] > before[pid] for pid in others), "the other pilots' leases were not renewed"
    assert after[poisoned] == before[poisoned]
    fleet.streams_alive()
    # The poisoned pilot goes on: its next good heartbeat is accepted.
    p, epoch = fleet.held[poisoned]
    p.heartbeat(poisoned, epoch, J.JOB_STATUS_RUNNING, cpu_time_s=3.0)
    assert p.ack_for(poisoned).result == P.ACK_RESULT_OK
    fleet.finals_all(0, {})
    for pid, (q, _) in fleet.held.items():
        assert q.ack_for(pid, final=True).result == P.ACK_RESULT_OK
    check = consistency.check(db_url, submitted=fleet.ids, expect_final=True)
    assert check.ok, check.summary()


FINAL_POISONS: dict[str, dict[str, Any]] = {
    "nan-metric": {"metrics": J.JobMetrics(exit_code=0, walltime_s=math.inf)},
    "nul-in-diag": {"errors": [J.JobError(component=J.ERROR_COMPONENT_PILOT, code=1, diag="a\x00b")]},
    "unknown-component": {"errors": [J.JobError(component=99, code=1, diag="x")]},
    "db-refuses-row": {},
}


@pytest.mark.parametrize("poison", sorted(FINAL_POISONS))
def test_poisoned_final_fails_alone(
    make_dispatcher: Callable[..., RunningDispatcher], raw_pilot: Callable[..., Any], db_url: str, poison: str
) -> None:
    d = make_dispatcher()
    fleet = Fleet(d, raw_pilot)
    poisoned = fleet.ids[len(fleet.ids) // 2]
    guard = poisoned_row(db_url, poisoned) if poison == "db-refuses-row" else nullcontext()
    with guard:
        fleet.finals_all(poisoned, FINAL_POISONS[poison])
        acks = {pid: p.ack_for(pid, final=True) for pid, (p, _) in fleet.held.items()}
    bad = acks[poisoned]
    assert bad.result == P.ACK_RESULT_REJECTED and bad.is_final, bad
    assert "poisoned row" not in bad.message  # the database's words stay on the server
    others = [pid for pid in fleet.ids if pid != poisoned]
    assert {pid: acks[pid].result for pid in others} == dict.fromkeys(others, P.ACK_RESULT_OK)
    with grpc.insecure_channel(d.address) as ch:
        sub = submission_pb2_grpc.SubmissionServiceStub(ch)
        jobs = sub.GetJobs(submission_pb2.GetJobsRequest(panda_ids=fleet.ids)).jobs
    status = {j.panda_id: j.status for j in jobs}
    assert {pid: status[pid] for pid in others} == dict.fromkeys(others, J.JOB_STATUS_FINISHED)
    assert status[poisoned] == J.JOB_STATUS_STARTING
    fleet.streams_alive()
    # A corrected report of the poisoned job (the row accepted again) goes through on the same stream.
    p, epoch = fleet.held[poisoned]
    p.final(poisoned, epoch, J.JOB_STATUS_FINISHED, metrics=J.JobMetrics(exit_code=0))
    assert p.ack_for(poisoned, final=True).result == P.ACK_RESULT_OK
    check = consistency.check(db_url, submitted=fleet.ids, expect_final=True)
    assert check.ok, check.summary()


def test_poisoned_row_does_not_stop_the_watchdog(
    make_dispatcher: Callable[..., RunningDispatcher], raw_pilot: Callable[..., Any], db_url: str
) -> None:
    """Leases of every other job still expire (and their jobs are retried) while one row is refused."""
    d = make_dispatcher(lease_s=1.0)
    with grpc.insecure_channel(d.address) as ch:
        sub = submission_pb2_grpc.SubmissionServiceStub(ch)
        jobs = [J.Job(transformation="/bin/true") for _ in range(5)]
        ids = list(sub.SubmitJobs(submission_pb2.SubmitJobsRequest(jobs=jobs)).panda_ids)
        p = raw_pilot(d.address, pilot_id="silent")
        p.request(len(ids))
        held = {}
        for _ in ids:
            a = p.expect("assignment")
            held[a.job.panda_id] = a.lease_epoch
        poisoned = ids[2]
        with poisoned_row(db_url, poisoned):
            for pid, epoch in held.items():  # one heartbeat, then silence: every lease lapses
                p.heartbeat(pid, epoch, J.JOB_STATUS_STARTING)
            deadline = time.monotonic() + 30
            others = [pid for pid in ids if pid != poisoned]
            while time.monotonic() < deadline:
                got = {j.panda_id: j for j in sub.GetJobs(submission_pb2.GetJobsRequest(panda_ids=ids)).jobs}
                if all(got[pid].attempt_nr == 2 for pid in others):
                    break
                time.sleep(0.2)
            assert {pid: (got[pid].status, got[pid].attempt_nr) for pid in others} == dict.fromkeys(
                others, (J.JOB_STATUS_ACTIVATED, 2)
            ), "one refused row stopped every lease from expiring"
            assert got[poisoned].attempt_nr == 1
    check = consistency.check(db_url, submitted=ids)
    assert check.ok, check.summary()
