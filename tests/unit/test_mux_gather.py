"""xrouter_common.mux.gather: how long a Multiplex writer lets the loop run before it writes."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from xrouter_common.mux import gather


async def test_a_lone_calls_frame_waits_for_no_iteration() -> None:
    ran: list[int] = []
    asyncio.get_running_loop().call_soon(ran.append, 1)
    await gather(lambda: pytest.fail("looked at the frames"), busy=False)
    assert ran == []  # returned before the loop ran anything else


async def test_it_waits_while_each_iteration_brings_frames_up_to_the_limit() -> None:
    looks: list[int] = []

    def ready() -> int:  # one more frame at every look: each iteration brought one
        looks.append(len(looks) + 1)
        return looks[-1]
    await gather(ready, busy=True, limit=3)
    assert looks == [1, 2, 3, 4]  # a look before, then one after each of three iterations


async def test_it_stops_after_the_first_iteration_that_brings_nothing() -> None:
    sizes, looks = iter([1, 3, 3, 9]), []

    def ready() -> int:
        looks.append(next(sizes))
        return looks[-1]
    iterations = 0

    async def count() -> None:
        nonlocal iterations
        while True:
            iterations += 1
            await asyncio.sleep(0)
    counter = asyncio.create_task(count())
    await asyncio.sleep(0)  # the counter starts
    before = iterations
    await gather(ready, busy=True, limit=4)
    waited = iterations - before
    counter.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await counter
    assert looks == [1, 3, 3]
    assert waited == 2
