"""The cluster mode end to end: two router replicas on PostgreSQL HA (primary + synchronous
standby) and a Redis Cluster (3 masters + 3 replicas), behind one gateway whose channel
balances over both. Limits are exact across the replicas, money is never overspent, a revoked
key stops working on every replica within a second, and every generation lands in PostgreSQL
exactly once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.fakes.openai_upstream import FakeOpenAI
from tests.infra.fixtures import killed, redis_cluster  # noqa: F401 - fixtures
from tests.infra.pg_fixtures import postgres_ha  # noqa: F401 - the session fixture
from tests.infra.postgres_ha import PostgresHA
from tests.infra.redis_cluster import RedisCluster
from tests.integration.cluster_support import Cluster, running_cluster
from tests.integration.conftest import AUTH
from tests.support import Clock, clear_of_minute_boundary, gross
from xrouter_router.storage.redis.link import VERSION


@pytest.fixture
async def cluster(tmp_path: Path, catalog: Path, upstream: FakeOpenAI,
                  postgres_ha: PostgresHA,  # noqa: F811
                  redis_cluster: RedisCluster) -> AsyncIterator[Cluster]:  # noqa: F811
    async with running_cluster(tmp_path, catalog, postgres_ha, redis_cluster) as cluster:
        yield cluster


async def test_limits_are_exact_across_two_replicas(cluster: Cluster) -> None:
    await cluster.top_up("100")
    key, _ = await cluster.key(requests_per_minute=20, concurrent=200)
    await clear_of_minute_boundary()
    results = await asyncio.gather(*(cluster.chat(key) for _ in range(100)))
    assert sorted(r.status_code for r in results) == [200] * 20 + [429] * 80


async def test_concurrent_spending_never_exceeds_the_balance(cluster: Cluster) -> None:
    await cluster.top_up("0.1")
    key, _ = await cluster.key(concurrent=200)
    results = await asyncio.gather(*(cluster.chat(key, max_tokens=100) for _ in range(40)))
    ok = [r for r in results if r.status_code == 200]
    assert {r.status_code for r in results} <= {200, 402} and ok
    spent = sum(Decimal(str(r.json()["usage"]["cost"])) for r in ok)
    assert await cluster.balance(Decimal("0.1") - spent) == Decimal("0.1") - spent >= 0


async def test_a_top_up_counts_at_once_on_every_replica(cluster: Cluster) -> None:
    await cluster.top_up("0.01")
    key, _ = await cluster.key(concurrent=100)
    # Both replicas refuse, from the balance snapshot in Redis (kept for 5 s).
    assert [(await cluster.chat(key, max_tokens=100)).status_code for _ in range(4)] == [402] * 4
    await cluster.top_up("10")
    assert [(await cluster.chat(key, max_tokens=100)).status_code for _ in range(4)] == [200] * 4


async def test_a_revoked_key_is_refused_on_every_replica_within_a_second(cluster: Cluster) -> None:
    await cluster.top_up("10")
    key, key_id = await cluster.key()
    for _ in range(4):  # both replicas have the key cached now (round robin)
        assert (await cluster.chat(key)).status_code == 200
    resp = await cluster.http.delete(f"{cluster.url}/v1/keys/{key_id}", headers=AUTH)
    assert resp.json() == {"data": {"deleted": True}}
    await asyncio.sleep(1.0)
    assert [(await cluster.chat(key)).status_code for _ in range(6)] == [401] * 6


async def test_every_generation_lands_in_postgres_exactly_once(cluster: Cluster) -> None:
    await cluster.top_up("100")  # 30 worst cases of about 0.82 RUB are reserved at once
    key, _ = await cluster.key(concurrent=100)
    results = await asyncio.gather(*(cluster.chat(key) for _ in range(30)))
    assert [r.status_code for r in results] == [200] * 30
    ids = {r.json()["id"] for r in results}
    assert len(ids) == 30
    found = (await cluster.http.get(f"{cluster.url}/v1/generation",
                                    params={"id": next(iter(ids))},
                                    headers={"Authorization": f"Bearer {key}"}))
    assert found.status_code == 200  # visible at once, before the consumer flushed
    rows: list[tuple[str, int]] = []
    for _ in range(300):  # 30 s for the consumers to write 30 records, loaded machine included
        async with await psycopg.AsyncConnection.connect(cluster.database) as conn:
            cur = await conn.execute("select id, count(*) from generations where id = any(%s) "
                                     "group by id", (list(ids),))
            rows = await cur.fetchall()
        if len(rows) == 30:
            break
        await asyncio.sleep(0.1)
    assert len(rows) == 30 and {n for _, n in rows} == {1}
    lane, client = (r.metrics.registry.get_sample_value for r in cluster.routers)
    name = "xrouter_router_redis_lane_fallbacks_total"
    assert [lane(name, {"component": c}) for c in ("credits", "ledger")] == [0.0, 0.0]
    assert [client(name, {"component": c}) for c in ("credits", "ledger")] == [0.0, 0.0]


async def test_embeddings_are_charged_and_recorded_on_every_replica(cluster: Cluster) -> None:
    await cluster.top_up("1")
    key, _ = await cluster.key()
    auth = {"Authorization": f"Bearer {key}"}
    ids = []
    for _ in range(2):  # one on each replica (round robin)
        resp = await cluster.http.post(f"{cluster.url}/v1/embeddings", headers=auth,
                                       json={"model": "test/embed", "input": "hello"})
        assert resp.status_code == 200
        # 2 tokens at 10 RUB a million, net; with VAT.
        assert Decimal(str(resp.json()["usage"]["cost"])) == gross("0.00002")
        ids.append(resp.headers["x-generation-id"])
    for gen in ids:
        found = await cluster.http.get(f"{cluster.url}/v1/generation", params={"id": gen},
                                       headers=auth)
        assert found.status_code == 200
        assert Decimal(str(found.json()["data"]["total_cost"])) == gross("0.00002")
    left = Decimal(1) - 2 * gross("0.00002")
    assert await cluster.balance(left) == left


async def test_an_allow_list_change_holds_on_every_replica(cluster: Cluster) -> None:
    await cluster.top_up("10")
    key, key_id = await cluster.key(allowed_ips=["127.0.0.1", "2001:db8::/32"])
    for _ in range(4):  # both replicas serve the key from their caches now (round robin)
        assert (await cluster.chat(key)).status_code == 200
    resp = await cluster.http.patch(f"{cluster.url}/v1/keys/{key_id}", headers=AUTH,
                                    json={"allowed_ips": ["192.0.2.0/24"]})
    assert resp.json()["data"]["allowed_ips"] == ["192.0.2.0/24"]
    # The other replica forgets the key when the announcement reaches it (well under a
    # second); the bound only keeps a broken announcement from hanging the test.
    deadline = asyncio.get_running_loop().time() + 10.0
    statuses: list[int] = []
    while statuses[-6:] != [403] * 6:
        assert asyncio.get_running_loop().time() < deadline, statuses
        statuses.append((await cluster.chat(key)).status_code)
    assert set(statuses) <= {200, 403}


async def test_health_reports_the_database_and_the_cache(
        tmp_path: Path, catalog: Path, upstream: FakeOpenAI,
        postgres_ha: PostgresHA) -> None:  # noqa: F811
    """The origin's /health components `db` and `cache`: a hung Redis Cluster (every node
    stopped) is `cache: down` within the probe's bound, and `up` again once it answers."""
    redis = await asyncio.to_thread(RedisCluster().start)
    try:
        async with running_cluster(tmp_path, catalog, postgres_ha, redis, replicas=1) as cluster:
            health = await cluster.http.get(f"{cluster.url}/health")
            assert health.status_code == 200
            body = health.json()
            assert (body["status"], body["mode"]) == ("healthy", "cluster")
            assert {k: body["components"][k] for k in ("api", "router", "db", "cache")} == {
                "api": "up", "router": "up", "db": "up", "cache": "up"}

            redis.freeze()  # connections stay open, nothing answers
            try:
                # The probe's answer is kept for 1 s: the first call after that says down.
                for _ in range(100):
                    body = (await cluster.http.get(f"{cluster.url}/health")).json()
                    if body["components"]["cache"] == "down":
                        break
                    await asyncio.sleep(0.1)
                assert body["status"] == "degraded"
                assert (body["components"]["db"], body["components"]["cache"]) == ("up", "down")
            finally:
                redis.thaw()
            for _ in range(100):
                body = (await cluster.http.get(f"{cluster.url}/health")).json()
                if body["components"]["cache"] == "up":
                    break
                await asyncio.sleep(0.1)
            assert (body["status"], body["components"]["cache"]) == ("healthy", "up")
    finally:
        await asyncio.to_thread(redis.stop)


