"""What the Redis Cluster limits and credits do when Redis does not answer: a hung, then stopped
cluster gets the degraded-mode policies within their bounds, and their answers are errors of the
one tree."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.infra.fixtures import killed, redis_cluster  # noqa: F401 - fixtures
from tests.infra.redis_cluster import RedisCluster
from tests.integration.limits_support import (
    MINUTE_END,
    NOW,
    WAIT,
    Closer,
    D,
    _account,
    _accounts,
    api_key,
    bounded,
    closer_fixture,  # noqa: F401 - the `closer` fixture
    recovered,
)
from tests.integration.test_redis_cluster_limits import Heard
from xrouter_router.domain.errors import (
    Unavailable,
    XRouterError,
)
from xrouter_router.domain.ledger import Account
from xrouter_router.domain.types import RateWindow
from xrouter_router.storage.redis.credits import RedisCreditGuard
from xrouter_router.storage.redis.limits import RedisLimiter
from xrouter_router.storage.redis.revocations import KeyRevocations
from xrouter_router.storage.sql.sqlite import SqliteAccountStore

# -- only the Redis implementations: across replicas -----------------------------------------


async def test_a_hung_then_stopped_cluster(tmp_path: Path, closer: Closer,
                                           caplog: pytest.LogCaptureFixture) -> None:
    cluster = await asyncio.to_thread(RedisCluster().start)
    try:
        await _degraded_modes(cluster, tmp_path, closer)
    finally:
        cluster.stop()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    # At most one warning a minute per component (two limiters, two guards), however many errors.
    assert sum(w.startswith("rate limits: Redis unavailable") for w in warnings) == 2
    assert sum(w.startswith("credits: Redis unavailable") for w in warnings) == 2
    assert sum(w.startswith("key revocations: Redis unavailable") for w in warnings) == 2


async def _warm(accounts: SqliteAccountStore, limiters: Sequence[RedisLimiter],
                guards: Sequence[RedisCreditGuard]) -> None:
    """Warm each client (topology, connections, scripts) on a throwaway account: a cold first
    call on a loaded machine can outlast the 0.3 s timeout that the outages rely on."""
    warm = api_key(await _account(accounts, "1.00"), requests_per_minute=100, concurrent=10)
    for limiter in limiters:
        await recovered(lambda: limiter.acquire(warm, NOW))  # noqa: B023 - awaited at once
    for i, guard in enumerate(guards):
        await recovered(lambda: guard.reserve(warm, f"warm-{i}", D("0.01")))  # noqa: B023


async def _degraded_modes(cluster: RedisCluster, tmp_path: Path, closer: Closer) -> None:
    fast = {"socket_timeout": 0.2, "socket_connect_timeout": 0.2}
    accounts = await _accounts(tmp_path, closer)
    account_id = await _account(accounts, "1.00")
    limiter = RedisLimiter(closer.client(cluster, **fast), timeout=0.3, retry_after=0.2)
    strict = RedisLimiter(closer.client(cluster, **fast), fail_open=False, timeout=0.3,
                          retry_after=0.2)
    guard = RedisCreditGuard(closer.client(cluster, **fast), accounts, timeout=0.3,
                             retry_after=0.2)
    lenient = RedisCreditGuard(closer.client(cluster, **fast), accounts, fail_open=True,
                               timeout=0.3, retry_after=0.2)
    revocations = KeyRevocations(closer.client(cluster, **fast), timeout=0.3)
    listener = KeyRevocations(closer.client(cluster, **fast), ping_every=0.3, timeout=0.3)
    closer.closing.append(listener)
    heard = Heard()
    listener.listen(heard)
    assert await listener.subscribed(WAIT)
    await _warm(accounts, (limiter, strict), (guard, lenient))
    key = api_key(account_id, requests_per_minute=100, concurrent=10)
    assert await limiter.acquire(key, NOW) == RateWindow(100, 99, MINUTE_END)
    assert await strict.acquire(key, NOW) == RateWindow(100, 98, MINUTE_END)
    held = await guard.reserve(key, "before", D("0.50"))
    assert (await lenient.reserve(key, "lenient", D("0.10"))).amount == D("0.10")

    for outage in (cluster.freeze, cluster.stop):
        outage()
        errors = (limiter.errors, strict.errors, guard.errors, lenient.errors)
        for _ in range(3):  # the first call waits for Redis, the next ones do not
            assert await bounded(limiter.acquire(key, NOW)) is None
            with pytest.raises(Unavailable) as unavailable:
                await bounded(strict.acquire(key, NOW))
            assert unavailable.value.retry_after == 1.0
            await bounded(limiter.release(key))
            await bounded(limiter.add_tokens(key, 10, NOW))
            with pytest.raises(Unavailable) as unavailable:
                await bounded(guard.reserve(key, "during", D("0.01")))
            assert unavailable.value.message == "Credit checks are unavailable; retry shortly"
            assert await bounded(guard.extend(key, held, D("0.01"))) is None
            assert (await bounded(lenient.reserve(key, "open", D("5")))).amount == D("5")
            assert await bounded(revocations.publish("key-1")) is False
        assert (limiter.errors, strict.errors, guard.errors, lenient.errors) > errors
        assert limiter.degraded > 0 and strict.degraded > 0 and guard.degraded > 0
        if outage == cluster.stop:
            break
        cluster.thaw()
        await asyncio.sleep(0.25)  # past retry_after: Redis is asked again
        # Calls that timed out reached Redis when it woke up: counted late, never lost.
        woken = await recovered(lambda: limiter.acquire(key, NOW))
        assert woken.remaining <= 97
        # The listener noticed the silence (no answer to its ping) and subscribed again.
        assert listener.reconnects >= 1 and await listener.subscribed(WAIT)
        assert await revocations.publish("key-2")
        await heard.wait_for("key-2", 10.0)
        assert heard.keys == ["key-2"]
        # A new key each try: a try that timed out may still have counted on its own key.
        assert await recovered(lambda: strict.acquire(api_key(account_id, requests_per_minute=100),
                                                        NOW)) == RateWindow(100, 99, MINUTE_END)
        assert (await recovered(lambda: guard.reserve(key, "after", D("0.10")))).amount == D("0.10")

    # Settling neither raises nor hangs while Redis is down (the reservation lapses); the charge
    # travels with the generation's record, not through the guard.
    await bounded(guard.settle(held, D("0.25")), limit=5.0)
    assert await accounts.get(account_id) == Account(account_id, "", D("1.00"))


def test_degraded_answers_are_errors_of_the_tree() -> None:
    assert issubclass(Unavailable, XRouterError) and Unavailable.kind.value == "unavailable"
