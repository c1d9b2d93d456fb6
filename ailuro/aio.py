"""Waiting for an :class:`asyncio.Event` with a timeout without ever losing a cancellation.

``asyncio.wait_for(event.wait(), timeout)`` on Python 3.11 swallows a cancellation that arrives in
the same loop iteration as the event is set: it sees the inner wait done and returns its result,
so the cancelled task carries on. A background loop built on it (``while True: wait; work``) then
never ends, and whoever cancelled it and awaits it waits forever: a dispatcher's shutdown hung so
(``dispatcher did not stop within 30 s``, the command poll loop outliving its cancellation when the
LISTEN thread woke it at that moment). :func:`wait_event` uses :func:`asyncio.timeout`, which
tells its own expiry from a cancellation from outside and always lets the latter through.
"""

from __future__ import annotations

import asyncio


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    """Wait until ``event`` is set or ``timeout`` seconds passed; returns whether it is set.

    A cancellation of the calling task always propagates (``CancelledError``), even when the event
    was set at the same moment.
    """
    try:
        async with asyncio.timeout(max(0.0, timeout)):
            await event.wait()
    except TimeoutError:
        pass
    return event.is_set()
