"""Every engine listener is attached when the Database is made, never by a thread that uses it.

SQLAlchemy walks an engine's listener collection without a lock. The counters' commit/rollback/
begin listeners used to be attached lazily by the first write; a reader beginning its transaction
in another thread at that instant failed with "deque mutated during iteration" (a fresh-clone CI
run saw GetJobs answer INTERNAL). The fix attaches them in ``Database.__init__``: these tests fail
on the lazy version, which had none attached before the first write.
"""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import event

from dispatcher.store import counters
from dispatcher.store.engine import Database


def _listener_counts(db: Database) -> tuple[int, int, int]:
    dispatch = db.engine.dispatch
    return len(dispatch.commit), len(dispatch.rollback), len(dispatch.begin)


def test_counter_listeners_are_attached_before_any_transaction(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'a.db'}")
    try:
        assert event.contains(db.engine, "commit", counters._on_commit)
        assert event.contains(db.engine, "rollback", counters._discard)
        assert event.contains(db.engine, "begin", counters._discard)
        before = _listener_counts(db)
        with db.read() as conn:  # no transaction adds a listener any more
            conn.exec_driver_sql("SELECT 1")
        with db.write() as conn:
            conn.exec_driver_sql("SELECT 1")
        assert _listener_counts(db) == before
    finally:
        db.dispose()


def test_install_from_many_threads_attaches_each_listener_once(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'b.db'}")
    try:
        before = _listener_counts(db)
        threads = [threading.Thread(target=counters.install, args=(db.engine,)) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert _listener_counts(db) == before
    finally:
        db.dispose()
