"""Engine creation, SQLite tuning, programmatic Alembic migrations, and transaction helpers.

SQLite runs in WAL mode (readers never block the writer) with a busy timeout, and every write
transaction starts with ``BEGIN IMMEDIATE`` under a process-wide lock: one writer at a time,
and no deadlock when a transaction that has read later wants to write. Other processes on the
same file wait on the busy timeout. PostgreSQL needs none of this: row locks and
``SKIP LOCKED`` let writers proceed in parallel.
"""

from __future__ import annotations

import contextlib
import logging
import select as selectmod
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, func, select, text
from sqlalchemy.exc import DBAPIError, DisconnectionError

from ailuro.errors import Unavailable
from dispatcher.store import counters

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

JOBS_CHANNEL = "ailuro_jobs_activated"
"""PostgreSQL NOTIFY channel: a transaction made jobs ``activated`` (payload: the writing
process's :attr:`Database.origin`, so it ignores its own). See ``services/parking.py``."""
_ACTIVATED = "ailuro_activated"


def mark_activated(conn: Connection) -> None:
    """Note that this transaction makes jobs ``activated``: parked job requests are woken once it commits.

    Called by the store where jobs become ``activated`` (insert, transitions); acted on by
    :meth:`Database.write` (``NOTIFY`` before the commit on PostgreSQL, :attr:`Database.on_activated`
    after it).
    """
    conn.info[_ACTIVATED] = True


SQLITE_BUSY_TIMEOUT_MS = 30_000
_MIGRATION_LOCK_KEY = 0x41494C55524F  # "AILURO": PostgreSQL advisory lock held while migrating


