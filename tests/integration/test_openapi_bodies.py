"""The OpenAPI document is true: every documented route is called for real through the gateway
(with a real key made through the management API), and each JSON answer is validated against
the schema /openapi.json gives for its route, method and status; each SSE event of a stream
against the stream's event schema. The shapes: tests/unit/test_openapi.py."""

from __future__ import annotations

import base64
import hashlib
import time
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.openai_upstream import FakeOpenAI
from tests.integration.conftest import AUTH, Stack
from tests.openapi_support import Spec, sse_events
from tests.support import write_catalog

HELLO = [{"role": "user", "content": "hello there"}]
PARAMS = {"type": "object", "properties": {"city": {"type": "string"}}}
CHAT_TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": PARAMS}}]
RESPONSES_TOOLS = [{"type": "function", "name": "get_weather", "parameters": PARAMS}]
ANTHROPIC_TOOLS = [{"name": "get_weather", "input_schema": PARAMS}]
# The deepseek scenario answers with reasoning, whole and streamed.
THINKER = """
[[models]]
id = "test/thinker"
name = "test/thinker"
aliases = []
  [[models.deployments]]
  provider = "fake"
  upstream_model = "fake-deepseek-reasoner"
  capabilities = ["streaming"]
  price = { prompt = "100", completion = "200" }
  context_length = 16000
"""


@pytest.fixture
def catalog(tmp_path: Path, upstream: FakeOpenAI) -> Path:
    path = write_catalog(tmp_path, upstream.base_url)
    path.write_text(path.read_text(encoding="utf-8") + THINKER, encoding="utf-8")
    return path


