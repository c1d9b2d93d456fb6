"""The maintained job counters equal a direct GROUP BY over ``jobs`` (SQLite and PostgreSQL).

A mixed workload goes through the store's real write paths (``insert_jobs``, ``apply_changes``,
``kill_jobs``): claims, starts, requeues, finishes, failures with typed errors, kills, and rolled
back transactions. Afterwards every counter row is compared with what the rows say. On PostgreSQL
two processes run the workload at once on the same jobs (several ``apply_changes`` per
transaction, the pattern that would deadlock with per-call upserts) and the counters still match.

Writers only append deltas; :func:`counters.fold` moves them into the counters. So exactness is
checked with deltas pending (folded + pending, and the monitor's own queries), after partial
folds interleaved with the writes, after a full fold, and with folders racing each other.
"""

from __future__ import annotations

import multiprocessing as mp
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Connection, delete, inspect, select, text
from task_summary_checks import assert_summaries_exact, assert_task_pages_exact
from test_job_errors_migration import migrate_to

from ailuro import errorcodes
from ailuro.client import Client
from ailuro.v1 import job_pb2
from dispatcher.server import RunningDispatcher
from dispatcher.states import FINAL_STATES, JobState
from dispatcher.store import counters
from dispatcher.store.engine import open_database, retry_transient
from dispatcher.store.jobs import NewJob, fetch_rows, insert_jobs, kill_jobs
from dispatcher.store.schema import (
    job_count_deltas,
    job_counts,
    job_error_count_deltas,
    job_error_counts,
    job_errors,
    job_events,
    jobs,
)
from dispatcher.store.transitions import Change, apply_changes
from monitor.db import MonitorDatabase
from monitor.filters import JobFilter
from monitor.queries import counts as mcounts

S = JobState
SITES = ("CERN", "BNL", "FZK")
OWNERS = ("alice", "bob", "compass-prod")
VOS = ("compass", "amber")
"""Two VOs: the counters keep them apart (a VO member's pages sum their VOs' rows)."""
NEXT: dict[JobState, tuple[JobState, ...]] = {
    S.ACTIVATED: (S.SENT,),
    S.SENT: (S.STARTING, S.ACTIVATED),
    S.STARTING: (S.RUNNING,),
    S.RUNNING: (S.FINISHED, S.FAILED, S.ACTIVATED, S.RUNNING),
}


def _new_jobs(rng: random.Random, n: int) -> list[NewJob]:
    out = []
    for _ in range(n):
        spec = job_pb2.Job(
            job_name="j",
            vo=rng.choice(VOS),
            prod_source_label=rng.choice(("user", "managed")),
            transformation=rng.choice(("coral.exe", "phast", "x" * 300)),  # longer than a VARCHAR(255)
            computing_site=rng.choice(SITES),
            task_id=rng.randint(1, 4),
        )
        out.append(NewJob(spec=spec, brokerage_reason="test"))
    return out


def _step(rng: random.Random, row: Any, now: float) -> Change | None:
    state = JobState(row.status)
    if state not in NEXT:
        return None
    dst = rng.choice(NEXT[state])
    values: dict[str, Any] = {"lease_expires": now + 60}
    if dst == S.SENT:
        values["lease_epoch"] = row.lease_epoch + 1
    if dst == S.FAILED:
        comp, code = rng.choice(
            [
                (job_pb2.ERROR_COMPONENT_PAYLOAD, errorcodes.PAYLOAD_FAILED),
                (job_pb2.ERROR_COMPONENT_DDM, errorcodes.STAGEIN_FAILED),
                (None, 0),  # a failure without a typed error
            ]
        )
        if comp is not None:
            values["errors"] = [job_pb2.JobError(component=comp, code=code, diag="boom")]
    events = [(state, S.HOLDING, "done"), (S.HOLDING, S.FINISHED, "done")] if dst == S.FINISHED else None
    return Change(
        panda_id=row.panda_id, from_status=state, epoch=row.lease_epoch, to_status=dst, values=values, events=events
    )


