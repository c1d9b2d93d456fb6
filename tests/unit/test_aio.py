"""A cancellation that comes as the awaited event is set must end the waiting task (ailuro/aio.py).

With ``asyncio.wait_for(event.wait(), timeout)`` (Python 3.11) such a cancellation was swallowed:
the wait returned, the dispatcher's command poll loop went on, and its shutdown waited for it
forever ("dispatcher did not stop within 30 s"). Each case sets the event and cancels the waiter in
the same loop iteration, the moment that lost the cancellation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from ailuro.aio import wait_event
from dispatcher.services.parking import Parked, Parking
from dispatcher.services.wakeup import CommandWakeup


async def _set_and_cancel(start: Callable[[], Awaitable[object]], event: Callable[[], asyncio.Event]) -> None:
    """Start ``start()``, let it block, then set ``event()`` and cancel it in one iteration."""
    task = asyncio.ensure_future(start())
    for _ in range(5):  # let the task reach its wait
        await asyncio.sleep(0)
    assert not task.done()
    event().set()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_wait_event_lets_a_simultaneous_cancellation_through() -> None:
    async def main() -> None:
        ev = asyncio.Event()
        await _set_and_cancel(lambda: wait_event(ev, 30), lambda: ev)

    asyncio.run(main())


def test_wait_event_reports_set_and_timeout() -> None:
    async def main() -> tuple[bool, bool, bool]:
        ev = asyncio.Event()
        timed_out = await wait_event(ev, 0.01)
        zero = await wait_event(ev, 0)
        ev.set()
        return timed_out, zero, await wait_event(ev, 0)

    assert asyncio.run(main()) == (False, False, True)


def test_command_wakeup_wait_is_cancelled_even_when_notified_at_that_moment() -> None:
    """The dispatcher's command poll loop: cancelled by ``PilotHub.stop`` as the LISTEN thread wakes it."""

    async def main() -> None:
        wakeup = CommandWakeup("", asyncio.get_running_loop())  # its listener thread is not started
        await _set_and_cancel(lambda: wakeup.wait(30), lambda: wakeup._event)

    asyncio.run(main())


def test_parked_request_is_cancelled_even_when_woken_at_that_moment() -> None:
    async def main() -> None:
        parking = Parking(max_parked=10, park_s=30)
        loop = asyncio.get_running_loop()
        event = parking._event  # the event this request parks on (wake() replaces it)
        await _set_and_cancel(lambda: parking.wait(object(), parking.generation, loop.time() + 30), lambda: event)
        assert parking.parked == 0
        # and an ordinary wake still answers WOKEN
        waiter = asyncio.ensure_future(parking.wait(object(), parking.generation, loop.time() + 30))
        await asyncio.sleep(0)
        parking.wake()
        assert await waiter is Parked.WOKEN

    asyncio.run(main())
