"""Which database errors mean "unavailable, retry" (issue #12 finding 10: INTERNAL during a PostgreSQL restart).

A fast shutdown sends every session 57P01 (admin shutdown); whether SQLAlchemy has also marked the
connection invalidated depends on whether libpq saw the closed socket yet, a race. On 9effc2a the
losing side of that race, and raw driver errors from ``COPY`` (which bypasses SQLAlchemy), ended as
INTERNAL. The classification now goes by the server's error code and the driver error itself.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import psycopg.errors as pgerr
import pytest
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from ailuro.errors import Unavailable
from dispatcher.store.engine import Database, is_unavailable


def _wrapped(orig: BaseException, *, invalidated: bool = False) -> OperationalError:
    return OperationalError("SELECT 1", {}, orig, connection_invalidated=invalidated)


@pytest.mark.parametrize(
    "exc",
    [
        _wrapped(pgerr.AdminShutdown("terminating connection due to administrator command")),
        _wrapped(pgerr.CrashShutdown("terminating connection because of crash of another server process")),
        _wrapped(pgerr.CannotConnectNow("the database system is shutting down")),
        _wrapped(pgerr.TooManyConnections("sorry, too many clients already")),
        _wrapped(pgerr.ConnectionFailure("connection failure")),
        _wrapped(psycopg.OperationalError("consuming input failed: server closed the connection unexpectedly")),
        _wrapped(pgerr.UniqueViolation("whatever"), invalidated=True),  # SQLAlchemy saw the disconnect
        pgerr.AdminShutdown("terminating connection due to administrator command"),  # raw, from COPY
        psycopg.OperationalError("the connection is lost"),  # raw, from COPY
        psycopg.InterfaceError("the connection is closed"),
        _wrapped(sqlite3.OperationalError("disk I/O error")),
    ],
    ids=lambda e: f"{type(e).__name__}:{type(getattr(e, 'orig', e)).__name__}",
)
def test_outages_are_unavailable(exc: BaseException) -> None:
    assert is_unavailable(exc)


@pytest.mark.parametrize(
    "exc",
    [
        IntegrityError("INSERT", {}, pgerr.UniqueViolation("duplicate key")),
        ProgrammingError("SELECT", {}, pgerr.UndefinedTable("no such table")),
        _wrapped(pgerr.SerializationFailure("could not serialize")),  # a conflict: re-run, not an outage
        _wrapped(sqlite3.OperationalError("database is locked")),
        pgerr.NumericValueOutOfRange("integer out of range"),
        ValueError("a bug"),
        OverflowError("a bug"),
        Unavailable("already mapped"),
    ],
    ids=lambda e: f"{type(e).__name__}:{type(getattr(e, 'orig', e)).__name__}",
)
def test_bugs_and_conflicts_are_not_unavailable(exc: BaseException) -> None:
    assert not is_unavailable(exc)


@pytest.mark.parametrize("mode", ["write", "read"])
def test_transactions_turn_an_admin_shutdown_into_unavailable(tmp_path: Path, mode: str) -> None:
    db = Database(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        with pytest.raises(Unavailable), getattr(db, mode)():
            raise _wrapped(pgerr.AdminShutdown("terminating connection due to administrator command"))
        with pytest.raises(Unavailable), getattr(db, mode)():
            raise psycopg.OperationalError("the connection is lost")
        with pytest.raises(ValueError), getattr(db, mode)():
            raise ValueError("bugs stay bugs")
    finally:
        db.dispose()
