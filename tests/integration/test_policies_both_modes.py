"""The Russian-market policy paths through a real gateway and router, in the embedded mode and in
the cluster mode (two replicas, PostgreSQL HA, Redis Cluster): `provider.data_collection: deny`
leaves out a provider that collects data and sends YandexGPT `x-data-logging-enabled: false`;
a deployment priced in USD with no exchange rate known is never called (failover to the next
candidate, else a 503 naming the missing rate). Residency, the personal-data guard and VAT have
their own files in both modes (test_residency*, test_pii_guard*, test_vat_billing)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.yandexgpt_upstream import API_KEY, FOLDER, FakeYandexGPT
from tests.infra.fixtures import redis_cluster  # noqa: F401 - the session fixture
from tests.infra.pg_fixtures import postgres_ha  # noqa: F401 - the session fixture
from tests.integration.cluster_support import running_mode
from tests.integration.conftest import AUTH
from tests.support import extended_catalog

HELLO = [{"role": "user", "content": "hello"}]
EXTRA = """
[providers.yandexgpt]
type = "yandexgpt"
base_url = "YANDEX_URL"
api_key_env = "FAKE_YANDEX_KEY"
folder_id = "FOLDER"

[providers.collector]
type = "openai"
base_url = "{url}"
api_key_env = "FAKE_UPSTREAM_KEY"
jurisdiction = "ru"
collects_data = true

[providers.abroad]
type = "openai"
base_url = "{url}"
api_key_env = "FAKE_UPSTREAM_KEY"
jurisdiction = "US"
currency = "USD"

[[models]]
id = "pol/collector-then-yandex"
  [[models.deployments]]
  provider = "collector"
  upstream_model = "fake-echo"
  price = {{ prompt = "1", completion = "2" }}
  [[models.deployments]]
  provider = "yandexgpt"
  upstream_model = "yandexgpt"
  price = {{ prompt = "100", completion = "200" }}

[[models]]
id = "pol/usd"
  [[models.deployments]]
  provider = "abroad"
  upstream_model = "fake-echo"
  price = {{ prompt = "1", completion = "2" }}

[[models]]
id = "pol/usd-then-yandex"
  [[models.deployments]]
  provider = "abroad"
  upstream_model = "fake-echo"
  price = {{ prompt = "0.01", completion = "0.02" }}
  [[models.deployments]]
  provider = "yandexgpt"
  upstream_model = "yandexgpt"
  price = {{ prompt = "100", completion = "200" }}
"""


@dataclass
class Served:
    url: str
    http: httpx.AsyncClient
    account: str


@pytest.fixture(scope="module")
def yandex() -> Iterator[FakeYandexGPT]:
    server = FakeYandexGPT().start()
    yield server
    server.stop()


@pytest.fixture(params=["embedded", "cluster"])
async def served(request: pytest.FixtureRequest, tmp_path: Path, upstream: FakeOpenAI,
                 yandex: FakeYandexGPT, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Served]:
    monkeypatch.setenv("FAKE_YANDEX_KEY", API_KEY)
    extra = EXTRA.replace("YANDEX_URL", yandex.base_url).replace("FOLDER", FOLDER)
    catalog = extended_catalog(tmp_path, upstream.base_url, extra)
    async with running_mode(request.param, request, tmp_path, catalog) as (url, http, account):
        yield Served(url, http, account if request.param == "cluster" else "acct-pol")


async def _key(s: Served) -> dict[str, str]:
    funded = await s.http.post(f"{s.url}/v1/credits", headers=AUTH,
                               json={"account_id": s.account, "amount": "100"})
    assert funded.status_code == 200, funded.text
    made = await s.http.post(f"{s.url}/v1/keys", headers=AUTH,
                             json={"account_id": s.account, "tier": "max"})
    assert made.status_code == 201, made.text
    return {"Authorization": f"Bearer {made.json()['key']}"}


async def _chat(s: Served, auth: dict[str, str], model: str, **body: Any) -> httpx.Response:
    return await s.http.post(f"{s.url}/v1/chat/completions", headers=auth,
                             json={"model": model, "messages": HELLO, **body})


async def test_data_collection_deny_skips_collectors_and_turns_yandex_logging_off(
        served: Served, yandex: FakeYandexGPT) -> None:
    auth = await _key(served)
    open_ = await _chat(served, auth, "pol/collector-then-yandex")
    assert (open_.status_code, open_.json()["provider"]) == (200, "collector")
    seen = len(yandex.headers)
    denied = await _chat(served, auth, "pol/collector-then-yandex",
                         provider={"data_collection": "deny"})
    assert denied.status_code == 200, denied.text
    assert denied.json()["provider"] == "yandexgpt"
    assert len(yandex.headers) == seen + 1
    assert yandex.headers[-1]["x-data-logging-enabled"] == "false"
    stats = await served.http.get(f"{served.url}/v1/generation", headers=auth,
                                  params={"id": denied.json()["id"]})
    assert [a["provider_name"] for a in stats.json()["data"]["attempts"]] == ["yandexgpt"]


async def test_a_usd_deployment_without_a_rate_is_never_called(
        served: Served, upstream: FakeOpenAI) -> None:
    auth = await _key(served)
    calls = len(upstream.requests)
    fallback = await _chat(served, auth, "pol/usd-then-yandex")
    assert fallback.status_code == 200, fallback.text
    assert fallback.json()["provider"] == "yandexgpt"
    refused = await _chat(served, auth, "pol/usd")
    assert refused.status_code == 503, refused.text
    error = refused.json()["error"]
    assert error["metadata"]["reasons"] == {
        "pol/usd@abroad": "no exchange rate for USD: its price cannot be converted to RUB"}
    assert len(upstream.requests) == calls  # the USD deployment's upstream saw nothing
