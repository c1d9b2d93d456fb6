"""Migration 0009 on SQLite and PostgreSQL: job errors move from the ``jobs.errors`` blob into
``job_errors`` rows and back (downgrade), with nothing lost either way; the error counters and the
schema come out as the code declares them."""

from __future__ import annotations

from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select, text

from ailuro import errorcodes
from ailuro.v1 import job_pb2
from dispatcher.states import JobState
from dispatcher.store import jobs as store
from dispatcher.store.engine import MIGRATIONS_DIR, open_database
from dispatcher.store.schema import job_error_count_deltas, job_error_counts, metadata
from dispatcher.store.transitions import Change, apply_changes

E = job_pb2.JobError
PAYLOAD, DDM = job_pb2.ERROR_COMPONENT_PAYLOAD, job_pb2.ERROR_COMPONENT_DDM


def migrate_to(db_url: str, revision: str) -> None:
    """Upgrade or downgrade the database to ``revision`` with the project's migrations."""
    db = open_database(db_url, run_migrations=False)
    try:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        with db.engine.connect() as conn:
            cfg.attributes["connection"] = conn
            if revision == "head":
                command.upgrade(cfg, revision)
            else:
                command.downgrade(cfg, revision)
            conn.commit()
    finally:
        db.dispose()


def _jobs_with_errors(db_url: str) -> dict[int, list[tuple[int, int, str]]]:
    """Four jobs: failed with two errors, killed (one), failed without errors, and one never failed."""
    db = open_database(db_url)
    try:
        spec = job_pb2.Job(transformation="/bin/true", computing_site="LOCAL", vo="v", prod_source_label="user")
        with db.write() as conn:
            ids = store.insert_jobs(
                conn,
                [store.NewJob(spec=spec, brokerage_reason="t", status=JobState.ASSIGNED) for _ in range(4)],
                owner="o",
                now=1,
            )
            two = [
                E(component=PAYLOAD, code=errorcodes.PAYLOAD_FAILED, diag="exit 3"),
                E(component=DDM, code=1099, diag="d"),
            ]
            changes = [
                Change(
                    panda_id=ids[0],
                    from_status=JobState.ASSIGNED,
                    epoch=0,
                    to_status=JobState.FAILED,
                    values={"errors": two, "end_time": 2.0},
                ),
                Change(panda_id=ids[2], from_status=JobState.ASSIGNED, epoch=0, to_status=JobState.FAILED),
            ]
            assert apply_changes(conn, changes, now=2.0) == {ids[0], ids[2]}
            store.kill_jobs(conn, [ids[1]], who="me", reason="enough", now=3.0)
        with db.read() as conn:
            got = store.get_jobs(conn, ids)
        return {j.panda_id: [(e.component, e.code, e.diag) for e in j.errors] for j in got}
    finally:
        db.dispose()


def _error_counters(db_url: str) -> list[Any]:
    db = open_database(db_url, run_migrations=False)
    try:
        with db.read() as conn:
            rows = []
            for table in (job_error_counts, job_error_count_deltas):
                cols = [table.c[k] for k in ("facet", "width", "bucket", "status", "component", "code", "value")]
                rows += [(*r[:-1], int(r[-1])) for r in conn.execute(select(*cols, table.c.n))]
            totals: dict[tuple[Any, ...], int] = {}
            for *key, n in rows:
                totals[tuple(key)] = totals.get(tuple(key), 0) + n
            return sorted(totals.items())
    finally:
        db.dispose()


def test_errors_survive_a_downgrade_and_an_upgrade(db_url: str) -> None:
    before = _jobs_with_errors(db_url)
    ids = sorted(before)
    assert [len(before[i]) for i in ids] == [2, 1, 0, 0]
    counted = _error_counters(db_url)
    assert counted

    migrate_to(db_url, "0008")
    db = open_database(db_url, run_migrations=False)
    try:
        assert not inspect(db.engine).has_table("job_errors")
        with db.read() as conn:
            blobs: dict[int, Any] = {r[0]: r[1] for r in conn.execute(text("SELECT panda_id, errors FROM jobs"))}
        decoded = {
            pid: [(e.component, e.code, e.diag) for e in job_pb2.Job.FromString(bytes(b)).errors] if b else []
            for pid, b in blobs.items()
        }
        assert decoded == before
    finally:
        db.dispose()

    migrate_to(db_url, "head")
    db = open_database(db_url)
    try:
        with db.engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), metadata) == []
        with db.read() as conn:
            after = {j.panda_id: [(e.component, e.code, e.diag) for e in j.errors] for j in store.get_jobs(conn, ids)}
            attempts = {r[0] for r in conn.execute(text("SELECT attempt_nr FROM job_errors"))}
        assert after == before
        assert attempts == {1}
    finally:
        db.dispose()
    assert _error_counters(db_url) == counted  # recounted from the rows by the upgrade: the same
