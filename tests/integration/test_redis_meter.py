"""RedisMeter on a real Redis Cluster: a request's limits and credits in one script call, its
settlement, tokens and concurrency slot in another, with the same answers as RedisLimiter and
RedisCreditGuard called one after the other."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.infra.fixtures import redis_cluster  # noqa: F401 - the session fixture
from tests.infra.postgres_ha import free_ports
from tests.infra.redis_cluster import RedisCluster
from tests.integration.limits_support import (
    MINUTE_END,
    NOW,
    Closer,
    D,
    _account,
    _accounts,
    _gather,
    api_key,
    closer_fixture,  # noqa: F401 - the `closer` fixture
)
from xrouter_router.domain.errors import InsufficientCredits, RateLimited, Unavailable
from xrouter_router.domain.ports import Reservation
from xrouter_router.domain.types import RateWindow
from xrouter_router.storage.redis.clients import cluster_client
from xrouter_router.storage.redis.credits import RedisCreditGuard
from xrouter_router.storage.redis.limits import RedisLimiter
from xrouter_router.storage.redis.meter import RedisMeter
from xrouter_router.storage.sql.sqlite import SqliteAccountStore


async def _meter(cluster: RedisCluster, closer: Closer, accounts: SqliteAccountStore) -> RedisMeter:
    """As the router builds it: the credit guard's scripts through the lane."""
    limiter = RedisLimiter(await closer.started(cluster))
    client = await closer.started(cluster)
    guard = RedisCreditGuard(client, accounts, lane=closer.lane(client))
    closer.checked += [limiter, guard]
    return RedisMeter(limiter, guard)


async def test_limits_come_first_and_a_refusal_for_credits_still_counts(
        redis_cluster: RedisCluster, tmp_path: Path, closer: Closer) -> None:  # noqa: F811
    accounts = await _accounts(tmp_path, closer)
    meter = await _meter(redis_cluster, closer, accounts)
    key = api_key(await _account(accounts, "0.05"), requests_per_minute=3, concurrent=2)
    window, held, _ = await meter.admit(key, "g1", D("0.02"), partial_from=None, now=NOW)
    assert (window, held) == (RateWindow(3, 2, MINUTE_END),
                              Reservation("g1", key.account_id, key.id, D("0.02")))
    with pytest.raises(InsufficientCredits) as refused:
        await meter.admit(key, "g2", D("0.10"), partial_from=None, now=NOW)
    assert refused.value.metadata == {"limit_source": "account", "required": "0.10",
                                      "available": "0.03000000"}
    # g2 counted (as InProcessLimiter counts it) but its concurrency slot went back: the third
    # request gets the second slot and the last request of the minute.
    window, _, _ = await meter.admit(key, "g3", D("0.01"), partial_from=None, now=NOW)
    assert window == RateWindow(3, 0, MINUTE_END)
    with pytest.raises(RateLimited) as limited:  # no credits left either: limits answer first
        await meter.admit(key, "g4", D("5"), partial_from=None, now=NOW)
    assert limited.value.message == "Rate limit exceeded: 3 requests per minute"


async def test_conclude_gives_the_slot_back_and_counts_the_tokens(
        redis_cluster: RedisCluster, tmp_path: Path, closer: Closer) -> None:  # noqa: F811
    accounts = await _accounts(tmp_path, closer)
    meter = await _meter(redis_cluster, closer, accounts)
    key = api_key(await _account(accounts, "1.00"), concurrent=1, tokens_per_minute=100)
    _, held, _ = await meter.admit(key, "g1", D("0.50"), partial_from=None, now=NOW)
    with pytest.raises(RateLimited) as busy:
        await meter.admit(key, "g2", D("0.10"), partial_from=None, now=NOW)
    assert busy.value.message == "Rate limit exceeded: 1 concurrent requests"
    await meter.conclude(key, held, D("0.20"), 120, NOW)
    with pytest.raises(RateLimited) as tokens:  # the slot is free; the tokens ran out
        await meter.admit(key, "g3", D("0.10"), partial_from=None, now=NOW)
    assert tokens.value.message == "Rate limit exceeded: 100 tokens per minute"
    # The settlement counted 0.20 and released the rest of g1's 0.50.
    with pytest.raises(InsufficientCredits) as refused:
        await meter.admit(api_key(key.account_id), "g4", D("0.81"), partial_from=None, now=NOW)
    assert refused.value.metadata["available"] == "0.80000000"