ALLOWANCE = Decimal("5")


@pytest.fixture
async def allowed(tmp_path: Path, catalog: Path, upstream: FakeOpenAI,
                  postgres_ha: PostgresHA,  # noqa: F811
                  redis_cluster: RedisCluster) -> AsyncIterator[Cluster]:  # noqa: F811
    async with running_cluster(tmp_path, catalog, postgres_ha, redis_cluster,
                               credits_outage_allowance=ALLOWANCE) as cluster:
        yield cluster


async def test_an_outage_allowance_keeps_paid_requests_answered_through_a_master_failover(
        allowed: Cluster, redis_cluster: RedisCluster,  # noqa: F811
        killed: list[int]) -> None:  # noqa: F811
    """XROUTER_CREDITS_OUTAGE_ALLOWANCE: the master holding the account's credit keys is
    SIGKILLed and its replica held back until the test promotes it; every paid request before,
    during and after is answered, and each is recorded and charged exactly once."""
    cluster = allowed
    await cluster.top_up("10")
    key, _ = await cluster.key()
    credits_key = f"xr:{VERSION}:cr:{{{cluster.account}}}"
    answers = [await cluster.chat(key) for _ in range(4)]
    port = redis_cluster.master_of(credits_key)
    replica = redis_cluster.hold_failover(port)  # the outage lasts until the test ends it
    redis_cluster.kill_master(port)
    killed.append(port)
    during = [await cluster.chat(key) for _ in range(8)]
    admitted = sum(r.metrics.registry.get_sample_value(
        "xrouter_router_credits_outage_requests_total", {"outcome": "admitted"}) or 0.0
        for r in cluster.routers)
    await asyncio.to_thread(redis_cluster.take_over, replica)
    after = [await cluster.chat(key) for _ in range(4)]
    assert admitted == 8  # every request of the outage came through the allowance
    await _each_answered_and_charged_once(cluster, answers + during + after)