def run_workload(url: str, seed: int, rounds: int, *, fold_every: int = 0) -> int:
    """Random transactions over the shared jobs; returns how many transactions were rolled back.

    ``fold_every``: every that many rounds, fold a random number of the oldest pending deltas.
    """
    rng = random.Random(seed)
    db = open_database(url, run_migrations=False)
    rollbacks = 0
    try:
        for r in range(rounds):
            now = 1_700_000_000.0 + r * 997.0 + seed  # crosses many hour and day buckets

            def txn(now: float = now) -> None:
                with db.write() as conn:
                    if rng.random() < 0.3:
                        insert_jobs(conn, _new_jobs(rng, rng.randint(1, 8)), owner=rng.choice(OWNERS), now=now)
                    ids = [r[0] for r in conn.execute(select(jobs.c.panda_id))]
                    # lock the jobs first, in id order, as the dispatcher does: only the counters are on trial
                    locked = fetch_rows(conn, rng.sample(ids, min(len(ids), rng.randint(1, 30))), lock=True)
                    rows = list(locked.values())
                    rng.shuffle(rows)
                    kill = [r.panda_id for r in rows[:3] if r.status == S.ACTIVATED.value and rng.random() < 0.2]
                    rest = [r for r in rows if r.panda_id not in kill]
                    cut = sorted(rng.randint(0, len(rest)) for _ in range(2))
                    for part in (rest[: cut[0]], rest[cut[0] : cut[1]], rest[cut[1] :]):  # several calls per txn
                        changes = [c for c in (_step(rng, row, now) for row in part) if c is not None]
                        apply_changes(conn, changes, now=now)
                    if kill:
                        kill_jobs(conn, kill, who="alice", reason="", now=now)
                    if rng.random() < 0.1:
                        raise _Rollback

            try:
                retry_transient(txn)
            except _Rollback:
                rollbacks += 1
            if fold_every and r % fold_every == fold_every - 1:
                with db.write() as conn:
                    counters.fold(conn, limit=rng.randint(1, 40))
    finally:
        db.dispose()
    return rollbacks


class _Rollback(Exception):
    """Abandon a transaction: its counter deltas must vanish with it."""


def _hour(t: float) -> int:
    return counters.hour_of(t)


def expected_counts(conn: Connection) -> Counter[tuple[Any, ...]]:
    """What ``job_counts`` must hold, computed in Python from the rows."""
    want: Counter[tuple[Any, ...]] = Counter()
    for row in conn.execute(select(jobs)):
        final = JobState(row.status) in FINAL_STATES
        keys = counters.buckets_of(row.modification_time) if final else [(0, 0)]
        for facet, column in counters.FACET_COLUMNS.items():
            for width, bucket in keys:
                want[(facet, width, bucket, str(getattr(row, column)), row.status, row.vo)] += 1
    for ev in conn.execute(select(job_events)):
        want[(counters.TRANSITION, 1, _hour(ev.time), ev.to_status, "", "")] += 1  # flows have no VO
    return want


def expected_errors(conn: Connection) -> Counter[tuple[Any, ...]]:
    """What ``job_error_counts`` must hold."""
    want: Counter[tuple[Any, ...]] = Counter()
    by_job: dict[int, list[Any]] = {}
    for e in conn.execute(select(job_errors)):
        by_job.setdefault(e.panda_id, []).append(e)
    for row in conn.execute(select(jobs).where(jobs.c.status.in_([s.value for s in FINAL_STATES]))):
        errs = {(int(e.component), int(e.code)) for e in by_job.get(row.panda_id, [])}
        if not errs and row.status == "failed":
            errs = {(0, 0)}
        for comp, code in errs:
            for facet, column in counters.ERROR_FACETS.items():
                for width, bucket in counters.buckets_of(row.modification_time):
                    want[(facet, width, bucket, row.status, comp, code, getattr(row, column), row.vo)] += 1
    return want


