"""The per-task summaries (``task_summaries``, migration 0017) and the tasks page read from them.

A workload of many tasks with their own activity periods goes through the store's real write
paths: tasks that start, go quiet with jobs still queued (so their latest change is older than a
window that still shows them), end completely, and tasks of two VOs. Every check compares the
summaries with their definition and with the jobs, and the page (tasks, order, counts, latest
change, total; per VO and over all) with ranking every task's counter rows and a recount, with
deltas pending, partly folded and fully folded, after a rebuild and across migration 0017.
"""

from __future__ import annotations

import random

from sqlalchemy import inspect, select, text
from task_summary_checks import assert_summaries_exact, assert_task_pages_exact, summaries, task_vos
from test_job_counters import fold_all, pending_rows
from test_job_errors_migration import migrate_to

from ailuro.v1 import job_pb2
from dispatcher.states import JobState
from dispatcher.store import counters
from dispatcher.store.engine import open_database
from dispatcher.store.jobs import NewJob, fetch_rows, insert_jobs
from dispatcher.store.schema import jobs
from dispatcher.store.transitions import Change, apply_changes
from monitor.db import MonitorDatabase

S = JobState
VOS = ("compass", "amber")
NEXT = {
    S.ACTIVATED: (S.SENT,),
    S.SENT: (S.STARTING, S.ACTIVATED),
    S.STARTING: (S.RUNNING,),
    S.RUNNING: (S.HOLDING, S.FAILED, S.ACTIVATED),
    S.HOLDING: (S.FINISHED,),
}
T0 = 1_700_000_000.0
N_TASKS = 30
ROUNDS = 90
STEP = 1500.0  # seconds a round: the workload spans ~37 hours, two day buckets


def run_tasks(url: str, seed: int, *, fold_every: int = 0) -> None:
    """Tasks submit and move jobs only during their own period; ``fold_every``: partial folds now and then."""
    rng = random.Random(seed)
    periods = {}
    for task in range(1, N_TASKS + 1):
        first = rng.randint(0, ROUNDS - 10)
        periods[task] = (first, first + rng.randint(3, 40))
    db = open_database(url, run_migrations=False)
    try:
        for r in range(ROUNDS):
            now = T0 + r * STEP + rng.random() * 100
            live = [t for t, (a, b) in periods.items() if a <= r <= b]
            with db.write() as conn:
                for task in live:
                    if rng.random() < 0.5:
                        vo = VOS[task % 2] if task % 5 else rng.choice(VOS)  # every fifth task in both VOs
                        spec = job_pb2.Job(
                            job_name="j", vo=vo, prod_source_label="user", transformation="t",
                            computing_site="CERN", task_id=task,
                        )  # fmt: skip
                        new = [NewJob(spec=spec, brokerage_reason="t") for _ in range(rng.randint(1, 3))]
                        insert_jobs(conn, new, owner="alice", now=now)
                ids = conn.execute(
                    select(jobs.c.panda_id).where(jobs.c.task_id.in_(live), jobs.c.status.in_([s.value for s in NEXT]))
                ).scalars()
                chosen = [i for i in ids if rng.random() < 0.4]
                changes: list[Change] = []
                for row in fetch_rows(conn, chosen, lock=True).values():
                    state = S(row.status)
                    dst = rng.choice(NEXT[state])
                    epoch = row.lease_epoch + (1 if dst == S.SENT else 0)
                    changes.append(
                        Change(
                            panda_id=row.panda_id,
                            from_status=state,
                            epoch=row.lease_epoch,
                            to_status=dst,
                            values={"lease_epoch": epoch},
                        )
                    )
                apply_changes(conn, changes, now=now)
            if fold_every and r % fold_every == fold_every - 1:
                with db.write() as conn:
                    counters.fold(conn, limit=rng.randint(1, 200))
    finally:
        db.dispose()


def assert_all_exact(url: str) -> None:
    """Summaries and pages (every VO, each VO, both, none) are exact, read as the monitor reads."""
    mon = MonitorDatabase(url)
    try:
        with mon.read() as conn:
            assert_summaries_exact(conn)
            spans = task_vos(conn)
            assert any(len(v) == 2 for v in spans.values()), "some tasks must span both VOs"
            for vos in (None, ("compass",), ("amber",), VOS, ()):
                assert_task_pages_exact(conn, vos)
    finally:
        mon.engine.dispose()


def _quiet_tasks(url: str) -> int:
    """Tasks with jobs not final yet whose latest change is before the middle of the workload."""
    mon = MonitorDatabase(url)
    try:
        with mon.read() as conn:
            middle = T0 + ROUNDS * STEP / 2
            return sum(1 for active, _, _, last in summaries(conn).values() if active and last < middle)
    finally:
        mon.engine.dispose()


def test_pages_exact_with_deltas_pending_partly_folded_and_folded(db_url: str) -> None:
    open_database(db_url).dispose()
    run_tasks(db_url, seed=4, fold_every=3)
    assert pending_rows(db_url) > 0
    assert_all_exact(db_url)  # some tasks summarised, some still in their deltas
    fold_all(db_url)
    assert_all_exact(db_url)
    assert _quiet_tasks(db_url) > 0, "the windows must show tasks whose last change is older than them"


def test_pages_exact_with_nothing_folded(db_url: str) -> None:
    open_database(db_url).dispose()
    run_tasks(db_url, seed=5)
    assert_all_exact(db_url)  # no summary yet: every task is counted from its deltas


def test_rebuild_equals_the_maintained_summaries(db_url: str) -> None:
    """A rebuild gives the same jobs not final and final times (``last`` of a counter row rebuilt
    is its jobs' newest modification time, so only those are compared), and exact pages."""
    open_database(db_url).dispose()
    run_tasks(db_url, seed=6, fold_every=2)
    fold_all(db_url)
    db = open_database(db_url, run_migrations=False)
    try:
        with db.read() as conn:
            before = {k: (v[0], v[2]) for k, v in summaries(conn).items()}
        with db.write() as conn:
            counters.rebuild(conn)
        with db.read() as conn:
            assert {k: (v[0], v[2]) for k, v in summaries(conn).items()} == before
    finally:
        db.dispose()
    assert_all_exact(db_url)


def test_migration_0017_backfills_and_goes_down_and_up(db_url: str) -> None:
    """Down to 0016 (pending deltas folded first, table dropped), up again (backfilled from the
    counters), and the folds after it keep the summaries exact."""
    open_database(db_url).dispose()
    run_tasks(db_url, seed=7, fold_every=4)
    assert pending_rows(db_url) > 0
    migrate_to(db_url, "0016")
    db = open_database(db_url, run_migrations=False)
    try:
        with db.read() as conn:
            assert not inspect(conn).has_table("task_summaries")
            assert conn.execute(text("SELECT COUNT(*) FROM job_count_deltas")).scalar_one() == 0
    finally:
        db.dispose()
    open_database(db_url).dispose()  # runs 0017 and its backfill
    assert_all_exact(db_url)
    run_tasks(db_url, seed=8, fold_every=3)  # more deltas: some folded into the backfilled rows
    assert_all_exact(db_url)
    fold_all(db_url)
    assert_all_exact(db_url)
