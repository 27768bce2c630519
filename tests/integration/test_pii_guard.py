"""The personal-data guard through a real gateway and router (embedded mode), in front of the
fake OpenAI upstream: `block` is a 400 naming the kinds before any provider call and charge;
`mask` sends placeholders to a provider outside Russia (what the fake saw is asserted) and
gives the client its values back, whole and streamed (the fake cuts placeholders across
deltas); scope `foreign` leaves Russian providers the original, `always` masks for them too;
a failover from a foreign to a Russian candidate masks only the foreign attempt; /v1/key shows
the policy and unknown values are a 400."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.fakes.openai_upstream import FakeOpenAI
from tests.integration.conftest import AUTH, Stack
from tests.integration.test_residency import EXTRA as RESIDENCY
from tests.integration.test_residency import _bearer
from tests.support import catalog_toml

ACCOUNT = "acct-pii"
PHONE, EMAIL = "+7 (916) 123-45-67", "ivan.petrov@example.ru"
TEXT = f"Позвоните мне: {PHONE}, почта {EMAIL}"
MASKED = "Позвоните мне: [PHONE_1], почта [EMAIL_1]"
# The residency tests' providers (fakeru declared in Russia, fakeus in the USA) and models of
# their own; "fake-echo-split" echoes the last user text four characters a delta.
MODELS = "".join(f"""
[[models]]
id = "pii/{name}"
  [[models.deployments]]
  provider = "{provider}"
  upstream_model = "{upstream}"
  price = {{ prompt = "100", completion = "200" }}
  capabilities = ["streaming", "embeddings"]
