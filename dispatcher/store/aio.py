"""PostgreSQL connections the event loop awaits itself (psycopg's async API), for the claim statement.

Everything else in the store runs on database threads through SQLAlchemy. The one-statement claim
(``store/claim_pg.py``) is the exception: a pilot waits for it, and on a database thread it cost two
hand-offs per batch, loop to thread and back, each a wait for a core and for the GIL behind the
heartbeat flush and finals threads on a busy machine (measured: ``services/claimpool.py``).

A connection is opened when none is idle (one per claim batch in flight) and closed after any error
(after a cancelled statement its state is unknown); a lost or unreachable database is raised as
``Unavailable``, like every other database call, and the next batch connects again.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import psycopg
from sqlalchemy.engine import make_url

from dispatcher.store.engine import outage_as_unavailable

CONNECT_TIMEOUT_S = 10
"""How long opening a connection may take before the batch fails ``Unavailable`` (libpq's
``connect_timeout``, whole seconds)."""


class AsyncConnections:
    """Autocommit psycopg ``AsyncConnection`` objects for one event loop."""

    def __init__(self, url: str) -> None:
        # the engine's URL (``postgresql+psycopg://...``) as a libpq URI; the password stays in memory only
        self._conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        self._idle: list[psycopg.AsyncConnection[Any]] = []

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """An idle connection, or a new one; back to the idle ones unless the block failed."""
        conn = None
        try:
            with outage_as_unavailable():
                while self._idle and conn is None:
                    conn = self._idle.pop()
                    if conn.closed:
                        conn = None
                if conn is None:
                    conn = await psycopg.AsyncConnection.connect(
                        self._conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S
                    )
                yield conn
        except BaseException:
            if conn is not None:  # after a failed or cancelled statement its state is unknown
                with contextlib.suppress(Exception):
                    await conn.close()
            raise
        self._idle.append(conn)

    async def close(self) -> None:
        """Close the idle connections (those in use are closed by their block's failure or stop)."""
        idle, self._idle = self._idle, []
        for conn in idle:
            with contextlib.suppress(Exception):
                await conn.close()
