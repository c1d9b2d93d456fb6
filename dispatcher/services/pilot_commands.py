"""Commands to pilots (kill, DEBUG): pushed to the streams of this process, polled for the others.

Split out of :mod:`dispatcher.services.hub`, which owns the streams and delegates here. A command
row in ``pilot_commands`` is written by whichever process took the kill or DEBUG request; the
process streaming to that pilot takes it (marking it delivered) and sends it on the stream: at
once when it wrote the row itself (:meth:`CommandRelay.push`), else on its next poll
(``command_poll_s``, or sooner when PostgreSQL's NOTIFY wakes it). A unary pilot takes its
commands with each UpdateJob (:meth:`CommandRelay.take_for`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ailuro.v1 import pilot_pb2
from dispatcher.logsafe import describe
from dispatcher.services.runtime import Runtime
from dispatcher.services.wakeup import CommandWakeup, wait_for_commands
from dispatcher.store import pilots as pstore
from dispatcher.store.jobs import KillCommand

if TYPE_CHECKING:
    from dispatcher.services.streams import PilotStream

log = logging.getLogger(__name__)

_COMMAND_TYPES: dict[str, pilot_pb2.CommandType] = {
    "kill": pilot_pb2.COMMAND_TYPE_KILL,
    "debug": pilot_pb2.COMMAND_TYPE_DEBUG,
}


def command_message(panda_id: int, kind: str, reason: str, command_id: int = 0) -> pilot_pb2.Command:
    """A Command message from a ``pilot_commands`` row's fields."""
    kind_value = _COMMAND_TYPES.get(kind, pilot_pb2.COMMAND_TYPE_UNSPECIFIED)
    return pilot_pb2.Command(panda_id=panda_id, type=kind_value, reason=reason, command_id=command_id)


class CommandRelay:
    """Delivers ``pilot_commands`` rows to the pilots streaming to this process.

    ``streams`` is the hub's own map of pilot id to stream (read, never changed here).
    """

    def __init__(self, runtime: Runtime, streams: Mapping[str, PilotStream]) -> None:
        self.rt = runtime
        self.streams = streams
        self._wakeup: CommandWakeup | None = None

    def start(self, on_jobs: Callable[[], None] | None = None) -> None:
        """Listen for wake-ups (PostgreSQL NOTIFY) before :meth:`run` polls; ``on_jobs``: another
        process activated jobs (the same connection listens for that, see ``services/wakeup.py``)."""
        self._wakeup = CommandWakeup.start_for(self.rt, on_jobs=on_jobs)

    async def run(self) -> None:
        """Poll for commands other processes wrote for pilots streaming here, until cancelled."""
        interval = self.rt.config.command_poll_s

        def take() -> list[Any]:
            # Look before writing: on SQLite a write transaction every poll would contend with claims.
            with self.rt.db.read() as conn:
                if not pstore.has_pending_commands(conn, dispatcher_id=self.rt.dispatcher_id):
                    return []
            with self.rt.db.write() as conn:
                return pstore.take_commands(conn, dispatcher_id=self.rt.dispatcher_id)

        while True:
            await wait_for_commands(self._wakeup, interval)
            if not self.streams:
                continue
            try:
                self.deliver(await self.rt.db_call_urgent(take))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error("polling pilot commands failed: %s", describe(exc))

    async def stop(self) -> None:
        """Stop listening for wake-ups (after :meth:`run` was cancelled)."""
        if self._wakeup is not None:
            await asyncio.to_thread(self._wakeup.stop)

    async def push(self, commands: Sequence[KillCommand]) -> None:
        """Deliver commands at once to pilots streaming here (others are picked up by their process)."""
        local = [c.command_id for c in commands if c.pilot_id in self.streams]
        if not local:
            return

        def take() -> list[Any]:
            with self.rt.db.write() as conn:
                return pstore.take_commands(conn, command_ids=local)

        started = time.perf_counter()
        rows = await self.rt.db_call_urgent(take)
        self.rt.db_times.record("kills: commands taken", time.perf_counter() - started)
        self.deliver(rows)

    def deliver(self, rows: Sequence[Any]) -> None:
        for row in rows:
            stream = self.streams.get(row["pilot_id"])
            if stream is None:
                log.warning("command for job %s lost: pilot %s left", row["panda_id"], row["pilot_id"])
                continue
            stream.send(
                pilot_pb2.DispatcherMessage(
                    command=command_message(row["panda_id"], row["type"], row["reason"], row["command_id"])
                )
            )
            self.rt.metrics.commands.labels(row["type"]).inc()

    async def take_for(self, pilot_id: str) -> list[pilot_pb2.Command]:
        """Pending commands of one pilot (unary UpdateJob), marked delivered."""

        def take() -> list[Any]:
            with self.rt.db.write() as conn:
                return pstore.take_commands(conn, pilot_id=pilot_id)

        rows = await self.rt.db_call_urgent(take)
        for r in rows:
            self.rt.metrics.commands.labels(r["type"]).inc()
        return [command_message(r["panda_id"], r["type"], r["reason"], r["command_id"]) for r in rows]
