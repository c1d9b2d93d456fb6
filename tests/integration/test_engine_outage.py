"""A write transaction whose session the server terminates is an outage (``Unavailable``), never INTERNAL.

Found by ``tests/fault/test_db_sessions_killed.py`` in CI: after the connection was invalidated
mid-transaction, ``Database.write`` read its connection's ``info`` (the parked-request wake flag),
which SQLAlchemy refuses until the transaction is rolled back; the resulting PendingRollbackError
replaced the outage and reached a SubmitJobs caller as INTERNAL. This test makes the same thing
happen deterministically: the transaction's own backend is terminated between two statements.
"""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from ailuro.errors import Unavailable
from dispatcher.store import engine as store_engine

pytestmark = pytest.mark.postgres


@pytest.mark.parametrize("marked", [False, True], ids=["plain", "activating"])
def test_a_terminated_write_transaction_is_unavailable(pg_url: str, marked: bool) -> None:
    db = store_engine.Database(pg_url)
    admin = create_engine(make_url(pg_url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    woken: list[int] = []
    db.on_activated = lambda: woken.append(1)
    try:
        with pytest.raises(Unavailable), db.write() as conn:
            if marked:
                store_engine.mark_activated(conn)
            pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
            with admin.connect() as other:
                other.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
            conn.execute(text("SELECT 1"))
        assert woken == []  # nothing committed, nobody woken
        with db.write() as conn:  # the pool recovers: the next transaction works
            assert conn.execute(text("SELECT 1")).scalar_one() == 1
    finally:
        db.dispose()
        admin.dispose()
