"""The models' token limits as a client sees them, through a real gateway and router(s): a
400 in the documented error shape for tokens_per_request, a 429 with Retry-After for a key's
tokens per minute of a model, in the embedded mode and across two router replicas on the Redis
Cluster. These run on the real clock: each burst starts clear of a minute's end."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.openai_upstream import FakeOpenAI
from tests.infra.fixtures import redis_cluster  # noqa: F401 - the session fixture
from tests.infra.pg_fixtures import postgres_ha  # noqa: F401 - the session fixture
from tests.infra.postgres_ha import PostgresHA
from tests.infra.redis_cluster import RedisCluster
from tests.integration.cluster_support import Cluster, running_cluster
from tests.integration.conftest import AUTH, Stack
from tests.support import catalog_toml, clear_of_minute_boundary

HELLO = [{"role": "user", "content": "hello there"}]
# "hello there" counts as at most 15 prompt tokens (11 bytes, 4 for the message); the fake
# echo reports 5 + 3 = 8 tokens used.
LIMITED = """
[[models]]
id = "test/limited"
limits = { tokens_per_request = 60, tokens_per_minute = 100 }
  [[models.deployments]]
  provider = "fake"
  upstream_model = "fake-echo"
  price = { prompt = "100", completion = "200" }
"""


@pytest.fixture
def catalog(tmp_path: Path, upstream: FakeOpenAI) -> Path:
    path = tmp_path / "catalog.toml"
    path.write_text(catalog_toml(upstream.base_url) + LIMITED, encoding="utf-8")
    return path


@pytest.fixture
async def cluster(tmp_path: Path, catalog: Path, postgres_ha: PostgresHA,  # noqa: F811
                  redis_cluster: RedisCluster) -> AsyncIterator[Cluster]:  # noqa: F811
    async with running_cluster(tmp_path, catalog, postgres_ha, redis_cluster) as made:
        yield made


async def _key(http: httpx.AsyncClient, url: str, account: str) -> str:
    paid = await http.post(f"{url}/v1/credits", headers=AUTH,
                           json={"account_id": account, "amount": "10"})
    assert paid.status_code == 200, paid.text
    made = await http.post(f"{url}/v1/keys", headers=AUTH,
                           json={"account_id": account, "tier": "pro"})
    assert made.status_code == 201, made.text
    return str(made.json()["key"])


async def _limits_as_a_client_sees_them(http: httpx.AsyncClient, url: str, key: str) -> None:
    async def chat(**body: Any) -> httpx.Response:
        return await http.post(f"{url}/v1/chat/completions",
                               headers={"Authorization": f"Bearer {key}"},
                               json={"model": "test/limited", "messages": HELLO, **body})

    # The prompt counts as the tokenizer's 2 tokens and 4 for the message: 6 + 55 > 60.
    refused = await chat(max_tokens=55)
    assert refused.status_code == 400
    assert refused.json() == {"error": {
        "message": "The request does not fit the tokens_per_request of model 'test/limited' "
                   "(60): its prompt counts as 6 tokens plus max_tokens 55",
        "type": "invalid_request_error", "code": 400, "param": "max_tokens",
        "metadata": {"model": "test/limited", "limit": "tokens_per_request",
                     "tokens_per_request": 60, "prompt_tokens": 6, "max_tokens": 55}}}
    await clear_of_minute_boundary()
    # Each asks 6 + 54 = 60 and keeps the 8 it used: the sixth fits exactly (5 x 8 + 60).
    codes = [(await chat(max_tokens=54)).status_code for _ in range(6)]
    assert codes == [200] * 6
    limited = await chat(max_tokens=54)  # 6 x 8 + 60 > 100
    assert limited.status_code == 429
    error = limited.json()["error"]
    assert (error["type"], error["message"], error["metadata"]["model"],
            error["metadata"]["remaining"]) == (
        "rate_limit_error", "Rate limit exceeded: 100 tokens per minute of model test/limited",
        "test/limited", 52)
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    # The window that refused, in the rate-limit headers as for the key's own limits.
    assert (limited.headers["x-ratelimit-limit"], limited.headers["x-ratelimit-remaining"]) == (
        "100", "52")


async def test_embedded(stack: Stack) -> None:
    await _limits_as_a_client_sees_them(stack.http, stack.url, await _key(stack.http, stack.url,
                                                                          "acct-1"))


async def test_cluster(cluster: Cluster) -> None:
    key = await _key(cluster.http, cluster.url, cluster.account)
    await _limits_as_a_client_sees_them(cluster.http, cluster.url, key)


async def test_a_prompt_counts_by_its_tokens_not_its_bytes(stack: Stack) -> None:
    """240 bytes of English are 41 tokens: 41 + 4 + max_tokens 15 fits a 60-token request
    limit exactly (the reservation's byte bound, 244 + 15, would have refused it)."""
    key = await _key(stack.http, stack.url, "acct-bytes")
    resp = await stack.http.post(f"{stack.url}/v1/chat/completions",
                                 headers={"Authorization": f"Bearer {key}"},
                                 json={"model": "test/limited", "max_tokens": 15, "messages": [
                                     {"role": "user", "content": "hello there " * 20}]})
    assert resp.status_code == 200, resp.text