def stored(conn: Connection, *, pending: bool = True) -> tuple[Counter[tuple[Any, ...]], Counter[tuple[Any, ...]]]:
    """The counters (folded rows, plus the pending deltas unless ``pending`` is False), zeros dropped."""
    counts: Counter[tuple[Any, ...]] = Counter()
    errors: Counter[tuple[Any, ...]] = Counter()
    for table in (job_counts, job_count_deltas) if pending else (job_counts,):
        for r in conn.execute(select(table)):
            counts[(r.facet, r.width, r.bucket, r.value, r.status, r.vo)] += r.n
    for table in (job_error_counts, job_error_count_deltas) if pending else (job_error_counts,):
        for r in conn.execute(select(table)):
            errors[(r.facet, r.width, r.bucket, r.status, r.component, r.code, r.value, r.vo)] += r.n
    return +counts, +errors


def pending_rows(url: str) -> int:
    """Delta rows not folded yet (both tables)."""
    db = open_database(url, run_migrations=False)
    try:
        with db.read() as conn:
            return sum(len(conn.execute(select(t.c.id)).all()) for t in (job_count_deltas, job_error_count_deltas))
    finally:
        db.dispose()


def fold_all(url: str) -> None:
    """Fold until no delta is left."""
    db = open_database(url, run_migrations=False)
    try:
        while True:
            with db.write() as conn:
                if counters.fold(conn) == 0:
                    return
    finally:
        db.dispose()


def assert_exact(url: str, *, folded: bool = False) -> None:
    """Counters + pending deltas equal the rows; ``folded``: no delta may be pending either."""
    db = open_database(url, run_migrations=False)
    try:
        with db.read() as conn:
            counts, errors = stored(conn, pending=not folded)
            assert counts == expected_counts(conn)
            assert errors == expected_errors(conn)
            assert_summaries_exact(conn)  # the per-task summaries (0017) follow every fold
            n_final = conn.execute(
                select(jobs.c.panda_id).where(jobs.c.status.in_([s.value for s in FINAL_STATES]))
            ).all()
            assert n_final, "the workload must end some jobs"
    finally:
        db.dispose()
    if folded:
        assert pending_rows(url) == 0


def assert_monitor_exact(url: str) -> None:
    """The monitor's own counter queries (read-only connection) equal the rows, whatever is folded:
    over every VO (an admin's view), per VO and over both VOs (a VO member's), and over none."""
    now = 1_800_000_000.0
    everything = JobFilter(hours=now / 3600.0, now=now)  # window from the epoch: every bucket
    mon = MonitorDatabase(url)
    try:
        with mon.read() as conn:
            transitions = mcounts.transitions_per_hour(conn, 0)
            want_flows: Counter[tuple[Any, ...]] = Counter(
                (ev.to_status, _hour(ev.time)) for ev in conn.execute(select(job_events))
            )
            seen = {r.vo for r in conn.execute(select(jobs.c.vo).distinct())}
            assert seen == set(VOS), "the workload must submit jobs of both VOs"
            for vos in (None, ("compass",), ("amber",), VOS, ()):
                _assert_vo_counts_exact(conn, everything, vos)
                assert_task_pages_exact(conn, vos)  # /tasks/ from the summaries, windows cutting the hours
    finally:
        mon.engine.dispose()
    assert Counter({(s, h): n for s, hours in transitions.items() for h, n in hours.items()}) == want_flows


