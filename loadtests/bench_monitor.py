"""Monitor page-time benchmark at 1,000,000 jobs on PostgreSQL.

    python -m loadtests.bench_monitor                      # 1,000,000 jobs, fresh database, dropped after
    python -m loadtests.bench_monitor --jobs 200000 --keep # smaller; keep the database (URL printed)
    python -m loadtests.bench_monitor --db-url postgresql+psycopg://postgres@127.0.0.1/ailuro_bench_x --no-load

It creates ``ailuro_bench_<random>`` on ``--pg`` (the dispatcher's migrations make the schema),
streams the synthetic jobs of :mod:`monitor.sampledata` (30 days of jobs over 11 sites, 41 users,
8 transformations; ~8% non-final, ~10% failed with typed errors; input/output/log files and the
state history of each job) into it with COPY, rebuilds the job counters (as migration 0004's
backfill does), runs ANALYZE, then requests every page and its
JSON twin from a real monitor (uvicorn on a loopback port, the way ``ailuro monitor`` serves;
plain ``urllib``, so only the runtime dependencies are needed, not the dev extra) and prints the
median and the worst of ``--repeat`` runs. Figures only: nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

BENCH_STATES = (
    ("finished", 80.0),
    ("failed", 10.0),
    ("cancelled", 2.0),
    ("activated", 4.0),
    ("sent", 0.5),
    ("starting", 0.3),
    ("running", 3.0),
    ("transferring", 0.2),
)


def _copy(conn: Any, table: str, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
    with conn.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as cp:
        for row in rows:
            cp.write_row(row)


def load(url: str, n_jobs: int, *, now: float, chunk: int = 50_000) -> dict[str, int]:
    """Create the schema and COPY ``n_jobs`` jobs with files and events; returns row counts."""
    import psycopg

    from dispatcher.store import counters
    from dispatcher.store.engine import open_database
    from dispatcher.store.schema import files, job_errors, job_events, jobs
    from monitor.sampledata import SampleSpec, generate

    open_database(url).dispose()
    spec = SampleSpec(n_jobs=n_jobs, now=now, span_hours=24.0 * 30, state_weights=BENCH_STATES)
    # the columns the sample fills (the others take their server default, e.g. ``kill_delivered``)
    first = next(generate(SampleSpec(n_jobs=1, now=now, span_hours=1.0)))
    job_cols = [c.name for c in jobs.columns if c.name in first.job]
    file_cols = [c.name for c in files.columns if c.name != "file_id"]
    event_cols = [c.name for c in job_events.columns if c.name != "event_id"]
    error_cols = [c.name for c in job_errors.columns]
    counts = {"jobs": 0, "files": 0, "job_events": 0}
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn) as conn:
        jrows: list[tuple[Any, ...]] = []
        frows: list[tuple[Any, ...]] = []
        erows: list[tuple[Any, ...]] = []
        xrows: list[tuple[Any, ...]] = []

        def flush() -> None:
            _copy(conn, "jobs", job_cols, jrows)
            _copy(conn, "files", file_cols, frows)
            _copy(conn, "job_events", event_cols, erows)
            _copy(conn, "job_errors", error_cols, xrows)
            conn.commit()
            counts["jobs"] += len(jrows)
            counts["files"] += len(frows)
            counts["job_events"] += len(erows)
            jrows.clear()
            frows.clear()
            erows.clear()
            xrows.clear()

        started = time.perf_counter()
        for rows in generate(spec):
            jrows.append(tuple(rows.job[c] for c in job_cols))
            frows.extend(tuple(f[c] for c in file_cols) for f in rows.files)
            erows.extend(tuple(e[c] for c in event_cols) for e in rows.events)
            xrows.extend(tuple(x[c] for c in error_cols) for x in rows.errors)
            if len(jrows) >= chunk:
                flush()
                done = counts["jobs"]
                print(f"  loaded {done:,} jobs ({done / (time.perf_counter() - started):,.0f}/s)", flush=True)
        if jrows:
            flush()
        _copy_pilots(conn, spec)
        conn.execute("SELECT setval(pg_get_serial_sequence('jobs', 'panda_id'), (SELECT max(panda_id) FROM jobs))")
        conn.commit()
    db = open_database(url, run_migrations=False)
    try:
        t0 = time.perf_counter()
        with db.write() as wconn:
            counters.rebuild(wconn)  # COPY bypassed the store: count the rows as migration 0004 does
        print(f"  counters rebuilt in {time.perf_counter() - t0:.1f} s", flush=True)
    finally:
        db.dispose()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return counts


def _copy_pilots(conn: Any, spec: Any) -> None:
    """COPY the sample's pilots and workers (the columns it fills; the rest take their defaults)."""
    from dispatcher.store.schema import pilots, workers
    from monitor.sampledata import pilots_and_workers

    prow, wrow = pilots_and_workers(spec)
    for table, rows in ((pilots, prow), (workers, wrow)):
        if rows:
            cols = [c.name for c in table.columns if c.name in rows[0]]
            _copy(conn, table.name, cols, [tuple(r[c] for c in cols) for r in rows])


def _viewer_token(directory: Path, viewer: str) -> tuple[str, str]:
    """An embedded issuer in ``directory`` (its JWKS path) and a token: an admin, or a member of the
    sample's VO (``vo``: every jobs query then filters on ``jobs.vo``, as for a real user)."""
    from dispatcher.auth.config import DEFAULT_AUDIENCE, EMBEDDED_ISSUER
    from dispatcher.auth.issuer import IssuerFiles, ensure, issue, load_key

    files = IssuerFiles(state_dir=directory / "auth")
    ensure(files, issuer=EMBEDDED_ISSUER, audience=DEFAULT_AUDIENCE, admin_vo="admin")
    who = {"user": "admin", "vo": "admin", "roles": ("admin",)} if viewer == "admin" else {"user": "u", "vo": "compass"}
    token = issue(load_key(files), issuer=EMBEDDED_ISSUER, audience=DEFAULT_AUDIENCE, **who)  # type: ignore[arg-type]
    return str(files.jwks), token


