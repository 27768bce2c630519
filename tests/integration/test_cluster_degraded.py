"""The cluster mode while PostgreSQL is down: keys already known keep working from the cache,
generations are buffered in the Redis stream ledger, and every one lands exactly once when a
primary is back (here: the standby, promoted)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.fakes.openai_upstream import FakeOpenAI
from tests.infra.fixtures import redis_cluster  # noqa: F401 - the session fixture
from tests.infra.pg_fixtures import postgres_ha_disposable  # noqa: F401 - the fixture
from tests.infra.postgres_ha import PostgresHA
from tests.infra.redis_cluster import RedisCluster
from tests.integration.cluster_support import Cluster, running_cluster
from tests.integration.conftest import AUTH


@pytest.fixture
async def cluster(tmp_path: Path, catalog: Path, upstream: FakeOpenAI,
                  postgres_ha_disposable: PostgresHA,  # noqa: F811
                  redis_cluster: RedisCluster) -> AsyncIterator[Cluster]:  # noqa: F811
    async with running_cluster(tmp_path, catalog, postgres_ha_disposable, redis_cluster) as cluster:
        yield cluster


async def _ledger_rows(cluster: Cluster, ids: set[str]) -> tuple[list[tuple[str, int]], Decimal]:
    """(generation id, records) for `ids`, and what the account's usage entries add up to."""
    async with await psycopg.AsyncConnection.connect(cluster.database) as conn:
        cur = await conn.execute("select id, count(*) from generations where id = any(%s) "
                                 "group by id", (list(ids),))
        rows = await cur.fetchall()
        cur = await conn.execute("select coalesce(-sum(amount), 0) from credit_entries "
                                 "where account_id = %s and kind = 'usage'", (cluster.account,))
        charged = (await cur.fetchone() or (Decimal(0),))[0]
    return rows, Decimal(charged)


async def _until(check: Callable[[], bool], bound: float, what: str) -> None:
    deadline = time.monotonic() + bound
    while not check():
        assert time.monotonic() < deadline, f"no {what} after {bound}s"
        await asyncio.sleep(0.05)


async def _timed(call: Awaitable[httpx.Response], bound: float) -> httpx.Response:
    started = time.monotonic()
    answer = await call
    assert time.monotonic() - started < bound
    return answer


async def test_known_keys_keep_working_while_postgres_is_down(
        cluster: Cluster, postgres_ha_disposable: PostgresHA) -> None:  # noqa: F811
    await cluster.top_up("10")
    key, _ = await cluster.key(concurrent=100)
    answers = [await cluster.chat(key) for _ in range(4)]  # the key is cached on both replicas
    assert [r.status_code for r in answers] == [200] * 4
    postgres_ha_disposable.stop_primary()  # the standby refuses writes: no database at all
    during = [await cluster.chat(key) for _ in range(6)]
    assert [r.status_code for r in during] == [200] * 6
    await asyncio.sleep(5.5)  # past the balance snapshot's 5 s: Redis's balance still decides
    # Both replicas notice (their databases' watchers, within about a second); from then on
    # calls to PostgreSQL fail fast.
    await _until(lambda: cluster.metric("xrouter_router_database_up") == 0, 60,
                 "both replicas seeing the database down")
    health = (await cluster.http.get(f"{cluster.url}/health")).json()
    assert (health["status"], health["components"]["db"]) == ("degraded", "down")
    # The request path does not touch PostgreSQL for a known key (charges travel with the
    # records), so no request waits for the pool's 5 s. The bound is 40x a request's usual
    # 0.1 s on a loaded machine, and below the 5 s that a request waiting on PostgreSQL takes.
    late = [await _timed(cluster.chat(key), 4.0) for _ in range(4)]
    assert [r.status_code for r in late] == [200] * 4
    answers += during + late

    postgres_ha_disposable.promote_standby()
    ids = {r.json()["id"] for r in answers}
    cost = sum(Decimal(str(r.json()["usage"]["cost"])) for r in answers)
    assert len(ids) == 14 and cost > 0
    rows: list[tuple[str, int]] = []
    charged = Decimal(0)
    for _ in range(300):  # the ledger's backlog drains, each record with its charge
        rows, charged = await _ledger_rows(cluster, ids)
        if len(rows) == 14 and charged == cost:
            break
        await asyncio.sleep(0.1)
    assert len(rows) == 14 and {n for _, n in rows} == {1}
    assert charged == cost
    assert cluster.metric("xrouter_router_database_up") == 2
    health = (await cluster.http.get(f"{cluster.url}/health")).json()
    assert (health["status"], health["components"]["db"]) == ("healthy", "up")
    credits = (await cluster.http.get(f"{cluster.url}/v1/credits", headers=AUTH,
                                      params={"account_id": cluster.account})).json()["data"]
    assert Decimal(str(credits["balance"])) == Decimal(10) - cost
    assert (await cluster.chat(key)).status_code == 200


