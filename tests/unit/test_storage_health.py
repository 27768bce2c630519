"""The /health storage probe: one cache probe per second however many callers, failures and
hangs read as down, the database state read as kept."""

from __future__ import annotations

import asyncio

from xrouter_router.storage.health import StorageHealth, StorageState, always_up


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_concurrent_callers_share_one_probe_and_its_answer_lasts_the_ttl() -> None:
    clock, calls, gate = _Clock(), [], asyncio.Event()

    async def cache_up() -> bool:
        calls.append(clock.now)
        await gate.wait()
        return True

    health = StorageHealth("cluster", lambda: True, cache_up, ttl=1.0, clock=clock)
    waiting = [asyncio.ensure_future(health.check()) for _ in range(5)]
    await asyncio.sleep(0)
    gate.set()
    assert set(await asyncio.gather(*waiting)) == {StorageState("cluster", "up", "up")}
    clock.now = 100.75
    await health.check()
    assert calls == [100.0]
    clock.now = 101.25  # past the ttl: probed again
    await health.check()
    assert calls == [100.0, 101.25]


async def test_a_failing_probe_is_down_and_the_database_state_is_read_each_time() -> None:
    clock, database = _Clock(), [True]

    async def cache_up() -> bool:
        raise ConnectionError("refused")

    health = StorageHealth("cluster", lambda: database[0], cache_up, clock=clock)
    assert await health.check() == StorageState("cluster", "up", "down")
    database[0] = False
    assert await health.check() == StorageState("cluster", "down", "down")


async def test_a_caller_that_goes_away_does_not_cancel_the_shared_probe() -> None:
    gate = asyncio.Event()

    async def cache_up() -> bool:
        await gate.wait()
        return True

    health = StorageHealth("cluster", lambda: True, cache_up, clock=_Clock())
    first = asyncio.ensure_future(health.check())
    await asyncio.sleep(0)
    second = asyncio.ensure_future(health.check())
    await asyncio.sleep(0)
    first.cancel()
    gate.set()
    assert (await second).cache == "up"


async def test_the_embedded_mode_is_always_up() -> None:
    assert await always_up().check() == StorageState("embedded", "up", "up")