def bench(url: str, repeat: int, viewer: str = "admin", only: tuple[str, ...] = ()) -> list[tuple[str, float, float]]:
    """Time every page (or those whose path starts with one of ``only``) and its JSON twin over
    HTTP as ``viewer``; returns (path, median ms, max ms)."""
    import tempfile
    import urllib.error
    import urllib.request

    from ailuro.errorcodes import PAYLOAD_FAILED as code  # the sample's most common error
    from monitor.auth import MonitorAuth
    from monitor.config import MonitorConfig
    from monitor.server import run_in_thread

    eng = create_engine(url)
    with eng.connect() as conn:
        site = conn.execute(text("SELECT computing_site FROM jobs WHERE panda_id = 1")).scalar_one()
        some_job = conn.execute(
            text("SELECT panda_id FROM jobs WHERE status = 'failed' ORDER BY panda_id DESC LIMIT 1")
        ).scalar_one()
        task = conn.execute(text("SELECT task_id FROM jobs WHERE panda_id = :p"), {"p": some_job}).scalar_one()
        pilot = conn.execute(text("SELECT pilot_id FROM jobs WHERE panda_id = :p"), {"p": some_job}).scalar_one()
    eng.dispose()
    paths = [
        "/jobs/",
        "/jobs/?hours=24",
        "/jobs/?hours=168",
        "/jobs/?hours=720",
        f"/jobs/?computingsite={site}&jobstatus=failed&hours=168",
        "/jobs/?produsername=user05&hours=168",
        f"/jobs/?taskid={task}&hours=720",
        "/jobs/?sort=created&order=asc&hours=24",
        "/jobs/?hours=24&page=20",
        f"/job/{some_job}",
        f"/jobs/?errorcode={code}&errorcomponent=payload&jobstatus=failed",
        f"/jobs/?errorcode={code}&computingsite={site}&jobstatus=failed&hours=168",
        f"/site/{site}",
        f"/task/{task}",
        *([f"/pilot/{pilot}"] if pilot else []),
        f"/search/?q={some_job}",
        "/tasks/?page=2",
        "/tasks/",
        "/sites/",
        "/pilots/",
        "/errors/",
        "/errors/?hours=168",
        "/users/",
        "/datasets/",
        "/plots/",
        "/plots/?hours=168",
        *(["/metrics"] if viewer == "admin" else []),
    ]
    if only:
        paths = [p for p in paths if p.startswith(only)]
    auth_dir = tempfile.TemporaryDirectory(prefix="ailuro-bench-auth-")
    jwks, token = _viewer_token(Path(auth_dir.name), viewer)
    running = run_in_thread(MonitorConfig(db_url=url, port=0, auth=MonitorAuth(embedded_jwks=jwks)))

    def get(path: str) -> None:
        request = urllib.request.Request(running.url + path, headers={"Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(request, timeout=120) as r:
                r.read()
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"{path}: HTTP {e.code}: {e.read()[:300]!r}") from None

    out = []
    try:
        for path in paths:
            json_twin = path + ("&json" if "?" in path else "?json")
            variants = [path] if path.startswith(("/metrics", "/search")) else [path, json_twin]
            for p in variants:
                get(p)  # warm the connection pool and the plan cache
                times = []
                for _ in range(repeat):
                    t0 = time.perf_counter()
                    get(p)
                    times.append((time.perf_counter() - t0) * 1000)
                out.append((p, statistics.median(times), max(times)))
    finally:
        running.stop()
        auth_dir.cleanup()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres", help="admin URL")
    parser.add_argument("--db-url", default="", help="use this database instead of creating one")
    parser.add_argument("--no-load", action="store_true", help="do not load rows (with --db-url: already loaded)")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--viewer", choices=("admin", "vo"), default="admin", help="time pages as an admin or as a VO member"
    )
    parser.add_argument(
        "--only", action="append", default=[], metavar="PREFIX", help="time only the pages starting so (repeatable)"
    )
    args = parser.parse_args()

    admin = create_engine(args.pg, isolation_level="AUTOCOMMIT")
    name = ""
    url = args.db_url
    if not url:
        name = f"ailuro_bench_{uuid.uuid4().hex[:10]}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(args.pg).set(database=name).render_as_string(hide_password=False)
    try:
        now = time.time()
        if not args.no_load:
            print(f"loading {args.jobs:,} jobs into {url}", flush=True)
            t0 = time.perf_counter()
            counts = load(url, args.jobs, now=now)
            print(
                f"loaded {counts['jobs']:,} jobs, {counts['files']:,} files, {counts['job_events']:,} events "
                f"in {time.perf_counter() - t0:.0f} s (incl. VACUUM ANALYZE)",
                flush=True,
            )
        results = bench(url, args.repeat, args.viewer, tuple(args.only))
        print(f"\npage times over {args.jobs:,} jobs (PostgreSQL, median / max of {args.repeat}, ms):")
        width = max(len(p) for p, _, _ in results)
        for path, med, worst in results:
            print(f"  {path:<{width}}  {med:8.1f}  {worst:8.1f}")
    finally:
        if name and not args.keep:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        elif name:
            print(f"kept database: {url}")
        admin.dispose()


if __name__ == "__main__":
    main()
