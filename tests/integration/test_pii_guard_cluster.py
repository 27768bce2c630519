"""The personal-data guard in the cluster mode (two router replicas on PostgreSQL HA and a Redis
Cluster): `block` refuses before any provider call and leaves the balance whole; `mask` sends
placeholders abroad and restores the answer on both replicas; an account's new policy holds on
every replica at once."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from tests.fakes.openai_upstream import FakeOpenAI
from tests.infra.fixtures import redis_cluster  # noqa: F401 - the session fixture
from tests.infra.pg_fixtures import postgres_ha  # noqa: F401 - the session fixture
from tests.integration.cluster_support import Cluster
from tests.integration.conftest import AUTH

# The two replicas, over the catalog with Russian and foreign providers.
from tests.integration.test_cluster_mode import cluster  # noqa: F401 - the fixture
from tests.integration.test_pii_guard import (  # noqa: F401 - the fixture
    BLOCKED,
    MASKED,
    TEXT,
    _seen,
    catalog,
)

ASK = [{"role": "user", "content": TEXT}]


async def test_block_refuses_on_both_replicas_and_charges_nothing(
        cluster: Cluster, upstream: FakeOpenAI) -> None:  # noqa: F811 - the fixture above
    await cluster.top_up("10")
    key, _ = await cluster.key(pii_guard="block")
    for _ in range(4):  # round robin: each replica twice
        resp = await cluster.chat(key, model="pii/abroad", messages=ASK)
        assert resp.status_code == 400, resp.text
        assert resp.json() == BLOCKED
    assert upstream.requests == []
    # A request the policy lets through (a provider in Russia) is the one charge the balance
    # shows once the ledger has it: the refusals added none before it.
    served = await cluster.chat(key, model="pii/home", messages=ASK)
    assert served.status_code == 200, served.text
    cost = Decimal(str(served.json()["usage"]["cost"]))
    assert cost > 0
    assert await cluster.balance(Decimal("10") - cost) == Decimal("10") - cost


async def test_mask_restores_on_both_replicas_and_a_plan_change_holds_on_each(
        cluster: Cluster, upstream: FakeOpenAI) -> None:  # noqa: F811 - the fixture above
    await cluster.top_up("10")
    key, _ = await cluster.key(pii_guard="mask")
    plain, _ = await cluster.key()
    for _ in range(2):
        resp = await cluster.chat(key, model="pii/abroad", messages=ASK)
        assert resp.status_code == 200, resp.text
        assert resp.json()["choices"][0]["message"]["content"] == f"echo: {TEXT}"
        assert (await cluster.chat(plain, model="pii/abroad", messages=ASK)).status_code == 200
    assert _seen(upstream) == [MASKED, TEXT] * 2
    resp = await cluster.http.put(f"{cluster.url}/v1/accounts/{cluster.account}/plan",
                                  headers=AUTH, json={"tier": "pro", "pii_guard": "block"})
    assert resp.status_code == 200, resp.text
    # The other replica drops the account's keys when the announcement reaches it (well under
    # a second); the bound only keeps a broken announcement from hanging the test.
    deadline = asyncio.get_running_loop().time() + 10.0
    statuses: list[int] = []
    while statuses[-4:] != [400] * 4:
        assert asyncio.get_running_loop().time() < deadline, statuses
        statuses.append((await cluster.chat(plain, model="pii/abroad", messages=ASK)).status_code)
    assert set(statuses) <= {200, 400}