class Client:
    """Calls a route and checks the answer against the document."""

    def __init__(self, stack: Stack, spec: Spec, key: str = "") -> None:
        self.stack, self.spec = stack, spec
        self.key = {"Authorization": f"Bearer {key}"}

    async def call(self, method: str, template: str, status: int = 200, path: str = "",
                   headers: dict[str, str] | None = None, **kwargs: Any) -> Any:
        resp = await self.stack.http.request(method.upper(), self.stack.url + (path or template),
                                             headers=self.key if headers is None else headers,
                                             **kwargs)
        assert resp.status_code == status, resp.text
        body = resp.json()
        self.spec.check(template, method, status, body)
        return body

    async def stream(self, path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        """The stream's events, each checked; at least its end arrived."""
        lines: list[str] = []
        async with self.stack.http.stream("POST", self.stack.url + path, headers=self.key,
                                          json={**body, "stream": True}) as resp:
            assert resp.status_code == 200
            assert resp.headers["content-type"] == "text/event-stream"
            lines = [line async for line in resp.aiter_lines() if line]
        assert self.spec.check_stream(path, "post", lines) >= 2
        return list(sse_events(lines))


async def _management(c: Client) -> tuple[str, str]:
    """Credits, keys (made, listed, changed, deleted) and plans; the new key and its id."""
    await c.call("post", "/v1/credits", headers=AUTH,
                 json={"account_id": "acct-1", "amount": "5"})
    made = await c.call("post", "/v1/keys", 201, headers=AUTH, json={
        "account_id": "acct-1", "tier": "pro", "name": "app", "limit": "3",
        "expires_at": "2099-01-01T00:00:00Z"})
    assert made["data"]["limit"] == 3 and made["data"]["expires_at"] is not None
    origin = await c.call("post", "/v1/auth/key", 201, headers=AUTH,
                          json={"label": "origin", "account_id": "acct-1"})
    other = await c.call("post", "/v1/keys", 201, headers=AUTH, json={"account_id": "acct-1"})
    one = "/v1/keys/{key_id}"
    changed = await c.call("patch", one, path=f"/v1/keys/{other['data']['id']}", headers=AUTH,
                           json={"disabled": True, "allowed_models": ["test/echo"],
                                 "allowed_ips": ["127.0.0.1"], "residency": "ru",
                                 "requests_per_minute": 10})
    assert changed["data"]["allowed_ips"] == ["127.0.0.1"]
    await c.call("get", one, path=f"/v1/keys/{other['data']['id']}", headers=AUTH)
    listed = await c.call("get", "/v1/keys", headers=AUTH, params={"account_id": "acct-1"})
    assert len(listed["data"]) == 3
    assert await c.call("delete", one, path=f"/v1/keys/{other['data']['id']}",
                        headers=AUTH) == {"data": {"deleted": True}}
    assert await c.call("delete", "/v1/auth/key/{key_id}", headers=AUTH,
                        path=f"/v1/auth/key/{origin['data']['id']}") == {
        "data": {"deleted": True}}
    plan = "/v1/accounts/{account_id}/plan"
    assert (await c.call("get", plan, path="/v1/accounts/acct-1/plan", headers=AUTH))[
        "data"]["is_default"] is True
    await c.call("put", plan, path="/v1/accounts/acct-2/plan", headers=AUTH,
                 json={"tier": "pro", "requests_per_minute": 1000, "residency": "any"})
    return made["key"], made["data"]["id"]


async def _chat(c: Client) -> str:
    """Chat completions, whole and streamed, with text, tool calls, reasoning and a failure
    after the first token; the first generation's id."""
    first = await c.call("post", "/v1/chat/completions",
                         json={"model": "test/echo", "messages": HELLO})
    tools = await c.call("post", "/v1/chat/completions",
                         json={"model": "test/tools", "messages": HELLO, "tools": CHAT_TOOLS})
    assert tools["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "get_weather"
    thought = await c.call("post", "/v1/chat/completions",
                           json={"model": "test/thinker", "messages": HELLO})
    assert thought["choices"][0]["message"]["reasoning_details"][0]["text"]
    deltas: set[str] = set()
    for body in ({"model": "test/echo", "messages": HELLO},
                 {"model": "test/tools", "messages": HELLO, "tools": CHAT_TOOLS},
                 {"model": "test/thinker", "messages": HELLO}):
        for e in await c.stream("/v1/chat/completions", body):
            deltas |= {k for choice in e["data"]["choices"] for k in choice["delta"]}
    assert deltas == {"role", "content", "tool_calls", "reasoning", "reasoning_details"}
    failed = await c.stream("/v1/chat/completions",
                            {"model": "test/stream-error", "messages": HELLO})
    assert failed[-2]["data"]["error"]["code"] == 502
    return str(first["id"])


async def _completions_and_embeddings(c: Client) -> None:
    await c.call("post", "/v1/completions", json={"model": "test/echo", "prompt": "hi"})
    streamed = await c.stream("/v1/completions",
                              {"model": "test/echo", "prompt": "hi", "echo": True})
    assert streamed[0]["data"]["choices"][0]["text"].startswith("hi")
    failed = await c.stream("/v1/completions", {"model": "test/stream-error", "prompt": "hi"})
    # A text_completion error chunk: text, not a chat delta.
    assert failed[-2]["data"]["choices"] == [
        {"text": "", "index": 0, "logprobs": None, "finish_reason": "error"}]
    for encoding in ("float", "base64"):
        body = await c.call("post", "/v1/embeddings", json={
            "model": "test/embed", "input": ["a", "b"], "encoding_format": encoding})
        assert isinstance(body["data"][0]["embedding"], list if encoding == "float" else str)


async def _responses(c: Client) -> None:
    whole: list[dict[str, Any]] = [
        {"model": "test/echo", "input": "hello", "metadata": {"a": "b"}},
        {"model": "test/tools", "input": "hello", "tools": RESPONSES_TOOLS},
        {"model": "demo", "input": "hello", "text": {"format": {"type": "json_object"}}},
        {"model": "test/thinker", "input": "hello", "reasoning": {"effort": "low"}}]
    for body in whole:
        await c.call("post", "/v1/responses", json=body)
    kinds: set[str] = set()
    for model in ("test/echo", "test/tools", "test/thinker", "test/stream-error"):
        tools = {"tools": RESPONSES_TOOLS} if model == "test/tools" else {}
        events = await c.stream("/v1/responses", {"model": model, "input": "hello", **tools})
        kinds |= {e["data"]["type"] for e in events}
    assert kinds == {f"response.{k}" for k in (
        "created", "in_progress", "completed", "failed", "output_item.added",
        "output_item.done", "content_part.added", "content_part.done", "output_text.delta",
        "output_text.done", "reasoning_text.delta", "reasoning_text.done",
        "function_call_arguments.delta", "function_call_arguments.done")}


async def _messages(c: Client) -> None:
    base = {"max_tokens": 256, "messages": HELLO}
    blocks: set[str] = set()
    for model, more in (("test/echo", {}), ("test/tools", {"tools": ANTHROPIC_TOOLS}),
                        ("test/thinker", {})):
        body = await c.call("post", "/v1/messages", json={"model": model, **base, **more})
        blocks |= {b["type"] for b in body["content"]}
    assert blocks == {"text", "tool_use", "thinking"}
    kinds: set[str] = set()
    for model, more in (("test/echo", {}), ("test/tools", {"tools": ANTHROPIC_TOOLS}),
                        ("test/thinker", {}), ("test/stream-error", {})):
        events = await c.stream("/v1/messages", {"model": model, **base, **more})
        kinds |= {e["data"]["type"] for e in events if e["data"]["type"] != "ping"}
        kinds |= {e["data"]["delta"]["type"] for e in events
                  if e["data"]["type"] == "content_block_delta"}
    assert kinds == {"message_start", "content_block_start", "content_block_delta",
                     "content_block_stop", "message_delta", "message_stop", "error",
                     "text_delta", "thinking_delta", "input_json_delta"}
    await c.call("post", "/v1/messages", 401, headers={}, json={"model": "test/echo", **base})


async def _info(c: Client, key_id: str, generation_id: str) -> None:
    """Models, routing, health, the calling key's views, and what the traffic left."""
    await c.call("get", "/v1/models")
    await c.call("get", "/v1/models/{model_id}", path="/v1/models/test/echo")
    await c.call("get", "/v1/models/{model_id}", 404, path="/v1/models/ghost")
    await c.call("get", "/v1/parameters/{model}", path="/v1/parameters/test/tools")
    plan = await c.call("post", "/v1/route/explain", json={
        "model": "test/echo", "models": ["test/tools"], "messages": HELLO, "tools": CHAT_TOOLS})
    assert {c["eligible"] for c in plan["data"]["candidates"]} == {True, False}
    statuses = await c.call("get", "/v1/providers/status")
    assert statuses["data"]["fake"]["latency"] is not None  # traffic filled them in
    await c.call("get", "/health/providers")
    await c.call("get", "/health")
    await c.call("get", "/livez")
    await c.call("get", "/readyz")
    metrics = await c.stack.http.get(f"{c.stack.url}/metrics")
    c.spec.check("/metrics", "get", 200, metrics.text, media="text/plain")
    assert (await c.call("get", "/v1/key"))["data"]["id"] == key_id
    await c.call("get", "/v1/auth/key")
    await c.call("get", "/v1/credits")
    await c.call("get", "/v1/generation", params={"id": generation_id})
    page = await c.call("get", "/v1/generations", params={"limit": "1"})
    assert page["data"][0]["key_id"] == key_id and page["next_before"] is not None
    await c.call("get", "/v1/generations", 400, params={"limit": "0"})
    top_ups = await c.call("get", "/v1/credits/topups", headers=AUTH,
                           params={"account_id": "acct-1"})
    assert top_ups["data"][0]["amount"] == 5
    await c.call("get", "/v1/credits/topups", 403)
    accounts = await c.call("get", "/v1/accounts", headers=AUTH)
    assert [a["account_id"] for a in accounts["data"]] == ["acct-1", "acct-2"]
    await c.call("get", "/v1/accounts", 403)
    report = await c.call("get", "/v1/usage", headers=AUTH, params={
        "group_by": "day,key,model,provider", "account_id": "acct-1"})
    assert {"day", "key", "model", "provider"} <= report["data"][0].keys()
    usage_csv = await c.stack.http.get(f"{c.stack.url}/v1/usage", headers=AUTH, params={
        "group_by": "model", "account_id": "acct-1", "format": "csv"})
    c.spec.check("/v1/usage", "get", 200, usage_csv.text, media="text/csv")
    month = time.strftime("%Y-%m", time.gmtime(time.time() + 3 * 3600))  # Moscow's month
    statement = await c.call("get", "/v1/statement", params={"month": month})
    assert generation_id in [line["generation_id"] for line in statement["data"]["lines"]]
    csv_answer = await c.stack.http.get(f"{c.stack.url}/v1/statement", headers=c.key,
                                        params={"month": month, "format": "csv"})
    c.spec.check("/v1/statement", "get", 200, csv_answer.text, media="text/csv")
    await c.call("post", "/v1/chat/completions", 401, headers={}, json={"model": "test/echo"})


async def _sessions_and_oauth(c: Client) -> None:
    """The console's sign-in, the OAuth consent page, its approval and the code's exchange."""
    http, url = c.stack.http, c.stack.url
    made = await c.call("post", "/v1/keys", 201, headers=AUTH,
                        json={"account_id": "acct-1", "tier": "mgmt"})
    signed = await http.post(f"{url}/console/session", json={"key": made["key"]})
    c.spec.check("/console/session", "post", 200, signed.json())
    http.cookies.clear()
    token = signed.headers["set-cookie"].removeprefix("xr_session=").partition(";")[0]
    cookie = {"Cookie": f"xr_session={token}"}
    csrf = {**cookie, "X-CSRF-Token": signed.json()["data"]["csrf_token"]}
    await c.call("get", "/console/session", headers=cookie)
    verifier = "v" * 43
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode()
    form = {"callback_url": "http://127.0.0.1:9/cb", "code_challenge": challenge.rstrip("="),
            "code_challenge_method": "S256"}
    for name, media in (("consent.js", "text/javascript"), ("consent.css", "text/css"),
                        ("favicon.svg", "image/svg+xml")):
        asset = await http.get(f"{url}/auth/{name}")
        c.spec.check("/auth/{name}", "get", 200, asset.text, media=media)
    page = await http.get(f"{url}/auth", params=form, headers=cookie)
    c.spec.check("/auth", "get", 200, page.text, media="text/html")
    forged = await http.post(f"{url}/auth", data={**form, "csrf_token": "x"}, headers=cookie)
    c.spec.check("/auth", "post", 403, forged.text, media="text/html")
    approved = await http.post(f"{url}/auth", headers=cookie, data={
        **form, "csrf_token": signed.json()["data"]["csrf_token"]})
    assert approved.status_code == 303, approved.text
    code = approved.headers["location"].rpartition("code=")[2]
    await c.call("post", "/v1/auth/keys", headers={}, json={
        "code": code, "code_verifier": verifier, "code_challenge_method": "S256"})
    preflight = await http.options(f"{url}/v1/auth/keys", headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 204
    c.spec.check_empty("/v1/auth/keys", "options", 204, preflight.content, preflight.headers)
    await c.call("delete", "/console/session", headers=csrf)
    http.cookies.clear()


async def _console(c: Client) -> None:
    """The web console's page and assets (text), and its 404 (the JSON error)."""
    http, url = c.stack.http, c.stack.url
    for path in ("/console", "/console/"):
        c.spec.check(path, "get", 200, (await http.get(f"{url}{path}")).text, media="text/html")
    for name, media in (("js/app.js", "text/javascript"), ("console.css", "text/css")):
        asset = await http.get(f"{url}/console/{name}")
        c.spec.check("/console/{name}", "get", 200, asset.text, media=media)
    missing = await http.get(f"{url}/console/nope.js")
    c.spec.check("/console/{name}", "get", 404, missing.json())


async def test_every_documented_answer_is_what_the_document_says(stack: Stack) -> None:
    document = (await stack.http.get(f"{stack.url}/openapi.json")).json()
    spec = Spec(document)
    spec.check("/openapi.json", "get", 200, document)
    key, key_id = await _management(Client(stack, spec))
    c = Client(stack, spec, key)
    generation_id = await _chat(c)
    await _completions_and_embeddings(c)
    await _responses(c)
    await _messages(c)
    await _info(c, key_id, generation_id)
    await _sessions_and_oauth(c)
    await _console(c)
    assert spec.checked == {(path, method) for path, ops in document["paths"].items()
                            for method in ops}
