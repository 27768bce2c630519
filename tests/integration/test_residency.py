"""Data residency through a real gateway and router (embedded mode): a key's or its account's
policy "ru" routes only to providers the catalog places in Russia (fallback models included), a
request it leaves nothing for is a 403 naming the policy, and the policy and each generation's
jurisdiction are visible in /v1/key, the route explanation, /v1/models, /v1/generation and the
ledger."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.openai_upstream import FakeOpenAI
from tests.integration.conftest import AUTH, Stack
from tests.support import extended_catalog

ACCOUNT = "acct-res"
HELLO = [{"role": "user", "content": "hello there"}]
# Two accounts at the same fake upstream: "fakeru" declared in Russia, "fakeus" in the USA; the
# test catalog's own "fake" (an openai type that declares nothing) is of unknown jurisdiction.
EXTRA = """
[providers.fakeru]
type = "openai"
base_url = "{url}"
api_key_env = "FAKE_UPSTREAM_KEY"
jurisdiction = "ru"

[providers.fakeus]
type = "openai"
base_url = "{url}"
api_key_env = "FAKE_UPSTREAM_KEY"
jurisdiction = "US"

[[models]]
id = "res/mixed"
  [[models.deployments]]
  provider = "fakeus"
  upstream_model = "fake-echo"
  price = {{ prompt = "100", completion = "200" }}
  [[models.deployments]]
  provider = "fakeru"
  upstream_model = "fake-echo"
  price = {{ prompt = "900", completion = "1800" }}

[[models]]
id = "res/abroad"
  [[models.deployments]]
  provider = "fakeus"
  upstream_model = "fake-echo"
  price = {{ prompt = "100", completion = "200" }}
  [[models.deployments]]
  provider = "fake"
  upstream_model = "fake-echo"
  price = {{ prompt = "100", completion = "200" }}

[[models]]
id = "res/home"
  [[models.deployments]]
  provider = "fakeru"
  upstream_model = "fake-echo"
  price = {{ prompt = "100", completion = "200" }}