async def test_two_replicas_admit_exactly_the_limit(
        redis_cluster: RedisCluster, tmp_path: Path, closer: Closer) -> None:  # noqa: F811
    accounts = await _accounts(tmp_path, closer)
    meters = [await _meter(redis_cluster, closer, accounts) for _ in range(2)]
    key = api_key(await _account(accounts, "100"), requests_per_minute=20, concurrent=200)
    results = await _gather([meters[i % 2].admit(key, f"g{i}", D("0.01"), partial_from=None,
                                                 now=NOW) for i in range(100)])
    admitted = [r for r in results if isinstance(r, tuple)]
    assert len(admitted) == 20
    assert sorted(w.remaining for w, _, _ in admitted if w is not None) == list(range(20))
    assert all(isinstance(r, RateLimited) for r in results if not isinstance(r, tuple))


async def test_redis_down_the_credit_policy_answers_then_the_limits(
        tmp_path: Path, closer: Closer) -> None:
    accounts = await _accounts(tmp_path, closer)
    key = api_key(await _account(accounts, "1.00"), requests_per_minute=5, concurrent=1)

    def meter(*, credits_open: bool, limits_open: bool) -> RedisMeter:
        nowhere: dict[str, Any] = {"socket_timeout": 0.2, "socket_connect_timeout": 0.2}
        closed_port = f"redis://127.0.0.1:{free_ports(1)[0]}"
        clients = [cluster_client(closed_port, **nowhere) for _ in range(2)]
        closer.clients += clients
        limiter = RedisLimiter(clients[0], fail_open=limits_open, timeout=0.3)
        guard = RedisCreditGuard(clients[1], accounts, fail_open=credits_open, timeout=0.3,
                                 lane=closer.lane(clients[1]))
        return RedisMeter(limiter, guard)

    with pytest.raises(Unavailable, match="Credit checks are unavailable"):
        await meter(credits_open=False, limits_open=True).admit(
            key, "g1", D("0.10"), partial_from=None, now=NOW)
    with pytest.raises(Unavailable, match="Rate limiting is unavailable"):
        await meter(credits_open=True, limits_open=False).admit(
            key, "g2", D("0.10"), partial_from=None, now=NOW)
    lenient = meter(credits_open=True, limits_open=True)
    window, held, _ = await lenient.admit(key, "g3", D("0.10"), partial_from=None, now=NOW)
    assert (window, held) == (None, Reservation("g3", key.account_id, key.id, D("0.10")))
    await lenient.conclude(key, held, D("0.05"), 10, NOW)  # never raises; the slot lapses


async def test_a_free_model_is_admitted_extended_and_concluded(
        redis_cluster: RedisCluster, tmp_path: Path, closer: Closer) -> None:  # noqa: F811
    """A deployment priced at 0 RUB (the demo model, a free tier) reserves and settles
    nothing, but is admitted and gives its slot back like any other (Billing never tops up a
    reservation that costs nothing)."""
    accounts = await _accounts(tmp_path, closer)
    meter = await _meter(redis_cluster, closer, accounts)
    key = api_key(await _account(accounts, "1.00"), concurrent=1)
    for partial in (None, D("0")):
        _, held, _ = await meter.admit(key, "g-free", D("0"), partial_from=partial, now=NOW)
        assert held == Reservation("g-free", key.account_id, key.id, D("0"))
        await meter.conclude(key, held, D("0"), 12, NOW)
