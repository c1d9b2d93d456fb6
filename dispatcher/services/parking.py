"""Parked job requests: a pilot's request that found no work waits here for a job to be activated.

Without it an idle pilot is answered ``NoJob`` at once and asks again ``retry_after_s`` later
(``--no-job-retry``), so a job submitted to idle pilots waited up to that long. Now a streamed
request that claimed nothing is held (parked) and claimed again as soon as a job is activated:

- in this process, :meth:`Parking.wake` is called after every transaction that made a job
  ``activated`` commits (submission, a requeue by the watchdog, the DDM, a retry:
  :attr:`dispatcher.store.engine.Database.on_activated`);
- in other dispatcher processes on PostgreSQL, the same transaction sends ``NOTIFY`` on
  :data:`dispatcher.store.engine.JOBS_CHANNEL`, which :class:`dispatcher.services.wakeup.CommandWakeup`
  turns into a :meth:`Parking.wake` there.

Bounded: a request stays parked at most ``park_s`` (then it is answered ``NoJob`` as before), at
most ``max_parked`` requests are parked per process (the next ones are answered at once), and
one per stream. A wake wakes every parked request (the claim is one group commit for all of
them); those that still find nothing park again until their own deadline. The protocol does not
change: a pilot sees a ``NoJob`` that comes later, or assignments that come sooner.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Callable

from ailuro.aio import wait_event
from ailuro.v1 import pilot_pb2

MAX_PARK_S = 10.0
"""Longest a request is parked, whatever ``--no-job-retry`` says: well inside a pilot's own
request timeout (30 s in ``pilot.main``), so no pilot gives up on a parked request."""
SOON_S = 0.1
"""``NoJob.retry_after_s`` when the next request would park anyway (the least a pilot waits)."""


class Parked(enum.Enum):
    """How a wait in :meth:`Parking.wait` ended."""

    WOKEN = "woken"
    """A job was activated: claim again."""
    TIMED_OUT = "timed out"
    """Parked until the deadline: answer NoJob; the pilot may ask again soon (it parks again)."""
    REFUSED = "refused"
    """Not parked (limit reached, already parked, stopping): answer NoJob with the normal retry."""


class Parking:
    """The parked requests of one dispatcher process and the signal that wakes them."""

    def __init__(self, *, max_parked: int, park_s: float) -> None:
        self.max_parked = max_parked
        self.park_s = park_s
        self.parked = 0
        """Requests parked now."""
        self.generation = 0
        """Counts wakes: a request that read it before its claim and sees it changed after claims again."""
        self._event = asyncio.Event()
        self._parked_streams: set[object] = set()
        self._closed = False

    def wake(self) -> None:
        """A job was activated (or the process stops): every parked request claims again."""
        self.generation += 1
        self._event.set()
        self._event = asyncio.Event()

    def close(self) -> None:
        """Answer every parked request now and park no more (the dispatcher stops)."""
        self._closed = True
        self.wake()

    async def wait(self, owner: object, since: int, deadline: float) -> Parked:
        """Park until a wake after generation ``since``, or until ``deadline`` (loop time).

        Returns at once (``WOKEN``) when a wake came since ``since`` (a job was activated while the
        caller's claim ran, so it must look again). ``owner`` (the stream) parks at most once at a time.
        """
        if self._closed:
            return Parked.REFUSED
        if self.generation != since:
            return Parked.WOKEN
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            return Parked.TIMED_OUT
        if self.parked >= self.max_parked or owner in self._parked_streams:
            return Parked.REFUSED
        event = self._event
        self.parked += 1
        self._parked_streams.add(owner)
        try:
            await wait_event(event, left)  # never asyncio.wait_for: see ailuro/aio.py
        finally:
            self.parked -= 1
            self._parked_streams.discard(owner)
        if self._closed:
            return Parked.REFUSED
        return Parked.WOKEN if event.is_set() else Parked.TIMED_OUT


async def claim_or_park(
    parking: Parking | None,
    owner: object,
    claim: Callable[[], Awaitable[list[pilot_pb2.JobAssignment]]],
) -> tuple[list[pilot_pb2.JobAssignment], bool]:
    """``claim()``; while it gives nothing, park (see :class:`Parking`) and claim again when woken.

    Returns what the first non-empty claim gave (or ``[]`` once the request may not park any more,
    at most ``park_s`` after it arrived), and whether the pilot may ask again soon: its next
    request would park rather than find work (``False`` when parking is off or was refused).
    """
    if parking is None or parking.park_s <= 0 or parking.max_parked <= 0:
        return await claim(), False
    deadline = asyncio.get_running_loop().time() + min(parking.park_s, MAX_PARK_S)
    while True:
        since = parking.generation
        got = await claim()
        if got:
            return got, True
        how = await parking.wait(owner, since, deadline)
        if how is not Parked.WOKEN:
            return got, how is Parked.TIMED_OUT