class Database:
    """One engine plus the transaction discipline of its backend (see module docstring).

    ``hide_parameters``: a failed statement's exception never carries its bound values, which
    are client data (a final report's diag, a job's parameters) and may be megabytes.
    """

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.is_postgres = url.startswith("postgresql")
        if self.is_sqlite:
            self.engine = create_engine(url, pool_size=pool_size, max_overflow=pool_size, hide_parameters=True)
            _tune_sqlite(self.engine)
        else:
            self.engine = create_engine(url, pool_size=pool_size, max_overflow=pool_size, hide_parameters=True)
            _ping_when_needed(self.engine)
        # Every listener is attached here, before any thread uses the engine (see counters.install).
        counters.install(self.engine)
        self._write_lock = threading.Lock() if self.is_sqlite else None
        self.on_activated: Callable[[], None] | None = None
        """Called (from the committing thread) after a write transaction that made jobs ``activated``."""
        self.origin = ""
        """This process's name in :data:`JOBS_CHANNEL` notifications (the dispatcher id)."""

    @contextlib.contextmanager
    def write(self) -> Iterator[Connection]:
        """A read-write transaction, committed on normal exit, rolled back on an exception.

        A transaction that called :func:`mark_activated` also notifies :data:`JOBS_CHANNEL`
        (PostgreSQL, delivered at commit) and calls :attr:`on_activated` once committed.
        """
        activated = False
        try:
            with self._write_lock or contextlib.nullcontext(), self.engine.begin() as conn:
                try:
                    yield conn
                    if conn.info.get(_ACTIVATED) and self.is_postgres:
                        conn.execute(select(func.pg_notify(JOBS_CHANNEL, self.origin)))
                finally:
                    # The flag lives on the pooled DBAPI connection: never leave it behind. A
                    # connection invalidated mid-transaction (the database went away) refuses even
                    # ``info`` until rolled back (PendingRollbackError, which would replace the
                    # outage and reach the client as INTERNAL); its DBAPI connection, and the flag
                    # with it, is discarded anyway.
                    activated = not conn.invalidated and bool(conn.info.pop(_ACTIVATED, False))
        except Exception as exc:
            if is_unavailable(exc):
                raise Unavailable(f"database unavailable: {_reason(exc)}") from exc
            raise
        if activated and self.on_activated is not None:
            self.on_activated()

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only transaction (plain ``BEGIN`` on SQLite, so it never waits for the writer)."""
        with outage_as_unavailable(), self.engine.connect().execution_options(ailuro_read=True) as conn, conn.begin():
            yield conn

    @contextlib.contextmanager
    def autocommit(self) -> Iterator[Connection]:
        """A connection on which every statement commits by itself (no ``BEGIN``, no ``COMMIT``).

        For single statements that carry their whole transaction (PostgreSQL's one-statement claim,
        ``store/claim_pg.py``): a ``BEGIN`` and a ``COMMIT`` are two round trips of their own, and
        on a busy machine each waited as long as the statement. The counters' commit listener does
        not run here: such a statement writes its own counter deltas.
        """
        with outage_as_unavailable(), self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            yield conn

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


@contextlib.contextmanager
def outage_as_unavailable() -> Iterator[None]:
    """Turn a lost or unreachable database (:func:`is_unavailable`) into ``Unavailable`` (also
    around the awaits of ``store/aio.py``'s async connections)."""
    try:
        yield
    except Exception as exc:
        if is_unavailable(exc):
            raise Unavailable(f"database unavailable: {_reason(exc)}") from exc
        raise


T = TypeVar("T")
_TRANSIENT = {"DeadlockDetected", "SerializationFailure", "LockNotAvailable"}


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is a conflict that re-running the whole transaction resolves."""
    if not isinstance(exc, DBAPIError):
        return False
    orig = exc.orig
    name = type(orig).__name__
    return name in _TRANSIENT or (name == "OperationalError" and "locked" in str(orig))


def retry_transient(fn: Callable[[], T], *, attempts: int = 4) -> T:
    """Run ``fn`` (one or more complete transactions), re-running it after a deadlock or lock timeout.

    Raises ``Unavailable`` when the conflict persists, so clients know the call is safe to retry.
    """
    for attempt in range(attempts):
        try:
            return fn()
        except DBAPIError as exc:
            if not is_transient(exc):
                raise
            if attempt == attempts - 1:
                raise Unavailable(f"database busy: {exc.orig}") from exc
            log.warning("transient database conflict (%s); retrying", type(exc.orig).__name__)
            time.sleep(0.01 * 2**attempt)
    raise AssertionError("unreachable")


_UNAVAILABLE_SQLSTATES = ("08", "57P01", "57P02", "57P03", "53300")
"""PostgreSQL error codes meaning "the server cannot serve you now": connection exceptions (class
08), admin shutdown, crash shutdown, cannot connect now (starting up or shutting down), too many
connections. A fast shutdown sends 57P01 to every session: whether libpq has also noticed the
closed socket by then (SQLAlchemy's ``connection_invalidated``) is a race, so the code decides."""


def is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` means the database is unreachable or going away (the call is safe to retry).

    Looks at SQLAlchemy's wrapper and at raw driver errors alike: ``COPY`` runs on the raw psycopg
    cursor, so its failures arrive unwrapped. A locked SQLite database is a conflict, not an outage.
    """
    if isinstance(exc, Unavailable):
        return False  # already mapped
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        orig: BaseException | None = exc.orig
    else:
        orig = exc
    if orig is None or "locked" in str(orig):
        return False
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate:
        return sqlstate.startswith(_UNAVAILABLE_SQLSTATES)
    # No server error code: the driver itself lost or could not make the connection.
    return type(orig).__name__ in {"OperationalError", "InterfaceError"} and _is_driver_error(orig)


def _is_driver_error(exc: BaseException) -> bool:
    module = type(exc).__module__
    return module.startswith(("psycopg", "sqlite3", "sqlalchemy"))


def _reason(exc: BaseException) -> BaseException:
    return exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc


PING_AFTER_IDLE_S = 1.0
"""A pooled PostgreSQL connection idle in the pool longer than this is pinged before it is used."""
_CHECKED_IN = "ailuro_checked_in"


def _ping_when_needed(engine: Engine) -> None:
    """Ping a pooled connection at checkout only when it may have gone away (PostgreSQL).

    SQLAlchemy's ``pool_pre_ping`` costs a ``SELECT 1`` round trip per transaction; with
    pilots' finals and requests arriving one at a time that was one statement in ten of the
    dispatcher's. A connection that was used within :data:`PING_AFTER_IDLE_S` and whose socket
    has nothing to read is handed out as it is. A server that terminated the session or shut down
    (``pg_terminate_backend``, a restart: 57P01) sends its error and closes the socket, which makes
    it readable, so such a connection is still pinged, found dead and replaced here. What is left
    (a session lost silently within the last second) fails at its first statement as an outage:
    ``Unavailable``, which every caller already treats as "retry".
    """

    @event.listens_for(engine, "connect")
    def _on_connect(_dbapi_conn: Any, record: Any) -> None:
        record.info[_CHECKED_IN] = time.monotonic()

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_conn: Any, record: Any) -> None:
        if record is not None:
            record.info[_CHECKED_IN] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        idle = time.monotonic() - record.info.get(_CHECKED_IN, 0.0)
        if idle < PING_AFTER_IDLE_S and not _readable(dbapi_conn):
            return
        try:
            engine.dialect.do_ping(dbapi_conn)  # the ping pool_pre_ping makes, through the public API
        except Exception as exc:
            raise DisconnectionError("pooled connection failed its ping") from exc  # the pool replaces it


def _readable(dbapi_conn: Any) -> bool:
    """Whether the server sent something to an idle connection (an error, EOF): then it is pinged."""
    try:
        poller = selectmod.poll()
        poller.register(dbapi_conn.pgconn.socket, selectmod.POLLIN | selectmod.POLLERR | selectmod.POLLHUP)
        return bool(poller.poll(0))
    except Exception:  # no socket (closed, broken): let the ping find out
        return True


def _tune_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's begin event below issue BEGIN itself (pysqlite's implicit BEGIN is DEFERRED).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get("ailuro_read") else "BEGIN IMMEDIATE")


def migrate(db: Database) -> None:
    """Bring the schema to the newest Alembic revision (``upgrade head``); safe to run concurrently."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with db.engine.connect() as conn:
        if db.is_postgres:
            # Two dispatchers starting together must not both create the tables.
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _MIGRATION_LOCK_KEY})
            conn.commit()
        try:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
            conn.commit()
        finally:
            if db.is_postgres:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _MIGRATION_LOCK_KEY})
                conn.commit()
    log.info("database schema is at the newest revision (%s)", db.engine.url.render_as_string(hide_password=True))


def open_database(url: str, *, pool_size: int = 10, run_migrations: bool = True) -> Database:
    """Create the :class:`Database` for ``url`` and migrate it."""
    db = Database(url, pool_size=pool_size)
    if run_migrations:
        migrate(db)
    return db