async def _each_answered_and_charged_once(cluster: Cluster, answers: list[httpx.Response]) -> None:
    """All 16 answered; each recorded once, the account charged their costs exactly."""
    assert [a.status_code for a in answers] == [200] * 16, [a.text for a in answers]
    cost = sum(Decimal(str(a.json()["usage"]["cost"])) for a in answers)
    ids = [a.json()["id"] for a in answers]
    assert len(set(ids)) == 16 and cost > 0
    assert await cluster.balance(Decimal(10) - cost) == Decimal(10) - cost
    async with await psycopg.AsyncConnection.connect(cluster.database) as conn:
        cur = await conn.execute("SELECT id, count(*) FROM generations WHERE id = ANY(%s) "
                                 "GROUP BY id", (ids,))
        assert sorted(await cur.fetchall()) == sorted((i, 1) for i in ids)
        cur = await conn.execute("SELECT * FROM xrouter_reconcile()")
        assert await cur.fetchall() == []


async def test_a_plans_outage_allowance_keeps_its_accounts_requests_answered_alone(
        tmp_path: Path, catalog: Path, upstream: FakeOpenAI, *,
        postgres_ha: PostgresHA, redis_cluster: RedisCluster,  # noqa: F811
        killed: list[int]) -> None:  # noqa: F811
    """XROUTER_CREDITS_OUTAGE_ALLOWANCE at its default, 0; the account's plan sets 5 RUB. The
    master holding both accounts' credit keys is SIGKILLed: the planned account's requests are
    answered (and each recorded and charged once), the other account's are refused as before."""
    async with running_cluster(tmp_path, catalog, postgres_ha, redis_cluster) as cluster:
        await _planned_account_through_a_master_failover(cluster, redis_cluster, killed)


