"""Data residency in the cluster mode (two router replicas on PostgreSQL HA and a Redis
Cluster): an account's new policy holds on every replica at once (each drops the account's
cached keys when the plan change is announced), and the serving provider's jurisdiction
reaches PostgreSQL through the ledger stream."""

from __future__ import annotations

import asyncio

import psycopg

from tests.infra.fixtures import redis_cluster  # noqa: F401 - the session fixture
from tests.infra.pg_fixtures import postgres_ha  # noqa: F401 - the session fixture
from tests.integration.cluster_support import Cluster
from tests.integration.conftest import AUTH

# The two replicas, over the catalog with Russian and foreign providers.
from tests.integration.test_cluster_mode import cluster  # noqa: F401 - the fixture
from tests.integration.test_residency import catalog  # noqa: F401 - the fixture


async def test_an_accounts_residency_holds_on_every_replica_and_reaches_the_ledger(
        cluster: Cluster) -> None:  # noqa: F811 - the fixture imported above
    await cluster.top_up("10")
    key, _ = await cluster.key()
    for _ in range(4):  # both replicas serve the key from their caches now (round robin)
        assert (await cluster.chat(key, model="res/abroad")).status_code == 200
    resp = await cluster.http.put(f"{cluster.url}/v1/accounts/{cluster.account}/plan",
                                  headers=AUTH, json={"tier": "pro", "residency": "ru"})
    assert resp.status_code == 200, resp.text
    # The other replica drops the account's keys when the announcement reaches it (well under
    # a second); the bound only keeps a broken announcement from hanging the test.
    deadline = asyncio.get_running_loop().time() + 10.0
    statuses: list[int] = []
    while statuses[-6:] != [403] * 6:
        assert asyncio.get_running_loop().time() < deadline, statuses
        statuses.append((await cluster.chat(key, model="res/abroad")).status_code)
    assert set(statuses) <= {200, 403}
    served = await cluster.chat(key, model="res/mixed")
    assert (served.status_code, served.json()["provider"]) == (200, "fakeru")
    gen = served.json()["id"]
    rows: list[tuple[str]] = []
    for _ in range(300):  # 30 s for a consumer to write the record, loaded machine included
        async with await psycopg.AsyncConnection.connect(cluster.database) as conn:
            cur = await conn.execute("select jurisdiction from generations where id = %s", (gen,))
            rows = await cur.fetchall()
        if rows:
            break
        await asyncio.sleep(0.1)
    assert rows == [("ru",)]
