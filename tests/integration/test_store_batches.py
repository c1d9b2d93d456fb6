"""Batched store writes on both databases: ``apply_heartbeats`` judges lease renewals (PostgreSQL's
single-UPDATE path) and status changes alike, whatever mix a batch holds; ``insert_jobs`` of
nothing writes nothing."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from ailuro.v1 import job_pb2, pilot_pb2
from dispatcher.states import JobState
from dispatcher.store import finals as fstore
from dispatcher.store import jobs as store
from dispatcher.store import pilots as pstore
from dispatcher.store.engine import Database, open_database
from dispatcher.store.schema import jobs

OK, STALE, NOT_FOUND = pilot_pb2.ACK_RESULT_OK, pilot_pb2.ACK_RESULT_STALE_EPOCH, pilot_pb2.ACK_RESULT_NOT_FOUND


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = open_database(db_url)
    yield database
    database.dispose()


def _claimed(db: Database, n: int) -> list[tuple[int, int]]:
    spec = job_pb2.Job(transformation="/bin/true", computing_site="LOCAL", vo="compass", prod_source_label="user")
    with db.write() as conn:
        store.insert_jobs(conn, [store.NewJob(spec=spec, brokerage_reason="test") for _ in range(n)], owner="me", now=1)
    req = pstore.ClaimRequest(pilot=pstore.PilotInfo(pilot_id="p1", queue="LOCAL"), n=n)
    with db.write() as conn:
        pstore.claim_jobs(conn, [req], lease_s=60, now=time.time())
    return [(a.job.panda_id, a.lease_epoch) for a in req.assignments]


def _beat(pid: int, epoch: int, status: JobState, cpu: float = 0.0) -> pstore.HeartbeatIn:
    return pstore.HeartbeatIn(
        panda_id=pid, epoch=epoch, status=status, metrics=job_pb2.JobMetrics(cpu_time_s=cpu), pilot_id="p1"
    )


def _apply(db: Database, beats: list[pstore.HeartbeatIn], now: float) -> list[tuple[int, str]]:
    with db.write() as conn:
        return pstore.apply_heartbeats(conn, beats, lease_s=100, now=now)


def _row(db: Database, pid: int) -> dict[str, object]:
    with db.read() as conn:
        return dict(conn.execute(select(jobs).where(jobs.c.panda_id == pid)).mappings().one())


def test_renewals_and_changes_in_one_batch(db: Database) -> None:
    (a, ea), (b, eb), (c, ec) = _claimed(db, 3)
    now = time.time()
    assert _apply(db, [_beat(a, ea, JobState.STARTING), _beat(b, eb, JobState.STARTING)], now) == [(OK, "")] * 2
    out = _apply(
        db,
        [
            _beat(a, ea, JobState.STARTING, cpu=5.0),  # renewal
            _beat(b, eb + 1, JobState.STARTING),  # wrong epoch: stale, nothing written
            _beat(999_999, 1, JobState.RUNNING),  # unknown job
            _beat(c, ec, JobState.RUNNING),  # sent -> running (through starting)
            _beat(b, eb, JobState.STARTING),  # same job twice in one batch: both judged alike
            _beat(b, eb, JobState.RUNNING, cpu=7.0),
        ],
        now + 10,
    )
    assert [r for r, _ in out] == [OK, STALE, NOT_FOUND, OK, OK, OK]
    ra, rb, rc = _row(db, a), _row(db, b), _row(db, c)
    assert (ra["status"], ra["cpu_time_s"], ra["lease_expires"]) == ("starting", 5.0, pytest.approx(now + 110))
    assert (rb["status"], rb["cpu_time_s"]) == ("running", 7.0)
    assert rc["status"] == "running" and rc["start_time"] == pytest.approx(now + 10)


def test_a_renewal_never_revives_a_job_that_left_the_pilot(db: Database) -> None:
    ((a, ea),) = _claimed(db, 1)
    now = time.time()
    _apply(db, [_beat(a, ea, JobState.RUNNING)], now)
    with db.write() as conn:
        final = pilot_pb2.JobFinal(panda_id=a, lease_epoch=ea, status=job_pb2.JOB_STATUS_FINISHED)
        assert fstore.apply_finals(conn, [fstore.FinalIn(report=final, pilot_id="p1")], now=now)[0][0] == OK
    ((result, message),) = _apply(db, [_beat(a, ea, JobState.RUNNING, cpu=9.0)], now + 1)
    assert result == STALE and "finished" in message
    row = _row(db, a)
    assert (row["status"], row["cpu_time_s"], row["lease_expires"]) == ("finished", 0.0, None)


def test_inserting_no_jobs_is_a_no_op(db: Database) -> None:
    with db.write() as conn:
        assert store.insert_jobs(conn, [], owner="me", now=1) == []


def test_a_claim_tells_how_many_locked_candidates_it_passed_over(db: Database, db_url: str) -> None:
    """A claim reads (on PostgreSQL: locks) a window of candidates and hands out fewer; it says how
    many it passed over, because a claim running beside it skipped those rows and may have found
    nothing: the hub wakes parked requests after such a commit. On PostgreSQL the second claim is
    run beside the first to show that it does find nothing until the first commits."""
    spec = job_pb2.Job(transformation="/bin/true", computing_site="LOCAL", vo="compass", prod_source_label="user")
    with db.write() as conn:
        store.insert_jobs(conn, [store.NewJob(spec=spec, brokerage_reason="test") for _ in range(3)], owner="me", now=1)
    first = pstore.ClaimRequest(pilot=pstore.PilotInfo(pilot_id="p1", queue="LOCAL"), n=1)
    second = pstore.ClaimRequest(pilot=pstore.PilotInfo(pilot_id="p2", queue="LOCAL"), n=1)
    with db.write() as conn:
        pstore.claim_jobs(conn, [first], lease_s=60, now=time.time())
        assert len(first.assignments) == 1
        assert first.passed_over == 2
        if db_url.startswith("postgresql"):
            with db.write() as beside:
                pstore.claim_jobs(beside, [second], lease_s=60, now=time.time())
            assert second.assignments == [] and second.passed_over == 0
    if db_url.startswith("postgresql"):
        with db.write() as conn:
            pstore.claim_jobs(conn, [second], lease_s=60, now=time.time())
        assert len(second.assignments) == 1 and second.passed_over == 1


def test_a_kill_writes_the_commands_of_pilots_here_delivered(db: Database) -> None:
    """``kill_jobs(here=...)``: the caller sends the commands of the pilots streaming to it after the
    commit, so those are written delivered, with the job's ``kill_delivered``, in the kill's own
    statements; a command for a pilot elsewhere waits undelivered for its process."""
    from dispatcher.store.schema import pilot_commands

    (a, _), (b, _) = _claimed(db, 2)
    with db.write() as conn:
        conn.execute(jobs.update().where(jobs.c.panda_id == b).values(pilot_id="p2"))
        _, commands = store.kill_jobs(conn, [a, b], who="me", reason="test", now=time.time(), here=lambda p: p == "p1")
    assert {(c.panda_id, c.pilot_id, c.delivered) for c in commands} == {(a, "p1", True), (b, "p2", False)}
    with db.read() as conn:
        written = {r.panda_id: r.delivered for r in conn.execute(select(pilot_commands))}
    assert written == {a: True, b: False}
    assert (_row(db, a)["kill_requested"], _row(db, a)["kill_delivered"]) == (True, True)
    assert (_row(db, b)["kill_requested"], _row(db, b)["kill_delivered"]) == (True, False)


def test_final_files_update_a_known_row_and_insert_new_ones_verbatim(db: Database) -> None:
    """The files of a batch of finals in one upsert: a file the job declared keeps its guid and
    dataset and takes the reported size, checksum, location and status; new ones (the log, a name
    with quotes, backslashes, braces and commas) are stored exactly as reported."""
    out = job_pb2.File(lfn="out.root", guid="g-1", type=job_pb2.FILE_TYPE_OUTPUT, dataset="ds", scope="compass")
    spec = job_pb2.Job(
        transformation="/bin/true", computing_site="LOCAL", vo="compass", prod_source_label="user", files=[out]
    )
    plain = job_pb2.Job(transformation="/bin/true", computing_site="LOCAL", vo="compass", prod_source_label="user")
    with db.write() as conn:
        new = [store.NewJob(spec=j, brokerage_reason="test") for j in (spec, plain)]
        store.insert_jobs(conn, new, owner="me", now=1)
    req = pstore.ClaimRequest(pilot=pstore.PilotInfo(pilot_id="p1", queue="LOCAL"), n=2)
    with db.write() as conn:
        pstore.claim_jobs(conn, [req], lease_s=60, now=time.time())
    epochs = {x.job.panda_id: x.lease_epoch for x in req.assignments}
    a = next(x.job.panda_id for x in req.assignments if x.job.files)  # the one that declared out.root
    (b,) = set(epochs) - {a}
    odd = 'we"ird\\,{name} NULL'
    reported = {
        a: [
            job_pb2.File(lfn="out.root", size=10, adler32="ABCD0123", pfn='root://se//a "q"\\{}', status=""),
            job_pb2.File(lfn="log.tgz", type=job_pb2.FILE_TYPE_LOG, size=3, adler32="00000001", pfn="root://se//l"),
        ],
        b: [job_pb2.File(lfn=odd, type=job_pb2.FILE_TYPE_OUTPUT, size=7, adler32="0000000f", pfn="root://se//b")],
    }
    finals = [
        fstore.FinalIn(
            report=pilot_pb2.JobFinal(panda_id=p, lease_epoch=epochs[p], status=job_pb2.JOB_STATUS_FINISHED, files=fs),
            pilot_id="p1",
        )
        for p, fs in reported.items()
    ]
    with db.write() as conn:
        assert [r for r, _ in fstore.apply_finals(conn, finals, now=time.time())] == [OK, OK]
        stored = store.fetch_files(conn, [a, b])
    by_lfn = {(p, f["lfn"]): f for p, fs in stored.items() for f in fs}
    declared = by_lfn[(a, "out.root")]
    assert (declared["guid"], declared["dataset"], declared["scope"]) == ("g-1", "ds", "compass")
    assert (declared["size"], declared["adler32"], declared["pfn"]) == (10, "abcd0123", 'root://se//a "q"\\{}')
    assert declared["status"] == "transferred"
    assert (by_lfn[(a, "log.tgz")]["type"], by_lfn[(a, "log.tgz")]["size"]) == ("log", 3)
    assert (by_lfn[(b, odd)]["type"], by_lfn[(b, odd)]["adler32"]) == ("output", "0000000f")
    assert len(stored[a]) == 2 and len(stored[b]) == 1
