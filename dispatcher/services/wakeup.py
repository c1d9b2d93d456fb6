"""Wake-ups for pilot commands written by another dispatcher process (PostgreSQL LISTEN/NOTIFY).

A kill for a pilot streaming to another process (another ``--workers`` process, another host) is
written to ``pilot_commands``; that process used to find it only at its next poll
(``command_poll_s``). On PostgreSQL the killing transaction also sends ``NOTIFY`` on
:data:`dispatcher.store.jobs.COMMANDS_CHANNEL` (delivered at commit), and every process keeps one
connection ``LISTEN``ing on it, so the command loop looks at once. The poll stays as the safety
net: a notification lost while the listener reconnects costs at most one poll interval.

The same connection also ``LISTEN``s on :data:`dispatcher.store.engine.JOBS_CHANNEL`: another
process made jobs ``activated``, so this process's parked job requests claim again
(``services/parking.py``; a notification of this process's own is ignored: it woke them already).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable

import psycopg

from ailuro.aio import wait_event
from dispatcher.services.runtime import Runtime
from dispatcher.store.engine import JOBS_CHANNEL
from dispatcher.store.jobs import COMMANDS_CHANNEL

log = logging.getLogger(__name__)

_NOTIFY_WAIT_S = 0.5
"""How long one wait for notifications blocks before the listener checks whether to stop."""
_RECONNECT_S = 1.0


class CommandWakeup:
    """One LISTEN connection on a daemon thread; :meth:`wait` returns early when notified."""

    def __init__(
        self,
        conninfo: str,
        loop: asyncio.AbstractEventLoop,
        *,
        on_jobs: Callable[[], None] | None = None,
        origin: str = "",
    ) -> None:
        self._conninfo = conninfo
        self._loop = loop
        self._on_jobs = on_jobs
        """Called on the loop when another process (not ``origin``) activated jobs."""
        self._origin = origin
        self._event = asyncio.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ailuro-command-listen", daemon=True)
        self.listening = False
        """Whether the LISTEN connection is up (then a command's NOTIFY wakes the poll at once)."""

    @classmethod
    def start_for(cls, runtime: Runtime, on_jobs: Callable[[], None] | None = None) -> CommandWakeup | None:
        """A started listener for ``runtime``'s database, or ``None`` on SQLite (one process anyway)."""
        if not runtime.db.is_postgres:
            return None
        url = runtime.db.engine.url.set(drivername="postgresql")
        conninfo = url.render_as_string(hide_password=False)
        wakeup = cls(conninfo, asyncio.get_running_loop(), on_jobs=on_jobs, origin=runtime.db.origin)
        wakeup._thread.start()
        return wakeup

    def _wake(self, callback: Callable[[], None] | None = None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed during shutdown
            self._loop.call_soon_threadsafe(callback or self._event.set)

    def _notified(self, channel: str, payload: str) -> None:
        if channel != JOBS_CHANNEL:
            self._wake()
        elif self._on_jobs is not None and payload != self._origin:
            self._wake(self._on_jobs)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {COMMANDS_CHANNEL}")
                    conn.execute(f"LISTEN {JOBS_CHANNEL}")
                    self.listening = True
                    self._wake()  # commands written while this was not listening
                    if self._on_jobs is not None:
                        self._wake(self._on_jobs)  # and jobs activated meanwhile
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=_NOTIFY_WAIT_S, stop_after=1):
                            self._notified(note.channel, note.payload)
            except Exception as exc:  # the database is away: the poll covers it; try again
                self.listening = False
                log.debug("command listener: %r; reconnecting", exc)
                self._stop.wait(_RECONNECT_S)

    async def wait(self, timeout: float) -> None:
        """Return when notified or after ``timeout`` seconds, whichever comes first."""
        await wait_event(self._event, timeout)  # never asyncio.wait_for: see ailuro/aio.py
        self._event.clear()

    def stop(self) -> None:
        """Stop listening (the thread ends within about half a second)."""
        self._stop.set()
        self._thread.join(timeout=2 * _NOTIFY_WAIT_S + 1)


LISTENING_POLL_S = 2.0
"""The command poll's interval (at least) while the LISTEN connection is up: a safety net only."""


async def wait_for_commands(wakeup: CommandWakeup | None, timeout: float) -> None:
    """Sleep ``timeout`` seconds, or less when another process wrote a command (PostgreSQL).

    While the listener is connected every command's ``NOTIFY`` wakes this at once (and a reconnect
    wakes it too), so the poll behind it waits :data:`LISTENING_POLL_S`: polling 5x a second cost
    an idle dispatcher a read transaction each time.
    """
    if wakeup is None:
        await asyncio.sleep(timeout)
    else:
        await wakeup.wait(max(timeout, LISTENING_POLL_S) if wakeup.listening else timeout)
