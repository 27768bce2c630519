"""The Limiter contract, against the in-process implementation and against the Redis Cluster
one (what only Redis does is in test_redis_cluster_limits.py)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.infra.fixtures import redis_cluster, redis_tls_cluster  # noqa: F401 - session fixtures
from tests.infra.redis_cluster import RedisCluster
from tests.integration.limits_support import (
    DAY_END,
    MINUTE_END,
    NEXT_MINUTE,
    NOW,
    Closer,
    api_key,
    closer_fixture,  # noqa: F401 - the `closer` fixture
)
from xrouter_router.domain.errors import RateLimited
from xrouter_router.domain.ports import Limiter
from xrouter_router.domain.types import RateWindow
from xrouter_router.storage.memory import InProcessLimiter
from xrouter_router.storage.redis.limits import RedisLimiter

# -- the Limiter contract --------------------------------------------------------------------


@pytest.fixture(params=["memory", "redis", "redis-tls"])
async def limiter(request: pytest.FixtureRequest, closer: Closer) -> Limiter:
    if request.param == "memory":
        return InProcessLimiter()
    cluster: RedisCluster = request.getfixturevalue(
        "redis_tls_cluster" if request.param == "redis-tls" else "redis_cluster")
    # A client that knows the slots, as the router starts it; exactness, not timeouts.
    made = RedisLimiter(await closer.started(cluster), timeout=10.0)
    closer.checked.append(made)
    return made


def _limited(exc: pytest.ExceptionInfo[RateLimited]) -> tuple[str, float, dict[str, Any]]:
    return exc.value.message, exc.value.retry_after, exc.value.metadata


async def test_a_key_without_limits_has_no_window(limiter: Limiter) -> None:
    key = api_key()
    assert [await limiter.acquire(key, NOW) for _ in range(50)] == [None] * 50
    await limiter.add_tokens(key, 10**6, NOW)
    assert await limiter.acquire(key, NOW) is None


async def test_requests_per_minute(limiter: Limiter) -> None:
    key = api_key(requests_per_minute=3)
    assert [await limiter.acquire(key, NOW + i) for i in range(3)] == [
        RateWindow(3, 2, MINUTE_END), RateWindow(3, 1, MINUTE_END), RateWindow(3, 0, MINUTE_END)]
    with pytest.raises(RateLimited) as exc:
        await limiter.acquire(key, NOW + 5)
    assert _limited(exc) == ("Rate limit exceeded: 3 requests per minute", 40.0,
                             {"limit": 3, "remaining": 0, "reset": 1_700_000_040})
    with pytest.raises(RateLimited) as exc:
        await limiter.acquire(key, MINUTE_END - 0.5)
    assert exc.value.retry_after == 1.0  # never less than a second
    # A refused request is not counted; the next minute starts afresh.
    assert await limiter.acquire(key, MINUTE_END) == RateWindow(3, 2, MINUTE_END + 60)
    assert await limiter.acquire(key, MINUTE_END + 59.9) == RateWindow(3, 1, MINUTE_END + 60)


async def test_the_tightest_window_is_reported_and_the_day_limit_holds(limiter: Limiter) -> None:
    key = api_key(requests_per_minute=10, requests_per_day=3)
    assert await limiter.acquire(key, NOW) == RateWindow(3, 2, DAY_END)
    assert await limiter.acquire(key, NOW) == RateWindow(3, 1, DAY_END)
    assert await limiter.acquire(key, NEXT_MINUTE) == RateWindow(3, 0, DAY_END)
    with pytest.raises(RateLimited) as exc:
        await limiter.acquire(key, NEXT_MINUTE + 60)
    assert _limited(exc) == ("Rate limit exceeded: 3 requests per day", 6285.0,
                             {"limit": 3, "remaining": 0, "reset": 1_700_006_400})
    assert await limiter.acquire(key, DAY_END + 1) == RateWindow(3, 2, DAY_END + 86_400)
    # Equally tight: the minute's window is reported.
    even = api_key(requests_per_minute=5, requests_per_day=5)
    assert await limiter.acquire(even, NOW) == RateWindow(5, 4, MINUTE_END)


async def test_concurrency_slots_are_released_never_below_zero(limiter: Limiter) -> None:
    key = api_key(requests_per_minute=10, concurrent=2)
    assert await limiter.acquire(key, NOW) == RateWindow(10, 9, MINUTE_END)
    assert await limiter.acquire(key, NOW) == RateWindow(10, 8, MINUTE_END)
    with pytest.raises(RateLimited) as exc:
        await limiter.acquire(key, NOW)
    assert _limited(exc) == ("Rate limit exceeded: 2 concurrent requests", 1.0,
                             {"limit": 2, "remaining": 0, "reset": int(NOW + 1)})
    await limiter.release(key)
    # The refused request took no request from the minute.
    assert await limiter.acquire(key, NOW) == RateWindow(10, 7, MINUTE_END)
    for _ in range(5):  # more releases than slots held
        await limiter.release(key)
    assert await limiter.acquire(key, NOW) == RateWindow(10, 6, MINUTE_END)
    assert await limiter.acquire(key, NOW) == RateWindow(10, 5, MINUTE_END)
    with pytest.raises(RateLimited):
        await limiter.acquire(key, NOW)
    other = api_key(concurrent=1)  # slots are per key; no request limit: no window
    assert await limiter.acquire(other, NOW) is None


async def test_tokens_per_minute(limiter: Limiter) -> None:
    key = api_key(tokens_per_minute=100)
    assert await limiter.acquire(key, NOW) is None
    await limiter.add_tokens(key, 60, NOW)
    assert await limiter.acquire(key, NOW + 1) is None
    await limiter.add_tokens(key, 40, NOW + 2)
    with pytest.raises(RateLimited) as exc:
        await limiter.acquire(key, NOW + 3)
    assert _limited(exc) == ("Rate limit exceeded: 100 tokens per minute", 42.0,
                             {"limit": 100, "remaining": 0, "reset": 1_700_000_040})
    await limiter.add_tokens(key, 500, NEXT_MINUTE)  # counted in the minute they were used
    with pytest.raises(RateLimited):
        await limiter.acquire(key, NEXT_MINUTE)
    assert await limiter.acquire(key, NEXT_MINUTE + 60) is None
    untracked = api_key(requests_per_minute=1)
    await limiter.add_tokens(untracked, 10**6, NOW)  # no token limit: nothing to count
    assert await limiter.acquire(untracked, NOW) == RateWindow(1, 0, MINUTE_END)