""" for name, provider, upstream in (("abroad", "fakeus", "fake-echo-split"),
                                      ("home", "fakeru", "fake-echo-split"),
                                      ("broken-abroad", "fakeus", "fake-500"),
                                      ("embed-abroad", "fakeus", "text-embedding-fake")))


@pytest.fixture
def catalog(tmp_path: Path, upstream: FakeOpenAI) -> Path:
    path = tmp_path / "catalog.toml"
    path.write_text(catalog_toml(upstream.base_url) + RESIDENCY.format(url=upstream.base_url)
                    + MODELS, encoding="utf-8")
    return path


async def _key(stack: Stack, **body: Any) -> tuple[str, dict[str, Any]]:
    """A key of a funded account."""
    funded = await stack.http.post(f"{stack.url}/v1/credits", headers=AUTH,
                                   json={"account_id": ACCOUNT, "amount": "1000"})
    assert funded.status_code == 200, funded.text
    resp = await stack.http.post(f"{stack.url}/v1/keys", headers=AUTH,
                                 json={"account_id": ACCOUNT, "tier": "max", **body})
    assert resp.status_code == 201, resp.text
    return resp.json()["key"], resp.json()["data"]


def _body(model: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": TEXT}], **extra}


async def _chat(stack: Stack, key: str, model: str, **extra: Any) -> httpx.Response:
    return await stack.chat(_body(model, **extra), headers=_bearer(key))


async def _stream(stack: Stack, key: str, model: str) -> tuple[int, list[str], str]:
    """Status, the content of each SSE chunk, and the body of a refusal."""
    pieces: list[str] = []
    async with stack.http.stream("POST", f"{stack.url}/v1/chat/completions",
                                 json={**_body(model), "stream": True},
                                 headers=_bearer(key)) as resp:
        if resp.status_code != 200:
            return resp.status_code, [], (await resp.aread()).decode()
        async for line in resp.aiter_lines():
            if line.startswith("data: {"):
                chunk = orjson.loads(line[6:])
                pieces += [c["delta"].get("content") or "" for c in chunk["choices"]]
    return 200, pieces, ""


def _seen(upstream: FakeOpenAI) -> list[str]:
    """The last user text of each request the fake received, in order."""
    return [r["messages"][-1]["content"] for r in upstream.requests]


def _generations(stack: Stack) -> int:
    with sqlite3.connect(stack.data_dir / "xrouter.sqlite3") as conn:
        count = int(conn.execute("SELECT count(*) FROM generations").fetchone()[0])
    conn.close()
    return count


async def _usage(stack: Stack) -> Any:
    resp = await stack.http.get(f"{stack.url}/v1/credits", headers=AUTH,
                                params={"account_id": ACCOUNT})
    return resp.json()["data"]["total_usage"]


BLOCKED = {"error": {
    "message": "The request carries personal data (email, phone) and the key's personal-data "
               "policy is block: remove it or ask the operator for the mask policy",
    "type": "invalid_request_error", "code": 400, "param": "messages",
    "metadata": {"error_code": "personal_data_blocked", "reasons": ["pii_guard"],
                 "kinds": ["email", "phone"]}}}


async def test_block_is_a_400_naming_the_kinds_before_any_provider_call_or_charge(
        stack: Stack) -> None:
    key, _ = await _key(stack, pii_guard="block")
    usage, generations = await _usage(stack), _generations(stack)
    resp = await _chat(stack, key, "pii/abroad")
    assert resp.status_code == 400, resp.text
    assert resp.json() == BLOCKED
    status, pieces, refusal = await _stream(stack, key, "pii/abroad")
    assert (status, pieces) == (400, [])
    assert orjson.loads(refusal) == BLOCKED
    assert PHONE not in resp.text and EMAIL not in resp.text
    assert stack.upstream.requests == []  # nothing left for a provider
    assert (await _usage(stack), _generations(stack)) == (usage, generations)
    # The same request to a provider in Russia: the scope foreign lets it through, unmasked.
    home = await _chat(stack, key, "pii/home")
    assert home.status_code == 200, home.text
    assert _seen(stack.upstream) == [TEXT]


async def test_mask_sends_placeholders_abroad_and_restores_the_whole_answer(stack: Stack) -> None:
    key, _ = await _key(stack, pii_guard="mask")
    resp = await _chat(stack, key, "pii/abroad")
    assert resp.status_code == 200, resp.text
    assert _seen(stack.upstream) == [MASKED]
    assert resp.json()["choices"][0]["message"]["content"] == f"echo: {TEXT}"
    # Counted and charged as the provider got it (the fake counts a quarter of its characters).
    assert resp.json()["usage"]["prompt_tokens"] == len(MASKED) // 4 + 3


async def test_mask_restores_a_stream_whose_deltas_cut_the_placeholders(stack: Stack) -> None:
    key, _ = await _key(stack, pii_guard="mask")
    status, pieces, _ = await _stream(stack, key, "pii/abroad")
    assert status == 200
    assert "".join(pieces) == f"echo: {TEXT}"
    assert _seen(stack.upstream) == [MASKED]
    # The fake sent four characters a delta: no delta carried a whole placeholder.
    sent = f"echo: {MASKED}"
    cut = [sent[i:i + 4] for i in range(0, len(sent), 4)]
    assert not any("[PHONE_1]" in p or "[EMAIL_1]" in p for p in cut)


async def test_the_scope_decides_whether_a_russian_provider_gets_the_values(stack: Stack) -> None:
    foreign, _ = await _key(stack, pii_guard="mask")
    always, _ = await _key(stack, pii_guard="mask", pii_scope="always")
    for key in (foreign, always):
        resp = await _chat(stack, key, "pii/home")
        assert resp.status_code == 200, resp.text
        assert resp.json()["choices"][0]["message"]["content"] == f"echo: {TEXT}"
    assert _seen(stack.upstream) == [TEXT, MASKED]


async def test_a_failover_masks_only_the_attempt_abroad(stack: Stack) -> None:
    key, _ = await _key(stack, pii_guard="mask")
    resp = await _chat(stack, key, "pii/broken-abroad", models=["pii/home"])
    assert resp.status_code == 200, resp.text
    assert (resp.json()["model"], resp.json()["provider"]) == ("pii/home", "fakeru")
    assert [r["model"] for r in stack.upstream.requests] == ["fake-500", "fake-echo-split"]
    assert _seen(stack.upstream) == [MASKED, TEXT]
    assert resp.json()["choices"][0]["message"]["content"] == f"echo: {TEXT}"


async def test_the_key_shows_its_policy_and_the_accounts_applies_unless_it_sets_one(
        stack: Stack) -> None:
    key, info = await _key(stack)
    assert (info["pii_guard"], info["pii_scope"], info["effective_pii_guard"]) == (
        None, None, {"pii_guard": "off", "pii_scope": "foreign", "source": "default"})
    assert (await _chat(stack, key, "pii/abroad")).status_code == 200  # cached from here on
    plan = await stack.http.put(f"{stack.url}/v1/accounts/{ACCOUNT}/plan", headers=AUTH,
                                json={"tier": "max", "pii_guard": "block"})
    assert plan.status_code == 200, plan.text
    assert (plan.json()["data"]["pii_guard"], plan.json()["data"]["pii_scope"]) == ("block", None)
    me = await stack.http.get(f"{stack.url}/v1/key", headers=_bearer(key))
    assert me.json()["data"]["effective_pii_guard"] == {
        "pii_guard": "block", "pii_scope": "foreign", "source": "account"}
    assert (await _chat(stack, key, "pii/abroad")).json() == BLOCKED
    patched = await stack.http.patch(f"{stack.url}/v1/keys/{info['id']}", headers=AUTH,
                                     json={"pii_guard": "mask"})
    assert patched.json()["data"]["effective_pii_guard"] == {
        "pii_guard": "mask", "pii_scope": "foreign", "source": "key"}
    assert (await _chat(stack, key, "pii/abroad")).status_code == 200
    assert _seen(stack.upstream) == [TEXT, MASKED]
    # The account's management key cannot switch the guard off for a key.
    manager, _ = await _key(stack, tier="mgmt")
    refused = await stack.http.post(f"{stack.url}/v1/keys", headers=_bearer(manager),
                                    json={"tier": "free", "pii_guard": "off"})
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["param"] == "pii_guard"


@pytest.mark.parametrize(("method", "path", "body", "param"), [
    ("POST", "/v1/keys", {"account_id": ACCOUNT, "pii_guard": "redact"}, "pii_guard"),
    ("POST", "/v1/keys", {"account_id": ACCOUNT, "pii_scope": "abroad"}, "pii_scope"),
    ("PUT", f"/v1/accounts/{ACCOUNT}/plan", {"tier": "pro", "pii_guard": "redact"}, "pii_guard"),
])
async def test_an_unknown_policy_is_a_400_naming_the_field(stack: Stack, method: str, path: str,
                                                           body: dict[str, Any],
                                                           param: str) -> None:
    resp = await stack.http.request(method, f"{stack.url}{path}", headers=AUTH, json=body)
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["param"] == param
    _, info = await _key(stack)
    patched = await stack.http.patch(f"{stack.url}/v1/keys/{info['id']}", headers=AUTH,
                                     json={param: "nope"})
    assert patched.status_code == 400, patched.text
    assert patched.json()["error"]["param"] == param


async def test_the_messages_and_responses_apis_go_through_the_same_guard(stack: Stack) -> None:
    key, _ = await _key(stack, pii_guard="mask")
    messages = await stack.http.post(
        f"{stack.url}/v1/messages", headers={"x-api-key": key, "anthropic-version": "2023-06-01"},
        json={"model": "pii/abroad", "max_tokens": 100,
              "messages": [{"role": "user", "content": TEXT}]})
    assert messages.status_code == 200, messages.text
    assert messages.json()["content"] == [{"type": "text", "text": f"echo: {TEXT}"}]
    responses = await stack.http.post(f"{stack.url}/v1/responses", headers=_bearer(key),
                                      json={"model": "pii/abroad", "input": TEXT})
    assert responses.status_code == 200, responses.text
    output = responses.json()["output"]
    assert [p["text"] for item in output for p in item.get("content", [])] == [f"echo: {TEXT}"]
    assert _seen(stack.upstream) == [MASKED, MASKED]


@pytest.mark.parametrize("router_overrides", [{"pii_ner": "natasha"}])
async def test_with_the_ner_detector_a_name_is_masked_and_restored(stack: Stack) -> None:
    key, _ = await _key(stack, pii_guard="mask")
    named = "Меня зовут Иван Петрович Сидоров, звоните на " + PHONE
    resp = await stack.chat({"model": "pii/abroad", "messages": [
        {"role": "user", "content": named}]}, headers=_bearer(key))
    assert resp.status_code == 200, resp.text
    assert _seen(stack.upstream) == ["Меня зовут [PERSON_1], звоните на [PHONE_1]"]
    assert resp.json()["choices"][0]["message"]["content"] == f"echo: {named}"


async def test_embeddings_inputs_are_masked_or_blocked_too(stack: Stack) -> None:
    masking, _ = await _key(stack, pii_guard="mask")
    body = {"model": "pii/embed-abroad", "input": [TEXT, "без данных"]}
    resp = await stack.http.post(f"{stack.url}/v1/embeddings", headers=_bearer(masking), json=body)
    assert resp.status_code == 200, resp.text
    assert stack.upstream.requests[-1]["input"] == [MASKED, "без данных"]
    # The fake's vector starts with the length of the input it got: the masked one.
    assert resp.json()["data"][0]["embedding"][0] == float(len(MASKED))
    blocking, _ = await _key(stack, pii_guard="block")
    refused = await stack.http.post(f"{stack.url}/v1/embeddings", headers=_bearer(blocking),
                                    json=body)
    assert refused.status_code == 400, refused.text
    assert refused.json() == {"error": {**BLOCKED["error"], "param": "input"}}
    assert len(stack.upstream.requests) == 1
