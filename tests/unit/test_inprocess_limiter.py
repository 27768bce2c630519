"""The in-process limiter's memory: windows that ended are pruned and idle concurrency counts
dropped, so what it holds is bounded by the keys in use now (the Limiter contract itself is in
tests/integration/test_limits_contract.py)."""

from __future__ import annotations

import pytest

from xrouter_router.domain.errors import RateLimited
from xrouter_router.domain.keys import ApiKey, Limits
from xrouter_router.domain.limits import DAY, MINUTE
from xrouter_router.domain.types import RateWindow
from xrouter_router.storage.memory import InProcessLimiter

DAY_START = 1_699_920_000.0  # a UTC midnight


def _key(n: int, **limits: int) -> ApiKey:
    return ApiKey(id=f"key-{n}", account_id="acct", tier="pro", prefix="p",
                  limits=Limits(**limits) if limits else Limits(requests_per_minute=5,
                                                                requests_per_day=50,
                                                                tokens_per_minute=100))


async def test_windows_of_past_minutes_and_days_are_pruned() -> None:
    limiter = InProcessLimiter()
    for n in range(1_000):
        key = _key(n)
        await limiter.acquire(key, DAY_START + 1)
        await limiter.add_tokens(key, 10, DAY_START + 1)
        await limiter.release(key)
    assert limiter.windows == 3_000  # a minute, a day and a token window each; none running
    hot = _key(0)
    assert await limiter.acquire(hot, DAY_START + MINUTE + 1) == RateWindow(5, 4, DAY_START + 120)
    assert limiter.windows == 1_000 + 2  # the day windows stay until the day ends
    await limiter.release(hot)
    assert await limiter.acquire(hot, DAY_START + DAY + 1) == RateWindow(5, 4, DAY_START + DAY + 60)
    assert limiter.windows == 3  # its minute and day windows, and its running request


async def test_pruning_keeps_the_current_windows_counting() -> None:
    limiter = InProcessLimiter()
    key = _key(1, requests_per_minute=2)
    await limiter.acquire(key, DAY_START + 61)
    await limiter.acquire(_key(2, requests_per_minute=2), DAY_START + 130)  # prunes minute 1
    await limiter.acquire(key, DAY_START + 131)
    await limiter.acquire(key, DAY_START + 132)
    with pytest.raises(RateLimited, match=r"^Rate limit exceeded: 2 requests per minute$"):
        await limiter.acquire(key, DAY_START + 133)


async def test_refused_and_released_requests_leave_nothing_behind() -> None:
    limiter = InProcessLimiter()
    key = _key(1, concurrent=1)
    await limiter.acquire(key, DAY_START)
    with pytest.raises(RateLimited):
        await limiter.acquire(key, DAY_START)
    await limiter.release(key)
    await limiter.release(key)  # a second release is harmless
    assert limiter.windows == 0
    unlimited = _key(2, requests_per_day=10)
    await limiter.release(unlimited)  # never acquired
    assert limiter.windows == 0
