"""xrouter_common.mux.gather: how long a Multiplex writer lets the loop run for more frames before
it writes, counted in iterations of the loop (each of its looks at the frames follows one)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import pytest

from xrouter_common.mux import GATHER_IDLE, GATHER_ITERATIONS, gather


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


async def test_with_no_idle_allowance_it_stops_after_the_first_iteration_that_brings_nothing(
        ) -> None:
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
    await gather(ready, busy=True, limit=4, idle=0)
    waited = iterations - before
    counter.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await counter
    assert looks == [1, 3, 3]
    assert waited == 2


def scripted(counts: list[int]) -> tuple[Callable[[], int], list[int]]:
    """A `ready` that gives `counts` in turn (then the last one again), and the counts given."""
    given: list[int] = []

    def ready() -> int:
        given.append(counts[min(len(given), len(counts) - 1)])
        return given[-1]
    return ready, given


async def test_it_stops_at_the_third_iteration_that_brought_nothing() -> None:
    assert GATHER_IDLE == 2
    ready, given = scripted([1])
    await gather(ready, busy=True)
    assert given == [1, 1, 1, 1]  # the count before, then three idle iterations


async def test_idle_iterations_between_frames_do_not_end_it_early() -> None:
    # Frames come in iterations 1 and 3: the idle one between does not stop the wait, and the
    # idle ones are counted over the whole wait (the 2nd, 4th and 5th iterations).
    ready, given = scripted([1, 2, 2, 3, 3, 3, 4])
    await gather(ready, busy=True)
    assert given == [1, 2, 2, 3, 3, 3]


async def test_frames_in_every_iteration_are_waited_for_at_most_the_limit() -> None:
    ready, given = scripted(list(range(1, 100)))
    await gather(ready, busy=True)
    assert len(given) == 1 + GATHER_ITERATIONS
