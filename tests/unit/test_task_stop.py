"""storage.tasks.stop ends tasks that swallow a cancellation (as redis-py reads can on 3.11)."""

from __future__ import annotations

import asyncio

from xrouter_router.storage import tasks


async def test_a_task_that_swallows_the_first_cancellation_is_stopped() -> None:
    swallowed = 0

    async def stubborn() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                swallowed += 1
                if swallowed == 1:
                    continue  # lost, as a TimeoutError caught by a retry loop would be
                raise

    task = asyncio.get_running_loop().create_task(stubborn())
    await asyncio.sleep(0)
    async with asyncio.timeout(2.0):
        await tasks.stop([task, None], every=0.05)
    assert task.cancelled() and swallowed == 2


async def test_nothing_to_stop() -> None:
    await tasks.stop([None])
    await tasks.stop([])