async def _planned_account_through_a_master_failover(
        cluster: Cluster, redis_cluster: RedisCluster, killed: list[int]) -> None:  # noqa: F811
    plan = await cluster.http.put(f"{cluster.url}/v1/accounts/{cluster.account}/plan",
                                  headers=AUTH, json={"tier": "max", "outage_allowance": "5"})
    assert plan.status_code == 200, plan.text
    await cluster.top_up("10")
    key, _ = await cluster.key()
    port = redis_cluster.master_of(f"xr:{VERSION}:cr:{{{cluster.account}}}")
    # An account without a plan whose credit keys live on the same master.
    other = next(name for name in (f"{cluster.account}-{i}" for i in range(200))
                 if redis_cluster.master_of(f"xr:{VERSION}:cr:{{{name}}}") == port)
    topped = await cluster.http.post(f"{cluster.url}/v1/credits", headers=AUTH,
                                     json={"account_id": other, "amount": "10"})
    assert topped.status_code == 200
    made = await cluster.http.post(f"{cluster.url}/v1/keys", headers=AUTH,
                                   json={"account_id": other, "tier": "pro"})
    other_key = made.json()["key"]
    answers = [await cluster.chat(key) for _ in range(4)]  # both replicas know both keys
    assert [(await cluster.chat(other_key)).status_code for _ in range(2)] == [200, 200]
    replica = redis_cluster.hold_failover(port)  # the outage lasts until the test ends it
    redis_cluster.kill_master(port)
    killed.append(port)
    during = [await cluster.chat(key) for _ in range(8)]
    refused = [await cluster.chat(other_key) for _ in range(2)]
    outcomes = {outcome: sum(r.metrics.registry.get_sample_value(
        "xrouter_router_credits_outage_requests_total", {"outcome": outcome}) or 0.0
        for r in cluster.routers) for outcome in ("admitted", "refused")}
    await asyncio.to_thread(redis_cluster.take_over, replica)
    answers += during + [await cluster.chat(key) for _ in range(4)]
    assert [r.status_code for r in refused] == [503, 503]
    assert {r.json()["error"]["message"] for r in refused} == {
        "Credit checks are unavailable; retry shortly"}
    assert outcomes == {"admitted": 8, "refused": 2}
    await _each_answered_and_charged_once(cluster, answers)


async def test_vat_and_statements_on_two_replicas(
        tmp_path: Path, catalog: Path, upstream: FakeOpenAI, postgres_ha: PostgresHA,  # noqa: F811
        redis_cluster: RedisCluster) -> None:  # noqa: F811
    last_of_20 = datetime.fromisoformat("2025-12-31T23:59:00+03:00").timestamp()
    clock = Clock(last_of_20)
    async with running_cluster(tmp_path, catalog, postgres_ha, redis_cluster,
                               wall=clock) as cluster:
        await cluster.top_up("10")
        key, _ = await cluster.key()
        auth = {"Authorization": f"Bearer {key}"}
        gens = []
        for at in (last_of_20, last_of_20 + 60):  # the second is 2026-01-01 00:00 Moscow time
            clock.now = at
            resp = await cluster.chat(key)  # one on each replica (round robin)
            assert resp.status_code == 200
            gens.append(resp.json()["id"])
        # 0.0011 net: 20% VAT, then 22%. Once debited, the records are in PostgreSQL too (the
        # charge travels with the record).
        left = Decimal(10) - Decimal("0.00132") - Decimal("0.001342")
        assert await cluster.balance(left) == left
        for month, gen, rate, vat, gross_cost in (
                ("2025-12", gens[0], "0.2", "0.00022000", "0.00132000"),
                ("2026-01", gens[1], "0.22", "0.00024200", "0.00134200")):
            resp = await cluster.http.get(f"{cluster.url}/v1/statement", headers=auth,
                                          params={"month": month})
            data = resp.json()["data"]
            assert [(x["generation_id"], x["vat_rate"], x["net"], x["vat"], x["gross"])
                    for x in data["lines"]] == [(gen, rate, "0.00110000", vat, gross_cost)]
            assert (data["totals"]["net"], data["totals"]["vat"], data["totals"]["gross"]) == (
                "0.00110000", vat, gross_cost)


async def test_a_router_serves_on_two_redis_clients_and_closes_both(
        tmp_path: Path, catalog: Path, upstream: FakeOpenAI, postgres_ha: PostgresHA,  # noqa: F811
        redis_cluster: RedisCluster) -> None:  # noqa: F811
    async with running_cluster(tmp_path, catalog, postgres_ha, redis_cluster,
                               replicas=1) as cluster:
        redis = cluster.routers[0].redis
        assert redis is not None
        await cluster.top_up("10")
        key, _ = await cluster.key(requests_per_minute=100)
        assert (await cluster.chat(key)).status_code == 200  # limits, credits and the ledger
        left = Decimal(10) - gross("0.0011")
        assert await cluster.balance(left) == left
        clients = (redis.requests, redis.background)
        # Two clients, one command table (the request path's lanes take the topology from the
        # first; the consumer, revocations and statistics use the second).
        assert clients[0] is not clients[1]
        assert clients[0].commands_parser is clients[1].commands_parser
        for client in clients:
            assert await client.ping(target_nodes=client.PRIMARIES) is True
    for client in clients:
        assert not [c for n in client.get_nodes() for c in n._connections if c.is_connected]
