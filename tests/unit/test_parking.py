"""Parking's decisions without a dispatcher: the wake race, the bounds, stopping (services/parking.py)."""

from __future__ import annotations

import asyncio

from dispatcher.services.parking import Parked, Parking, claim_or_park

FAR = 3600.0


def test_a_wake_during_the_claim_makes_it_claim_again_instead_of_parking() -> None:
    async def main() -> tuple[list[str], int]:
        parking = Parking(max_parked=10, park_s=FAR)
        calls = 0

        async def claim() -> list[str]:
            nonlocal calls
            calls += 1
            if calls == 1:
                parking.wake()  # a job activated while this claim ran: it saw none
                return []
            return ["job"]

        got, soon = await claim_or_park(parking, "stream", claim)  # type: ignore[arg-type]
        assert soon
        return got, calls  # type: ignore[return-value]

    got, calls = asyncio.run(main())
    assert got == ["job"] and calls == 2


def test_bounds_one_per_owner_and_at_most_max_parked() -> None:
    async def main() -> list[Parked]:
        parking = Parking(max_parked=2, park_s=FAR)
        deadline = asyncio.get_running_loop().time() + FAR
        first = asyncio.create_task(parking.wait("a", parking.generation, deadline))
        await asyncio.sleep(0)
        same_owner = await parking.wait("a", parking.generation, deadline)
        second = asyncio.create_task(parking.wait("b", parking.generation, deadline))
        await asyncio.sleep(0)
        over_limit = await parking.wait("c", parking.generation, deadline)
        assert parking.parked == 2
        parking.wake()
        return [same_owner, over_limit, await first, await second]

    assert asyncio.run(main()) == [Parked.REFUSED, Parked.REFUSED, Parked.WOKEN, Parked.WOKEN]


def test_the_deadline_ends_a_park_and_close_answers_every_one() -> None:
    async def main() -> list[Parked]:
        parking = Parking(max_parked=10, park_s=FAR)
        loop = asyncio.get_running_loop()
        timed_out = await parking.wait("a", parking.generation, loop.time() + 0.01)
        held = asyncio.create_task(parking.wait("b", parking.generation, loop.time() + FAR))
        await asyncio.sleep(0)
        parking.close()
        after_close = await parking.wait("c", parking.generation, loop.time() + FAR)
        return [timed_out, await held, after_close, Parked.WOKEN if parking.parked else Parked.REFUSED]

    assert asyncio.run(main()) == [Parked.TIMED_OUT, Parked.REFUSED, Parked.REFUSED, Parked.REFUSED]


def test_parking_off_claims_once() -> None:
    async def main() -> tuple[list[str], bool, int]:
        calls = 0

        async def claim() -> list[str]:
            nonlocal calls
            calls += 1
            return []

        got, soon = await claim_or_park(Parking(max_parked=0, park_s=FAR), "s", claim)  # type: ignore[arg-type]
        return got, soon, calls  # type: ignore[return-value]

    assert asyncio.run(main()) == ([], False, 1)