def _assert_vo_counts_exact(conn: Connection, everything: JobFilter, vos: tuple[str, ...] | None) -> None:
    """The monitor's facet and error counts of the jobs of ``vos`` (None: all) equal a recount of them."""
    statuses = [s.value for s in S]
    got = mcounts.facet_states(conn, everything, list(counters.FACET_COLUMNS), statuses=statuses, vos=vos)
    error_rows, _ = mcounts.error_rows(conn, everything, sorted(counters.FINAL_VALUES), vos=vos)
    want_facets: Counter[tuple[Any, ...]] = Counter()
    for row in conn.execute(select(jobs)):
        if vos is None or row.vo in vos:
            for facet, column in counters.FACET_COLUMNS.items():
                want_facets[(facet, str(getattr(row, column)), row.status)] += 1
    want_errors: Counter[tuple[Any, ...]] = Counter()
    for (facet, width, _b, status, comp, code, value, vo), n in expected_errors(conn).items():
        if width == counters.DAY_HOURS and (vos is None or vo in vos):
            want_errors[(facet, status, comp, code, value)] += n
    have_facets = Counter(
        {(f, v, s): n for f, vals in got.items() for v, states in vals.items() for s, n in states.items()}
    )
    assert +have_facets == want_facets, vos
    tasks = {v for f, v, _ in want_facets if f == "taskid"}
    assert mcounts.count_tasks(conn, everything, vos=vos) == len(tasks), vos
    assert vos == () or want_facets, "each VO must have jobs"
    have_errors = Counter({(r[0], r[1], int(r[2]), int(r[3]), r[4]): int(r[5]) for r in error_rows})
    assert +have_errors == want_errors, vos


def test_counters_match_the_rows_after_a_mixed_workload(db_url: str) -> None:
    open_database(db_url).dispose()
    run_workload(db_url, seed=7, rounds=120)
    assert pending_rows(db_url) > 0  # nothing folded yet: the counters are all in the deltas
    assert_exact(db_url)
    assert_monitor_exact(db_url)
    fold_all(db_url)
    assert_exact(db_url, folded=True)
    assert_monitor_exact(db_url)


def test_exact_with_folds_interleaved_with_writes(db_url: str) -> None:
    """Partial folds between transactions: part folded, part pending, every read still exact."""
    open_database(db_url).dispose()
    run_workload(db_url, seed=3, rounds=120, fold_every=7)
    assert pending_rows(db_url) > 0
    db = open_database(db_url, run_migrations=False)
    try:
        with db.read() as conn:
            assert stored(conn, pending=False)[0], "some deltas must have been folded already"
    finally:
        db.dispose()
    assert_exact(db_url)
    assert_monitor_exact(db_url)
    fold_all(db_url)
    assert_exact(db_url, folded=True)


def test_a_rolled_back_transaction_adds_nothing(db_url: str) -> None:
    db = open_database(db_url)
    try:
        run_workload(db_url, seed=9, rounds=20)
        with db.read() as conn:
            before = stored(conn)
            n_before = len(conn.execute(select(job_count_deltas.c.id)).all())
        with pytest.raises(_Rollback), db.write() as conn:
            insert_jobs(conn, _new_jobs(random.Random(1), 5), owner="alice", now=1_700_000_000.0)
            ids = [r[0] for r in conn.execute(select(jobs.c.panda_id).where(jobs.c.status == S.ACTIVATED.value))]
            rows = fetch_rows(conn, ids, lock=True)
            apply_changes(conn, [c for c in (_step(random.Random(2), r, 1.7e9) for r in rows.values()) if c], now=1.7e9)
            raise _Rollback
        with db.read() as conn:
            assert stored(conn) == before
            assert len(conn.execute(select(job_count_deltas.c.id)).all()) == n_before
        # the next transaction on a pooled connection carries nothing of the abandoned one over
        run_workload(db_url, seed=10, rounds=5)
        assert_exact(db_url)
    finally:
        db.dispose()


