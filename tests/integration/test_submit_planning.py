"""Submission on DDM queues (SQLite and PostgreSQL): the catalog is read once per batch, not per
job, and each job is inserted in its planned state (``assigned`` while an input is missing) with
one ``defined -> <state>`` event, never ``activated`` first."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event, select

from ailuro.queues import QueueConfig, StorageElementConfig
from ailuro.v1 import job_pb2
from dispatcher.config import DispatcherConfig
from dispatcher.services.submission import place_and_insert
from dispatcher.states import JobState
from dispatcher.store import catalog, dataflow
from dispatcher.store.engine import Database, open_database
from dispatcher.store.schema import ddm_job_links, job_events, jobs

N = 40  # jobs per batch: half with their input on the queue's disk, half on tape only


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = open_database(db_url)
    yield database
    database.dispose()


def _config() -> DispatcherConfig:
    storage = (
        StorageElementConfig(name="DISK", endpoints=("file:///tmp/ailuro-test-disk",)),
        StorageElementConfig(name="TAPE", kind="tape", endpoints=("file:///tmp/ailuro-test-tape",)),
    )
    queue = QueueConfig(name="SITE", input_se=("DISK",), output_se=("DISK",))
    return DispatcherConfig(queues=(queue,), storage=storage)


def _catalog(db: Database) -> None:
    with db.write() as conn:
        entries = [catalog.FileEntry(lfn=f"f{i}", size=i, adler32="00000001", guid=f"g{i}") for i in range(N)]
        ids = catalog.add_files(conn, "compass", entries, dataset_id=None, now=1.0)
        for i in range(N):
            se = "DISK" if i % 2 == 0 else "TAPE"
            catalog.set_replica(conn, ids[f"f{i}"], se, state=catalog.AVAILABLE, pfn="", now=1.0)


def _specs() -> list[job_pb2.Job]:
    out = []
    for i in range(N):
        spec = job_pb2.Job(transformation="/bin/true", vo="compass", prod_source_label="user", cores=1)
        spec.files.add(lfn=f"f{i}", scope="compass", type=job_pb2.FILE_TYPE_INPUT, guid=f"g{i}")
        spec.files.add(lfn=f"out{i}", type=job_pb2.FILE_TYPE_OUTPUT, guid=f"o{i}")
        out.append(spec)
    return out


def test_one_catalog_read_per_batch_and_jobs_inserted_in_their_planned_state(db: Database) -> None:
    _catalog(db)
    statements: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "ddm_files" in statement and statement.lstrip().upper().startswith("SELECT"):
            statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", seen)
    try:
        with db.write() as conn:
            ids = place_and_insert(conn, _specs(), _config(), owner="me", now=10.0)
    finally:
        event.remove(db.engine, "before_cursor_execute", seen)
    assert len(statements) == 1, statements
    with db.read() as conn:
        states = dict(conn.execute(select(jobs.c.panda_id, jobs.c.status).where(jobs.c.panda_id.in_(ids))).all())
        history = conn.execute(
            select(job_events.c.panda_id, job_events.c.from_status, job_events.c.to_status, job_events.c.reason)
            .where(job_events.c.panda_id.in_(ids))
            .order_by(job_events.c.event_id)
        ).all()
        linked = conn.execute(select(ddm_job_links.c.panda_id).where(ddm_job_links.c.panda_id.in_(ids))).all()
    assert len(linked) == N
    for i, pid in enumerate(ids):
        planned = JobState.ACTIVATED if i % 2 == 0 else JobState.ASSIGNED
        assert states[pid] == planned.value
        steps = [(e.from_status, e.to_status) for e in history if e.panda_id == pid]
        assert steps == [("", "defined"), ("defined", planned.value)]
        if planned == JobState.ASSIGNED:
            (why,) = [e.reason for e in history if e.panda_id == pid and e.to_status == "assigned"]
            assert "waiting for DDM transfers" in why


def test_the_agent_reads_the_inputs_of_every_waiting_job_at_once_when_activating(db: Database) -> None:
    _catalog(db)
    with db.write() as conn:
        ids = place_and_insert(conn, _specs(), _config(), owner="me", now=10.0)
        on_tape = catalog.lookup_files(conn, [("compass", f"f{i}") for i in range(1, N, 2)])
        for row in on_tape.values():  # the transfers arrived: every input is now on the queue's disk
            catalog.set_replica(conn, int(row["file_id"]), "DISK", state=catalog.AVAILABLE, pfn="", now=11.0)
    statements: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        text = statement.lstrip().upper()
        if text.startswith("SELECT") and ("DDM_FILES" in text or "DDM_REPLICAS" in text):
            statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", seen)
    try:
        with db.write() as conn:
            activated = dataflow.activate_ready(conn, {s.name: s for s in _config().storage}, now=12.0)
    finally:
        event.remove(db.engine, "before_cursor_execute", seen)
    assert sorted(activated) == sorted(ids[1::2])
    assert len(statements) == 1, statements  # not two per job
