"""Deployments priced in USD through a real gateway and router, at a configured rate: the cost
converted exactly (usage, /v1/generation, the ledger), the reservation priced in RUB, a currency
without a rate excluded (failover to the next deployment, else a 503 naming the missing rate),
and /v1/models in RUB with the original prices. Embedded mode here; the cluster mode at the
end (PostgreSQL HA and Redis Cluster)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.fakes.openai_upstream import FakeOpenAI
from tests.infra.fixtures import redis_cluster  # noqa: F401 - the session fixture
from tests.infra.pg_fixtures import postgres_ha  # noqa: F401 - the session fixture
from tests.infra.postgres_ha import PostgresHA
from tests.infra.redis_cluster import RedisCluster
from tests.integration.cluster_support import Cluster, running_cluster
from tests.integration.conftest import AUTH, Stack, events
from tests.support import extended_catalog, gross
from xrouter_router.domain.fx import Rate

ACCOUNT = "acct-fx"
HELLO = [{"role": "user", "content": "hello there"}]
RATE = Decimal("92.5")
# "fakeusd" prices in USD (declared on the provider), "fakeeur" in EUR (on the deployment), for
# which no rate is configured.
EXTRA = """
[providers.fakeusd]
type = "openai"
base_url = "{url}"
api_key_env = "FAKE_UPSTREAM_KEY"
currency = "USD"

[providers.fakeeur]
type = "openai"
base_url = "{url}"
api_key_env = "FAKE_UPSTREAM_KEY"

[[models]]
id = "fx/usd"
  [[models.deployments]]
  provider = "fakeusd"
  upstream_model = "fake-echo"
  price = {{ prompt = "2.5", completion = "10" }}

[[models]]
id = "fx/eur"
  [[models.deployments]]
  provider = "fakeeur"
  currency = "EUR"
  upstream_model = "fake-echo"
  price = {{ prompt = "2", completion = "8" }}

[[models]]
id = "fx/failover"
  [[models.deployments]]
  provider = "fakeeur"
  currency = "EUR"
  upstream_model = "fake-echo"
  price = {{ prompt = "0.01", completion = "0.01" }}
  [[models.deployments]]
  provider = "fake"
  upstream_model = "fake-echo"
  price = {{ prompt = "100", completion = "200" }}
"""
NO_EUR = "no exchange rate for EUR: its price cannot be converted to RUB"


@pytest.fixture
def catalog(tmp_path: Path, upstream: FakeOpenAI) -> Path:
    return extended_catalog(tmp_path, upstream.base_url, EXTRA)


@pytest.fixture
def router_overrides() -> dict[str, object]:
    return {"fx_rates": (Rate("USD", RATE),)}


def usd_cost(prompt: int, completion: int) -> Decimal:
    """The exact USD cost of fx/usd's tokens."""
    return (prompt * Decimal("2.5") + completion * Decimal(10)) / 1_000_000


def rub(amount: Decimal) -> Decimal:
    return amount.quantize(Decimal("1E-8"), rounding=ROUND_HALF_EVEN)


async def _key(http: httpx.AsyncClient, url: str, account: str, top_up: str) -> str:
    funded = await http.post(f"{url}/v1/credits", headers=AUTH,
                             json={"account_id": account, "amount": top_up})
    assert funded.status_code == 200, funded.text
    made = await http.post(f"{url}/v1/keys", headers=AUTH,
                           json={"account_id": account, "tier": "max"})
    assert made.status_code == 201, made.text
    return str(made.json()["key"])