"""
POLICY = "; the residency policy requires 'ru'"


@pytest.fixture
def catalog(tmp_path: Path, upstream: FakeOpenAI) -> Path:
    return extended_catalog(tmp_path, upstream.base_url, EXTRA)


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def _key(stack: Stack, **body: Any) -> tuple[str, dict[str, Any]]:
    resp = await stack.http.post(f"{stack.url}/v1/keys", headers=AUTH,
                                 json={"account_id": ACCOUNT, "tier": "max", **body})
    assert resp.status_code == 201, resp.text
    return resp.json()["key"], resp.json()["data"]


async def _funded(stack: Stack) -> None:
    resp = await stack.http.post(f"{stack.url}/v1/credits", headers=AUTH,
                                 json={"account_id": ACCOUNT, "amount": "1000"})
    assert resp.status_code == 200, resp.text


async def _chat(stack: Stack, key: str, model: str, **body: Any) -> httpx.Response:
    return await stack.chat({"model": model, "messages": HELLO, **body}, headers=_bearer(key))


async def _effective(stack: Stack, key: str) -> dict[str, Any]:
    me = await stack.http.get(f"{stack.url}/v1/key", headers=_bearer(key))
    assert me.status_code == 200, me.text
    data: dict[str, Any] = me.json()["data"]
    return {"residency": data["residency"], "effective": data["effective_residency"]}


async def test_a_ru_key_is_served_only_in_russia_fallbacks_included(stack: Stack) -> None:
    await _funded(stack)
    key, info = await _key(stack, residency="ru")
    assert (info["residency"], info["effective_residency"]) == (
        "ru", {"residency": "ru", "source": "key"})
    # The balancer would take the far cheaper US deployment first; the policy leaves Russia only.
    for _ in range(3):
        resp = await _chat(stack, key, "res/mixed")
        assert resp.status_code == 200, resp.text
        assert resp.json()["provider"] == "fakeru"
    fallback = await _chat(stack, key, "res/abroad", models=["res/home"])
    assert fallback.status_code == 200, fallback.text
    assert (fallback.json()["model"], fallback.json()["provider"]) == ("res/home", "fakeru")
    # The same request without the policy goes abroad.
    anywhere, _ = await _key(stack)
    assert (await _chat(stack, anywhere, "res/abroad", models=["res/home"])).json()["model"] == (
        "res/abroad")


async def test_a_request_the_policy_leaves_nothing_for_is_a_403_naming_it(stack: Stack) -> None:
    await _funded(stack)
    key, _ = await _key(stack, residency="ru")
    calls = len(stack.upstream.requests)
    resp = await _chat(stack, key, "res/abroad")
    assert resp.status_code == 403
    assert resp.json() == {"error": {
        "message": "The residency policy 'ru' of this key or its account excludes every provider "
                   "that could serve this request",
        "type": "permission_error", "code": 403, "param": None,
        "metadata": {"reasons": {"res/abroad@fakeus": "provider jurisdiction is 'us'" + POLICY,
                                 "res/abroad@fake": "provider jurisdiction is 'unknown'" + POLICY}}}}
    assert len(stack.upstream.requests) == calls  # nothing was sent abroad
    explained = await stack.http.post(f"{stack.url}/v1/route/explain", headers=_bearer(key),
                                      json={"model": "res/mixed", "messages": HELLO})
    assert explained.status_code == 200, explained.text
    assert {c["provider"]: c["rejected_by"] for c in explained.json()["data"]["candidates"]} == {
        "fakeus": "provider jurisdiction is 'us'" + POLICY, "fakeru": None}


async def test_the_accounts_policy_applies_unless_the_key_sets_its_own(stack: Stack) -> None:
    await _funded(stack)
    plain, _ = await _key(stack)
    free, _ = await _key(stack, residency="any")
    assert (await _chat(stack, plain, "res/abroad")).status_code == 200  # cached from here on
    assert await _effective(stack, plain) == {
        "residency": None, "effective": {"residency": "any", "source": "default"}}
    plan = await stack.http.put(f"{stack.url}/v1/accounts/{ACCOUNT}/plan", headers=AUTH,
                                json={"tier": "max", "residency": "ru"})
    assert plan.status_code == 200, plan.text
    assert plan.json()["data"]["residency"] == "ru"
    # In force at the next request, although the key was cached before the plan changed.
    assert (await _chat(stack, plain, "res/abroad")).status_code == 403
    assert (await _chat(stack, plain, "res/mixed")).json()["provider"] == "fakeru"
    assert await _effective(stack, plain) == {
        "residency": None, "effective": {"residency": "ru", "source": "account"}}
    # A key the operator set to "any" keeps going abroad.
    assert (await _chat(stack, free, "res/abroad")).status_code == 200
    assert await _effective(stack, free) == {
        "residency": "any", "effective": {"residency": "any", "source": "key"}}
    # The account's management key cannot make a key looser than the account's plan.
    manager, _ = await _key(stack, tier="mgmt")
    refused = await stack.http.post(f"{stack.url}/v1/keys", headers=_bearer(manager),
                                    json={"tier": "free", "residency": "any"})
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["param"] == "residency"
    made = await stack.http.post(f"{stack.url}/v1/keys", headers=_bearer(manager),
                                 json={"tier": "free"})
    assert made.json()["data"]["effective_residency"] == {"residency": "ru", "source": "account"}
    # PATCH sets and clears a key's own policy.
    patched = await stack.http.patch(f"{stack.url}/v1/keys/{made.json()['data']['id']}",
                                     headers=AUTH, json={"residency": "any"})
    assert patched.json()["data"]["effective_residency"] == {"residency": "any", "source": "key"}
    cleared = await stack.http.patch(f"{stack.url}/v1/keys/{made.json()['data']['id']}",
                                     headers=AUTH, json={"residency": ""})
    assert cleared.json()["data"]["effective_residency"] == {"residency": "ru",
                                                             "source": "account"}


@pytest.mark.parametrize(("method", "path", "body"), [
    ("POST", "/v1/keys", {"account_id": ACCOUNT, "residency": "eu"}),
    ("PUT", f"/v1/accounts/{ACCOUNT}/plan", {"tier": "pro", "residency": "eu"}),
])
async def test_an_unknown_residency_is_a_400_naming_the_field(stack: Stack, method: str,
                                                              path: str,
                                                              body: dict[str, Any]) -> None:
    resp = await stack.http.request(method, f"{stack.url}{path}", headers=AUTH, json=body)
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["param"] == "residency"
    assert resp.json()["error"]["message"] == (
        "residency must be one of ['ru', 'any'] (or empty to clear it), got 'eu'")


async def test_patch_refuses_an_unknown_residency(stack: Stack) -> None:
    _, info = await _key(stack)
    resp = await stack.http.patch(f"{stack.url}/v1/keys/{info['id']}", headers=AUTH,
                                  json={"residency": "abroad"})
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["param"] == "residency"


async def test_models_show_and_filter_by_jurisdiction(stack: Stack) -> None:
    listed = await stack.http.get(f"{stack.url}/v1/models", headers=AUTH)
    found = {m["id"]: m["jurisdictions"] for m in listed.json()["data"]}
    assert (found["res/mixed"], found["res/abroad"], found["res/home"], found["test/echo"]) == (
        ["us", "ru"], ["us", None], ["ru"], [None])
    russian = await stack.http.get(f"{stack.url}/v1/models", headers=AUTH,
                                   params={"jurisdiction": "RU"})
    assert [m["id"] for m in russian.json()["data"]] == ["res/mixed", "res/home"]
    bad = await stack.http.get(f"{stack.url}/v1/models", headers=AUTH,
                               params={"jurisdiction": "russia"})
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "jurisdiction"


async def test_each_generation_records_the_serving_providers_jurisdiction(stack: Stack) -> None:
    await _funded(stack)
    key, _ = await _key(stack)
    served = {}
    for model in ("res/home", "res/abroad", "test/echo"):
        resp = await _chat(stack, key, model, provider={"order": ["fakeus"]})
        assert resp.status_code == 200, resp.text
        served[model] = resp.json()["id"]
    shown = {}
    for model, gen in served.items():
        stats = await stack.http.get(f"{stack.url}/v1/generation", params={"id": gen},
                                     headers=_bearer(key))
        assert stats.status_code == 200, stats.text
        shown[model] = stats.json()["data"]["jurisdiction"]
    assert shown == {"res/home": "ru", "res/abroad": "us", "test/echo": None}
    with sqlite3.connect(stack.data_dir / "xrouter.sqlite3") as conn:
        rows = dict(conn.execute("SELECT id, jurisdiction FROM generations").fetchall())
    conn.close()
    assert {model: rows[gen] for model, gen in served.items()} == {
        "res/home": "ru", "res/abroad": "us", "test/echo": ""}


async def test_the_origins_key_creation_takes_a_residency_too(stack: Stack) -> None:
    origin = await stack.http.post(f"{stack.url}/v1/auth/key", headers=AUTH, json={
        "label": "origin", "account_id": ACCOUNT, "residency": "ru"})
    assert origin.status_code == 201, origin.text
    made = await stack.http.get(f"{stack.url}/v1/keys/{origin.json()['data']['id']}",
                                headers=AUTH)
    assert made.json()["data"]["effective_residency"] == {"residency": "ru", "source": "key"}
