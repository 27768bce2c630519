"""Bad input and unavailable parts: the documented JSON error shape and status, never a 500."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.openai_upstream import FakeOpenAI
from tests.integration.conftest import AUTH, Stack
from tests.support import gateway_settings, router_settings, running_gateway, running_router

HELLO = [{"role": "user", "content": "hi"}]


def _err(resp: httpx.Response, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/json"
    body = resp.json()
    assert set(body) == {"error"}
    err = body["error"]
    assert set(err) == {"message", "type", "code", "param", "metadata"}
    assert err["code"] == status
    return err  # type: ignore[no-any-return]


@pytest.mark.parametrize(("body", "param", "fragment"), [
    ({"model": "demo", "messages": HELLO, "temperature": 2.5}, "temperature", "<= 2.0"),
    ({"model": "demo", "messages": HELLO, "top_p": 0}, "top_p", "> 0.0"),
    ({"model": "demo", "messages": HELLO, "max_tokens": 0}, "max_tokens", ">= 1"),
    ({"model": "demo", "messages": HELLO, "max_tokens": "ten"}, "max_tokens", "Expected `int"),
    ({"model": "demo", "messages": HELLO, "n": 2}, "n", "<= 1"),
    ({"model": "demo", "messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role",
     "Invalid enum value"),
    ({"model": "demo", "messages": []}, "messages", "length >= 1"),
    ({"model": "demo", "messages": HELLO, "prompt": "x"}, "messages", "not both"),
    ({"model": "demo"}, "messages", "is required"),
    ({"messages": HELLO}, "model", "'model' is required"),
    ({"model": "demo", "messages": HELLO, "tool_choice": "auto"}, "tool_choice", "only allowed"),
    ({"model": "demo", "messages": HELLO, "provider": {"sortt": "price"}}, "provider.sortt",
     "unknown field"),
    ({"model": "demo", "messages": [{"role": "tool", "content": "x"}]},
     "messages[0].tool_call_id", "tool_call_id"),
    ({"model": "demo", "messages": [{"role": "user", "content": [{"type": "text"}]}]},
     "messages[0].content[0].text", "needs 'text'"),
    ({"model": "demo", "messages": HELLO, "stop": ["a"] * 17}, "stop", "length <= 16"),
])
async def test_invalid_requests_are_400_naming_the_field(stack: Stack, body: dict[str, Any],
                                                         param: str, fragment: str) -> None:
    err = _err(await stack.chat(body), 400)
    assert err["type"] == "invalid_request_error"
    assert err["param"] == param
    assert fragment in err["message"]


async def test_invalid_json_and_non_object_bodies(stack: Stack) -> None:
    url = f"{stack.url}/v1/chat/completions"
    err = _err(await stack.http.post(url, content=b'{"model": ', headers=AUTH), 400)
    assert err["message"].startswith("Invalid JSON in request body")
    err = _err(await stack.http.post(url, content=b"[1, 2]", headers=AUTH), 400)
    assert err["message"] == "Request body must be a JSON object"


async def test_oversized_body_is_413(stack: Stack) -> None:
    big = [{"role": "user", "content": "x" * (70 * 1024)}]
    err = _err(await stack.chat({"model": "demo", "messages": big}), 413)
    assert err["type"] == "request_too_large"

    async def chunks() -> Any:
        for _ in range(80):
            yield b" " * 1024

    url = f"{stack.url}/v1/chat/completions"
    _err(await stack.http.post(url, content=chunks(), headers=AUTH), 413)


async def test_authentication(stack: Stack) -> None:
    err = _err(await stack.chat({"model": "demo", "messages": HELLO}, headers={}), 401)
    assert err["type"] == "authentication_error"
    err = _err(await stack.chat({"model": "demo", "messages": HELLO},
                                headers={"Authorization": "Bearer nope"}), 401)
    assert err["message"] == "Invalid API key"


async def test_unknown_model_is_404(stack: Stack) -> None:
    err = _err(await stack.chat({"model": "nobody/nothing", "messages": HELLO}), 404)
    assert err["param"] == "model" and err["type"] == "not_found_error"
    err = _err(await stack.chat({"model": "demo", "models": ["ghost"], "messages": HELLO}), 404)
    assert err["param"] == "models"


async def test_unknown_route_and_method(stack: Stack) -> None:
    _err(await stack.http.get(f"{stack.url}/v1/nothing"), 404)
    _err(await stack.http.get(f"{stack.url}/v1/chat/completions"), 405)


async def test_no_router_means_503_and_not_ready() -> None:
    async with running_gateway(gateway_settings("127.0.0.1:1", router_retries=1)) as url, \
            httpx.AsyncClient(timeout=10) as http:
        resp = await http.post(f"{url}/v1/chat/completions", headers=AUTH,
                               json={"model": "demo", "messages": HELLO})
        err = _err(resp, 503)
        assert resp.headers["retry-after"] == "1"
        assert err["type"] == "service_unavailable"
        _err(await http.get(f"{url}/readyz"), 503)
        health = await http.get(f"{url}/health")
        assert health.status_code == 503
        assert health.json() == {"status": "unhealthy", "components": {
            "api": "up", "router": "down", "db": "unknown", "cache": "unknown", "providers": {}}}
        assert (await http.get(f"{url}/livez")).json() == {"status": "alive"}


async def test_gateway_deadline_is_408(catalog: Path, upstream: FakeOpenAI) -> None:
    async with running_router(router_settings(catalog, attempt_timeout=30.0)) as router:
        settings = gateway_settings(f"127.0.0.1:{router.server.port}", request_timeout=1.0)
        async with running_gateway(settings) as url, httpx.AsyncClient(timeout=10) as http:
            resp = await http.post(f"{url}/v1/chat/completions", headers=AUTH,
                                   json={"model": "test/slow-only", "messages": HELLO})
            err = _err(resp, 408)
            assert err["type"] == "timeout_error"