async def _chat(http: httpx.AsyncClient, url: str, key: str, model: str,
                **body: Any) -> httpx.Response:
    return await http.post(f"{url}/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                           json={"model": model, "messages": HELLO, **body})


async def test_a_usd_generation_costs_its_usd_cost_converted_exactly(stack: Stack) -> None:
    key = await _key(stack.http, stack.url, ACCOUNT, "100")
    resp = await _chat(stack.http, stack.url, key, "fx/usd")
    assert resp.status_code == 200, resp.text
    usage = resp.json()["usage"]
    original = usd_cost(usage["prompt_tokens"], usage["completion_tokens"])
    cost = gross(rub(original * RATE))  # converted net, then its VAT
    assert cost > 0
    gen = resp.json()["id"]
    stats = await stack.http.get(f"{stack.url}/v1/generation", params={"id": gen},
                                 headers={"Authorization": f"Bearer {key}"})
    data = stats.json()["data"]
    assert (data["price_currency"], data["fx_rate"], data["fx_date"],
            Decimal(data["cost_original"]), Decimal(str(data["total_cost"]))) == (
        "USD", "92.5", None, rub(original), cost)  # a fixed rate has no date
    with sqlite3.connect(stack.data_dir / "xrouter.sqlite3") as conn:
        row = conn.execute("SELECT cost, price_currency, fx_rate, cost_original FROM generations"
                           " WHERE id = ?", (gen,)).fetchone()
    conn.close()
    assert row == (int(cost.scaleb(8)), "USD", "92.5", int(rub(original).scaleb(8)))
    rouble = await _chat(stack.http, stack.url, key, "test/echo")
    stats = await stack.http.get(f"{stack.url}/v1/generation", params={"id": rouble.json()["id"]},
                                 headers={"Authorization": f"Bearer {key}"})
    shown = stats.json()["data"]
    assert (shown["price_currency"], shown["fx_rate"], shown["fx_date"],
            shown["cost_original"]) == ("RUB", None, None, None)


async def test_a_usd_stream_ends_with_its_cost_converted(stack: Stack) -> None:
    key = await _key(stack.http, stack.url, ACCOUNT, "100")
    lines: list[str] = []
    async with stack.http.stream("POST", f"{stack.url}/v1/chat/completions",
                                 headers={"Authorization": f"Bearer {key}"},
                                 json={"model": "fx/usd", "messages": HELLO,
                                       "stream": True}) as resp:
        assert resp.status_code == 200
        lines = [line async for line in resp.aiter_lines() if line]
    usage = events(lines)[-1]["usage"]
    cost = gross(rub(usd_cost(usage["prompt_tokens"], usage["completion_tokens"]) * RATE))
    assert cost > 0 and Decimal(str(usage["cost"])) == cost


async def test_the_reservation_prices_the_usd_worst_case_in_rub(stack: Stack) -> None:
    # 1000 completion tokens at 10 USD a million: 0.01 USD, but 0.925 RUB, more than the balance.
    key = await _key(stack.http, stack.url, ACCOUNT, "0.5")
    calls = len(stack.upstream.requests)
    resp = await _chat(stack.http, stack.url, key, "fx/usd", max_tokens=1000)
    assert resp.status_code == 402, resp.text
    assert len(stack.upstream.requests) == calls
    assert (await _chat(stack.http, stack.url, key, "fx/usd", max_tokens=100)).status_code == 200


async def test_a_currency_without_a_rate_is_excluded_with_its_reason(stack: Stack) -> None:
    key = await _key(stack.http, stack.url, ACCOUNT, "100")
    calls = len(stack.upstream.requests)
    resp = await _chat(stack.http, stack.url, key, "fx/eur")
    assert resp.status_code == 503, resp.text
    assert resp.json()["error"]["metadata"] == {"reasons": {"fx/eur@fakeeur": NO_EUR}}
    assert len(stack.upstream.requests) == calls  # never called unpriced
    # The cheap EUR deployment is left out; the RUB one serves.
    served = await _chat(stack.http, stack.url, key, "fx/failover")
    assert (served.status_code, served.json()["provider"]) == (200, "fake")


async def test_models_show_rub_prices_with_the_originals_and_unpriced_ones(stack: Stack) -> None:
    listed = await stack.http.get(f"{stack.url}/v1/models", headers=AUTH)
    found = {m["id"]: m for m in listed.json()["data"]}
    usd = found["fx/usd"]
    assert (usd["pricing"]["prompt"], usd["pricing"]["completion"], usd["pricing"]["currency"],
            usd["unpriced"]) == ("0.00023125", "0.000925", "RUB", False)
    assert usd["original_pricing"] == {"currency": "USD", "prompt": "0.0000025",
                                       "completion": "0.00001", "fx_rate": "92.5"}
    eur = found["fx/eur"]
    assert (eur["pricing"], eur["unpriced"], eur["original_pricing"]) == (
        None, True, {"currency": "EUR", "prompt": "0.000002", "completion": "0.000008",
                     "fx_rate": None})
    # A model with a priced deployment shows that one's price (in RUB).
    assert (found["fx/failover"]["unpriced"], found["fx/failover"]["original_pricing"],
            found["fx/failover"]["pricing"]["prompt"]) == (False, None, "0.0001")
    assert found["test/echo"]["original_pricing"] is None


# ---- the cluster mode -------------------------------------------------------------------------

@pytest.fixture
async def cluster(tmp_path: Path, catalog: Path, upstream: FakeOpenAI,
                  postgres_ha: PostgresHA,  # noqa: F811
                  redis_cluster: RedisCluster) -> AsyncIterator[Cluster]:  # noqa: F811
    async with running_cluster(tmp_path, catalog, postgres_ha, redis_cluster,
                               fx_rates=(Rate("USD", RATE),)) as running:
        yield running


async def test_in_the_cluster_mode_the_reservation_and_the_ledger_are_in_rub(
        cluster: Cluster) -> None:
    key = await _key(cluster.http, cluster.url, cluster.account, "0.5")
    refused = await _chat(cluster.http, cluster.url, key, "fx/usd", max_tokens=1000)
    assert refused.status_code == 402, refused.text
    served = await _chat(cluster.http, cluster.url, key, "fx/usd", max_tokens=100)
    assert served.status_code == 200, served.text
    usage = served.json()["usage"]
    original = usd_cost(usage["prompt_tokens"], usage["completion_tokens"])
    expected = (gross(rub(original * RATE)), "USD", RATE, rub(original))
    rows: list[tuple[Any, ...]] = []
    for _ in range(300):  # 30 s for a consumer to write the record, loaded machine included
        async with await psycopg.AsyncConnection.connect(cluster.database) as conn:
            cur = await conn.execute("select cost, price_currency, fx_rate, cost_original"
                                     " from generations where id = %s", (served.json()["id"],))
            rows = await cur.fetchall()
        if rows:
            break
        await asyncio.sleep(0.1)
    assert rows == [expected]
    assert await cluster.balance(Decimal("0.5") - expected[0]) == Decimal("0.5") - expected[0]
