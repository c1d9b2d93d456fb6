"""PostgreSQL bulk writes (``dispatcher.store.bulk``): COPY rows and ids drawn from the sequence."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from dispatcher.store import bulk
from dispatcher.store.engine import open_database
from dispatcher.store.schema import job_events

pytestmark = pytest.mark.postgres


def test_copy_rows_and_allocate_ids(pg_url: str) -> None:
    db = open_database(pg_url)
    try:
        with db.write() as conn:
            a = bulk.allocate_ids(conn, job_events.c.event_id, 3)
            b = bulk.allocate_ids(conn, job_events.c.event_id, 2)
            assert a == sorted(a) and len(set(a + b)) == 5 and min(b) > max(a)
            assert bulk.allocate_ids(conn, job_events.c.event_id, 0) == []
            cols = ("event_id", "panda_id", "time", "from_status", "to_status", "actor", "reason", "attempt_nr")
            cols += ("lease_epoch",)
            rows = [(a[0], 7, 1.5, "", "defined", "me", "tab\there, quote ' and \\ backslash", 1, 0)]
            rows += [(a[1], 7, 2.5, "defined", "activated", "me", "ünïcode\nnewline", 1, 0)]
            bulk.copy_rows(conn, job_events, cols, rows)
        with db.read() as conn:
            got = conn.execute(select(*[job_events.c[c] for c in cols]).order_by(job_events.c.event_id)).all()
        assert [tuple(r) for r in got] == rows
        with db.write() as conn, pytest.raises(KeyError, match="no column"):
            bulk.copy_rows(conn, job_events, ("panda_id", "nope; DROP TABLE jobs"), [])
    finally:
        db.dispose()