def test_racing_folders_never_double_count(db_url: str) -> None:
    """Two folder threads (own connections) fold continuously while a writer writes."""
    open_database(db_url).dispose()
    stop = threading.Event()
    errors: list[BaseException] = []

    def folder() -> None:
        db = open_database(db_url, run_migrations=False)
        try:
            while not stop.is_set():
                with db.write() as conn:
                    counters.fold(conn, limit=25)
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)
        finally:
            db.dispose()

    threads = [threading.Thread(target=folder, daemon=True) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        run_workload(db_url, seed=13, rounds=80)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not errors, errors
    assert_exact(db_url)
    fold_all(db_url)
    assert_exact(db_url, folded=True)


@pytest.mark.postgres
def test_only_one_folder_at_a_time_and_no_lock_needed_for_exactness(pg_url: str) -> None:
    """A second folder skips while the first holds the advisory lock; and even two folders that
    bypass the lock (racing ``DELETE ... RETURNING`` on the same rows) fold each delta once."""
    db = open_database(pg_url)
    try:
        run_workload(pg_url, seed=21, rounds=40)
        with db.write() as first, db.write() as second:
            assert counters.fold(first, limit=10) == 20  # 10 of each delta table
            assert counters.fold(second) is None  # the lock is taken: skip the round
        barrier = threading.Barrier(2)
        folded: list[int] = []

        def lockless() -> None:
            barrier.wait(10)
            with db.write() as conn:
                folded.append(counters._fold_counts(conn, 10_000) + counters._fold_errors(conn, 10_000))

        threads = [threading.Thread(target=lockless) for _ in range(2)]
        left = pending_rows(pg_url)
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sum(folded) == left  # every pending row folded by exactly one of them
        assert_exact(pg_url, folded=True)
    finally:
        db.dispose()


def test_rebuild_equals_maintained_counters(db_url: str) -> None:
    db = open_database(db_url)
    try:
        run_workload(db_url, seed=11, rounds=60)
        with db.read() as conn:
            before = stored(conn)
        with db.write() as conn:
            counters.rebuild(conn)
        with db.read() as conn:
            assert stored(conn) == before
            assert stored(conn, pending=False) == before  # rebuilt into the counters, no delta left
    finally:
        db.dispose()


MADE_AFTER_0005 = ("factory_queues", "factories")
"""Tables later migrations create (0008): a database set back to an older version must lose them,
or the upgrade that makes them again fails. Migrations from 0009 on (job_errors moves data, 0010
the audit table, 0011 brokerage) are undone by their own downgrades first (:func:`migrate_to` to 0008)."""


def test_migration_backfills_existing_jobs(db_url: str) -> None:
    """Jobs written before 0004 (counters dropped, schema at 0003) are counted by the upgrade."""
    run_workload_url = db_url
    open_database(db_url).dispose()
    run_workload(run_workload_url, seed=5, rounds=60)
    migrate_to(db_url, "0008")  # errors back into the jobs.errors blob, as 0003 kept them
    db = open_database(db_url, run_migrations=False)
    try:
        with db.write() as conn:
            conn.execute(delete(job_counts))
            for table in ("job_counts", "job_error_counts", "job_count_deltas", "job_error_count_deltas"):
                conn.execute(text(f"DROP TABLE {table}"))
            for table in MADE_AFTER_0005:
                conn.execute(text(f"DROP TABLE {table}"))
            conn.execute(text("UPDATE alembic_version SET version_num = '0003'"))
    finally:
        db.dispose()
    open_database(db_url).dispose()  # runs 0004 with its backfill, then 0005
    assert_exact(db_url, folded=True)
    run_workload(db_url, seed=6, rounds=20)  # and the writers append deltas from here on
    assert_exact(db_url)


def test_migration_0005_keeps_the_0004_counters(db_url: str) -> None:
    """A database at 0004 (counters maintained by upserts) upgrades with its counters intact."""
    open_database(db_url).dispose()
    run_workload(db_url, seed=8, rounds=40)
    fold_all(db_url)
    migrate_to(db_url, "0008")
    db = open_database(db_url, run_migrations=False)
    try:
        with db.write() as conn:
            conn.execute(text("DROP TABLE job_count_deltas"))
            conn.execute(text("DROP TABLE job_error_count_deltas"))
            for table in MADE_AFTER_0005:
                conn.execute(text(f"DROP TABLE {table}"))
            conn.execute(text("UPDATE alembic_version SET version_num = '0004'"))
    finally:
        db.dispose()
    open_database(db_url).dispose()  # runs 0005
    assert_exact(db_url, folded=True)


def test_migration_0016_counts_existing_jobs_per_vo(db_url: str) -> None:
    """A database at 0015 (counters without VO, deltas pending) upgrades to exact per-VO counters,
    and its downgrade sums the VOs back into the old counters without losing a count."""
    open_database(db_url).dispose()
    run_workload(db_url, seed=9, rounds=60)  # leaves deltas pending: the downgrade must fold them
    assert pending_rows(db_url) > 0
    migrate_to(db_url, "0015")
    db = open_database(db_url, run_migrations=False)
    try:
        with db.read() as conn:
            old = Counter(
                {
                    (r.facet, r.width, r.bucket, r.value, r.status): r.n
                    for r in conn.execute(text("SELECT * FROM job_counts"))
                }
            )
            assert "vo" not in {c["name"] for c in inspect(conn).get_columns("job_counts")}
            assert conn.execute(text("SELECT COUNT(*) FROM job_count_deltas")).scalar_one() == 0
            summed: Counter[tuple[Any, ...]] = Counter()
            for key, n in expected_counts(conn).items():
                summed[key[:5]] += n
            assert +old == summed
    finally:
        db.dispose()
    open_database(db_url).dispose()  # runs 0016: the VO column and its backfill
    assert_exact(db_url, folded=True)
    assert_monitor_exact(db_url)
    run_workload(db_url, seed=10, rounds=20)  # the writers append per-VO deltas from here on
    assert_exact(db_url)
    assert_monitor_exact(db_url)


@pytest.mark.postgres
@pytest.mark.timeout(240)
def test_two_processes_writing_concurrently(pg_url: str) -> None:
    open_database(pg_url).dispose()
    run_workload(pg_url, seed=1, rounds=5)  # some jobs to fight over
    ctx = mp.get_context("spawn")
    with ctx.Pool(2) as pool:
        # each process also folds now and then: folders race writers and each other
        results = [pool.apply_async(run_workload, (pg_url, seed, 150), {"fold_every": 5}) for seed in (101, 202)]
        rollbacks = [r.get(timeout=200) for r in results]
    assert sum(rollbacks) > 0  # abandoned transactions were part of the mix
    db = open_database(pg_url, run_migrations=False)
    try:
        with db.read() as conn:
            deadlocks = conn.execute(
                text("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
            ).scalar_one()
    finally:
        db.dispose()
    assert deadlocks == 0
    assert_exact(pg_url)
    assert_monitor_exact(pg_url)
    fold_all(pg_url)
    assert_exact(pg_url, folded=True)


def test_the_dispatcher_folds_in_the_background(make_dispatcher: Callable[..., RunningDispatcher], db_url: str) -> None:
    """A running dispatcher empties the delta tables by itself, into exact counters."""
    d = make_dispatcher(counter_fold_s=0.05)
    with Client(d.address, identity="alice") as client:
        ids = client.submit([{"job_name": f"fold-{i}", "transformation": "run.sh"} for i in range(5)])
        client.kill(ids[:2], reason="enough")
    deadline = time.monotonic() + 20.0
    while pending_rows(db_url) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pending_rows(db_url) == 0, "the dispatcher's folder did not fold the deltas"
    db = open_database(db_url, run_migrations=False)
    try:
        with db.read() as conn:
            counts, _ = stored(conn, pending=False)
            assert counts == expected_counts(conn)
            vo = conn.execute(select(jobs.c.vo).limit(1)).scalar_one()
            assert counts[("produsername", 0, 0, "alice", S.ACTIVATED.value, vo)] == 3
    finally:
        db.dispose()