@pytest.fixture
async def one_router(tmp_path: Path, catalog: Path, upstream: FakeOpenAI,
                     postgres_ha_disposable: PostgresHA,  # noqa: F811
                     redis_cluster: RedisCluster) -> AsyncIterator[Cluster]:  # noqa: F811
    """One replica: each keeps its own last good reads, and the gateway's round robin would
    make which replica answers a read a matter of chance."""
    async with running_cluster(tmp_path, catalog, postgres_ha_disposable, redis_cluster,
                               replicas=1) as cluster:
        yield cluster


async def test_account_reads_answer_their_last_good_read_while_postgres_is_down(
        one_router: Cluster, postgres_ha_disposable: PostgresHA) -> None:  # noqa: F811
    cluster = one_router
    await cluster.top_up("10")
    key, _ = await cluster.key()
    other, _ = await cluster.key()
    answer = await cluster.chat(key)
    assert answer.status_code == 200
    cost = Decimal(str(answer.json()["usage"]["cost"]))
    assert cost > 0
    # The charge reaches PostgreSQL through the ledger stream: wait for it to be readable.
    assert await cluster.balance(Decimal(10) - cost) == Decimal(10) - cost
    auth, other_auth = ({"Authorization": f"Bearer {k}"} for k in (key, other))
    reads = {path: await cluster.http.get(f"{cluster.url}{path}", headers=auth)
             for path in ("/v1/credits", "/v1/key", "/v1/auth/key")}
    assert {r.status_code for r in reads.values()} == {200}
    assert all("X-XRouter-Stale" not in r.headers and "Age" not in r.headers
               for r in reads.values())
    assert Decimal(str(reads["/v1/credits"].json()["data"]["total_usage"])) == cost
    # The other key reads itself but never its account's credits.
    assert (await cluster.http.get(f"{cluster.url}/v1/key", headers=other_auth)).status_code == 200

    postgres_ha_disposable.stop_primary()
    await _until(lambda: cluster.metric("xrouter_router_database_up") == 0, 60,
                 "the replica seeing the database down")
    # The bound protects "no read waits for the pool's 5 s timeout": 4 s is 40x a read's
    # usual 0.1 s on a loaded machine and below that timeout.
    for path, fresh in reads.items():
        stale = await _timed(cluster.http.get(f"{cluster.url}{path}", headers=auth), 4.0)
        assert stale.status_code == 200, (path, stale.text)
        assert stale.json() == fresh.json()
        age = float(stale.headers["X-XRouter-Stale"])
        assert age > 0 and int(stale.headers["Age"]) == int(age)
    never = await _timed(cluster.http.get(f"{cluster.url}/v1/credits", headers=other_auth), 4.0)
    assert never.status_code == 503
    assert never.json()["error"]["message"] == "The database is unavailable; retry shortly"
    stale_key = await cluster.http.get(f"{cluster.url}/v1/key", headers=other_auth)
    assert stale_key.status_code == 200 and "X-XRouter-Stale" in stale_key.headers
    assert cluster.metric("xrouter_router_stale_account_reads_total") == 4

    postgres_ha_disposable.promote_standby()
    await _until(lambda: cluster.metric("xrouter_router_database_up") == 1, 60,
                 "the replica seeing the database back")
    for path in reads:
        fresh = await cluster.http.get(f"{cluster.url}{path}", headers=auth)
        assert fresh.status_code == 200
        assert "X-XRouter-Stale" not in fresh.headers and "Age" not in fresh.headers
