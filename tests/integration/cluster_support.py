"""The cluster mode's rig: router replicas on PostgreSQL HA and the Redis Cluster, behind one
gateway whose channel balances over all of them."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from tests.infra.postgres_ha import PostgresHA
from tests.infra.redis_cluster import RedisCluster
from tests.integration.conftest import AUTH
from tests.support import gateway_settings, router_settings, running_gateway, running_router
from xrouter_router.bootstrap import RouterApp
from xrouter_router.storage.sql.migrate import migrate

HELLO = [{"role": "user", "content": "hello there"}]


@dataclass
class Cluster:
    url: str
    http: httpx.AsyncClient
    database: str
    account: str  # one per test: the Redis Cluster, and the balances it holds, outlive a test
    routers: list[RouterApp]

    def metric(self, name: str) -> float:
        """A sample summed over the replicas (0 where a replica has none)."""
        return sum(r.metrics.registry.get_sample_value(name) or 0.0 for r in self.routers)

    async def chat(self, key: str, **body: object) -> httpx.Response:
        return await self.http.post(f"{self.url}/v1/chat/completions",
                                    headers={"Authorization": f"Bearer {key}"},
                                    json={"model": "test/echo", "messages": HELLO, **body})

    async def key(self, **body: object) -> tuple[str, str]:
        resp = await self.http.post(f"{self.url}/v1/keys", headers=AUTH,
                                    json={"account_id": self.account, "tier": "pro", **body})
        assert resp.status_code == 201, resp.text
        return resp.json()["key"], resp.json()["data"]["id"]

    async def balance(self, expected: Decimal, within: float = 30.0) -> Decimal:
        """The account's balance from /v1/credits, once it is `expected` (or `within` seconds
        have passed): in the cluster mode charges reach PostgreSQL with the generation records,
        through the ledger consumer, a fraction of a second after the answers."""
        deadline = time.monotonic() + within
        while True:
            resp = await self.http.get(f"{self.url}/v1/credits", headers=AUTH,
                                       params={"account_id": self.account})
            balance = Decimal(str(resp.json()["data"]["balance"]))
            if balance == expected or time.monotonic() > deadline:
                return balance
            await asyncio.sleep(0.05)

    async def top_up(self, amount: str) -> None:
        resp = await self.http.post(f"{self.url}/v1/credits", headers=AUTH,
                                    json={"account_id": self.account, "amount": amount})
        assert resp.status_code == 200, resp.text


@contextlib.asynccontextmanager
async def running_mode(mode: str, request: Any, tmp_path: Path,
                       catalog: Path) -> AsyncIterator[tuple[str, httpx.AsyncClient, str]]:
    """The gateway's URL, a client and an account name for a test in `mode`: "embedded" (one
    router on SQLite; the account "acct") or "cluster" (running_cluster's, over the session's
    postgres_ha and redis_cluster fixtures, which the test module imports)."""
    async with contextlib.AsyncExitStack() as stack:
        if mode == "embedded":
            router = await stack.enter_async_context(running_router(router_settings(catalog)))
            url = await stack.enter_async_context(
                running_gateway(gateway_settings(f"127.0.0.1:{router.server.port}")))
            http = await stack.enter_async_context(httpx.AsyncClient(timeout=20))
            yield url, http, "acct"
            return
        postgres: PostgresHA = request.getfixturevalue("postgres_ha")
        redis: RedisCluster = request.getfixturevalue("redis_cluster")
        cluster = await stack.enter_async_context(
            running_cluster(tmp_path, catalog, postgres, redis))
        yield cluster.url, cluster.http, cluster.account


@contextlib.asynccontextmanager
async def running_cluster(tmp_path: Path, catalog: Path, postgres: PostgresHA,
                          redis: RedisCluster, *, replicas: int = 2,
                          wall: Callable[[], float] = time.time,
                          gateway: dict[str, object] | None = None,
                          **overrides: Any) -> AsyncIterator[Cluster]:
    """`overrides`: more router settings, the same for every replica; `gateway`: the
    gateway's."""
    name = "x" + uuid.uuid4().hex[:12]
    postgres.create_database(name)
    database = postgres.multi_host(name)
    await migrate(database, wait=10)
    base = router_settings(catalog, **overrides)
    # The first replica sends its request-path commands through the lane, the others through
    # redis-py (XROUTER_REDIS_LANE=false): the two paths must agree, to the request.
    settings = [replace(base, database_url=database, redis_url=redis.url, redis_lane=i == 0,
                        data_dir=tmp_path / f"r{i}", key_cache_ttl=30.0,
                        # Not a test of Redis timeouts: a loaded machine must not turn a slow
                        # script into a degraded answer (fail-open limits would admit one more).
                        redis_timeout=10.0) for i in range(replicas)]
    async with contextlib.AsyncExitStack() as stack:
        routers = [await stack.enter_async_context(running_router(s, wall=wall))
                   for s in settings]
        target = ",".join(f"127.0.0.1:{r.server.port}" for r in routers)
        url = await stack.enter_async_context(running_gateway(gateway_settings(target, **(gateway or {}))))
        http = await stack.enter_async_context(httpx.AsyncClient(timeout=20))
        yield Cluster(url, http, database, account=name, routers=routers)

