"""What the Limiter, CreditGuard and Redis Cluster limit tests share: the fixed clock, the keys
and accounts they build, and the `closer` fixture (import closer_fixture into each test module)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import pytest
from redis.asyncio.cluster import RedisCluster as ClusterClient

from tests.infra.redis_cluster import RedisCluster
from xrouter_router.domain.errors import Unavailable
from xrouter_router.domain.keys import ApiKey, Limits
from xrouter_router.domain.ledger import Account, GenerationRecord
from xrouter_router.domain.ports import Reservation
from xrouter_router.storage.redis.clients import cluster_client, tls_options
from xrouter_router.storage.redis.credits import RedisCreditGuard
from xrouter_router.storage.redis.lane import Lane
from xrouter_router.storage.redis.limits import RedisLimiter
from xrouter_router.storage.redis.revocations import KeyRevocations
from xrouter_router.storage.sql.sqlite import SqliteAccountStore
from xrouter_router.storage.sql.sqlite_db import SqliteDatabase

T = TypeVar("T")

# 15 s into a minute: that minute ends at 1_700_000_040, the UTC day at 1_700_006_400.
NOW = 1_699_999_995.0
MINUTE_END, DAY_END = 1_700_000_040.0, 1_700_006_400.0
NEXT_MINUTE = NOW + 60.0
D = Decimal
WAIT = 10.0


def _id(kind: str) -> str:
    return f"{kind}-{uuid.uuid4().hex[:12]}"


def api_key(account_id: str = "acct", *, credit_limit: Decimal | None = None,
            **limits: int) -> ApiKey:
    return ApiKey(id=_id("key"), account_id=account_id, tier="free", prefix="xr-test",
                  limits=Limits(**limits), credit_limit=credit_limit)


def record_of(held: Reservation, cost: Decimal) -> GenerationRecord:
    """The ledger record of a settled reservation (what RedisCreditGuard.applied reads)."""
    return GenerationRecord(
        id=held.generation_id, created_at=NOW, key_id=held.key_id, account_id=held.account_id,
        model="m", provider="p", streamed=False, prompt_tokens=1, completion_tokens=1,
        cached_tokens=0, reasoning_tokens=0, counts_native=True, cost=cost, latency_ms=1,
        generation_ms=1, finish_reason="stop", status="success")


async def post(guard: RedisCreditGuard, accounts: SqliteAccountStore, held: Reservation,
               cost: Decimal) -> None:
    """What the ledger consumer does once a generation's record is written: the store takes
    the charge (with the record, in the cluster mode), then the guard is told."""
    if cost > 0:
        await accounts.charge(held.account_id, held.key_id, held.generation_id, cost)
        await guard.applied([record_of(held, cost)])


async def settle_and_post(guard: RedisCreditGuard, accounts: SqliteAccountStore,
                          held: Reservation, cost: Decimal) -> None:
    await guard.settle(held, cost)
    await post(guard, accounts, held, cost)


def client(cluster: RedisCluster, **options: Any) -> ClusterClient:
    return cluster_client(cluster.url, **tls_options(cluster.client_tls), **options)


@dataclass
class Closer:
    """Clients to close when the test ends; the Redis objects must have seen no Redis error
    (a CROSSSLOT or a script error would hide behind a fail-open policy)."""

    clients: list[ClusterClient] = field(default_factory=list)
    checked: list[RedisLimiter | RedisCreditGuard | KeyRevocations] = field(default_factory=list)
    closing: list[KeyRevocations | SqliteDatabase | Lane] = field(default_factory=list)

    def client(self, cluster: RedisCluster, **options: Any) -> ClusterClient:
        made = client(cluster, **options)
        self.clients.append(made)
        return made

    async def started(self, cluster: RedisCluster, **options: Any) -> ClusterClient:
        """A client that knows the slots already, as the router's composition root starts them
        (a burst of first calls would otherwise race the discovery against their timeouts)."""
        made = self.client(cluster, **options)
        await made.initialize()
        return made

    def lane(self, client: ClusterClient) -> Lane:
        """The request path's way to Redis (storage/redis/lane.py), closed at the end."""
        made = Lane(client)
        self.closing.append(made)
        return made

    async def close(self) -> None:
        for item in self.closing:
            await item.close()
        for made in self.clients:
            await made.aclose()


@pytest.fixture(name="closer")
async def closer_fixture() -> AsyncIterator[Closer]:
    done = Closer()
    try:
        yield done
        assert [x.errors for x in done.checked] == [0] * len(done.checked)
    finally:
        await done.close()


async def _accounts(tmp_path: Path, closer: Closer, name: str = "accounts.sqlite"
                    ) -> SqliteAccountStore:
    db = SqliteDatabase(tmp_path / name)
    await db.open()
    closer.closing.append(db)
    return SqliteAccountStore(db)


async def _account(accounts: SqliteAccountStore, balance: str) -> str:
    account_id = _id("acct")
    await accounts.create(Account(account_id))
    await accounts.top_up(account_id, D(balance), "test")
    return account_id


async def _gather(calls: Sequence[Awaitable[T]]) -> list[T | BaseException]:
    return list(await asyncio.gather(*calls, return_exceptions=True))


async def bounded(call: Awaitable[T], limit: float = 3.0) -> T:
    """The call's result, asserting it did not hang: the stores bound a Redis call at 0.3 s;
    the limit is 10x that for a loaded machine, far below a hang's forever."""
    started = time.monotonic()
    try:
        return await call
    finally:
        assert time.monotonic() - started < limit


async def recovered(call: Callable[[], Awaitable[T | None]], within: float = 10.0) -> T:
    """The call's result once Redis answers it, trying again while it is Unavailable (or, for a
    fail-open limiter, answers None). A client whose calls timed out first reconnects, which
    takes a few 0.3 s calls on a loaded machine; `within` bounds "never comes back"."""
    deadline = time.monotonic() + within
    while True:
        try:
            result = await call()
        except Unavailable:
            result = None
        if result is not None:
            return result
        assert time.monotonic() < deadline, f"Redis not back after {within}s"
        await asyncio.sleep(0.25)
