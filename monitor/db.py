"""A read-only connection to the dispatcher's database.

The monitor must never change what the dispatcher relies on, so read-only is enforced by the
database itself, not only by the code: PostgreSQL sessions start with
``default_transaction_read_only=on`` (any write fails), SQLite connections with
``PRAGMA query_only=ON``. Every request runs in one transaction with one snapshot (REPEATABLE
READ on PostgreSQL; SQLite's deferred transaction reads one snapshot), so the counts on a page
are consistent with each other. Migrations are never run from here: the dispatcher owns the schema.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, create_engine, event, inspect

STATEMENT_TIMEOUT_MS = 30_000
"""A runaway query (say, a huge time window) is cut off rather than holding a connection forever."""

REQUIRED_TABLES = frozenset(
    {
        "jobs",
        "files",
        "job_events",
        "pilots",
        "workers",
        "job_counts",
        "job_error_counts",
        "job_count_deltas",
        "job_error_count_deltas",
        "task_summaries",
        "ddm_datasets",
        "ddm_dataset_files",
        "ddm_files",
        "ddm_replicas",
        "ddm_requests",
        "ddm_tasks",
        "factory_queues",
    }
)
"""The dispatcher's tables the monitor reads (DDM catalog: 0003; counters: migrations 0004 and 0005;
factory queue health: 0008; task summaries: 0017)."""


class SchemaMissing(RuntimeError):
    """The database has not been created by a dispatcher yet (run ``ailuro server`` once)."""


class MonitorDatabase:
    """An engine whose every connection is read-only; :meth:`read` yields one transaction."""

    def __init__(self, url: str, *, pool_size: int = 5) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.is_postgres = url.startswith("postgresql")
        if self.is_sqlite:
            self.engine = create_engine(url, pool_size=pool_size, max_overflow=pool_size)
            _sqlite_read_only(self.engine)
        else:
            options = f"-c default_transaction_read_only=on -c statement_timeout={STATEMENT_TIMEOUT_MS}"
            self.engine = create_engine(
                url,
                pool_size=pool_size,
                max_overflow=pool_size,
                pool_pre_ping=True,
                connect_args={"options": options},
                # one snapshot for the whole request, not one per statement: a page that reads the
                # per-task summaries and then the counters of its tasks must not see a fold happen
                # between the two (a read-only transaction never fails to serialize)
                isolation_level="REPEATABLE READ",
            )

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql`` (queries pick faster forms per backend)."""
        return self.engine.dialect.name

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """One read-only transaction, always rolled back (there is nothing to commit)."""
        with self.engine.connect() as conn:
            try:
                yield conn
            finally:
                conn.rollback()

    def check_schema(self) -> None:
        """Raise :class:`SchemaMissing` unless the dispatcher's tables exist."""
        with self.engine.connect() as conn:
            present = set(inspect(conn).get_table_names())
        missing = REQUIRED_TABLES - present
        if missing:
            raise SchemaMissing(
                f"database {self.engine.url.render_as_string(hide_password=True)} has no "
                f"{', '.join(sorted(missing))} table(s): start a dispatcher on it first (ailuro server)"
            )

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


def _sqlite_read_only(engine: Any) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # SQLAlchemy's begin event below issues BEGIN
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA query_only=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # a deferred transaction: a snapshot for consistent counts, never a write lock
        conn.exec_driver_sql("BEGIN")
