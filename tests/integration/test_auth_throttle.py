"""The throttle on failed authentication per client address, on a real gateway and router:
after the documented number of 401s, 429 with Retry-After, even for a valid key, without the
router deciding; X-Forwarded-For counts only from a trusted proxy."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.openai_upstream import FakeOpenAI
from tests.support import MASTER_KEY, gateway_settings, router_settings, running_gateway, running_router

HELLO = {"model": "demo", "messages": [{"role": "user", "content": "hi"}]}
GOOD = {"Authorization": f"Bearer {MASTER_KEY}"}
BAD = {"Authorization": "Bearer sk-not-a-key"}
LIMIT = 3


@pytest.fixture
def overrides() -> dict[str, Any]:
    return {}


@pytest.fixture
async def gateway(catalog: Path, upstream: FakeOpenAI, overrides: dict[str, Any]
                  ) -> AsyncIterator[tuple[str, httpx.AsyncClient]]:
    async with running_router(router_settings(catalog)) as router:
        settings = gateway_settings(f"127.0.0.1:{router.server.port}",
                                    auth_failures_per_minute=LIMIT, **overrides)
        async with running_gateway(settings) as url, httpx.AsyncClient(timeout=10) as http:
            yield url, http


async def _chat(gw: tuple[str, httpx.AsyncClient], headers: dict[str, str]) -> httpx.Response:
    url, http = gw
    return await http.post(f"{url}/v1/chat/completions", json=HELLO, headers=headers)


def _throttled(resp: httpx.Response) -> None:
    assert resp.status_code == 429, resp.text
    assert 1 <= int(resp.headers["retry-after"]) <= 60
    assert resp.json() == {"error": {
        "message": "Too many failed authentications from this address; retry after the time "
                   "in Retry-After", "type": "rate_limit_error", "code": 429, "param": None,
        "metadata": {}}}


async def test_after_the_limit_of_401s_every_request_is_429(
        gateway: tuple[str, httpx.AsyncClient]) -> None:
    assert (await _chat(gateway, GOOD)).status_code == 200  # successes do not count
    for _ in range(LIMIT):
        assert (await _chat(gateway, BAD)).status_code == 401
    _throttled(await _chat(gateway, BAD))
    # A valid key from the same address is refused too: the router is not asked.
    _throttled(await _chat(gateway, GOOD))
    url, http = gateway
    resp = await http.get(f"{url}/v1/key", headers=GOOD)
    _throttled(resp)
    resp = await http.post(f"{url}/v1/messages", headers={"x-api-key": MASTER_KEY},
                           json={**HELLO, "max_tokens": 5})
    assert resp.status_code == 429
    assert resp.json()["type"] == "error"
    assert resp.json()["error"]["type"] == "rate_limit_error"


async def test_missing_and_malformed_keys_count_too(
        gateway: tuple[str, httpx.AsyncClient]) -> None:
    url, http = gateway
    cases: list[dict[bytes, bytes]] = [{}, {b"Authorization": b"Basic x"},
                                       {b"Authorization": b"Bearer \xff"}]
    for headers in cases:
        resp = await http.post(f"{url}/v1/chat/completions", json=HELLO, headers=headers)
        assert resp.status_code == 401
    _throttled(await _chat(gateway, GOOD))


async def test_forwarded_for_is_ignored_without_trusted_proxies(
        gateway: tuple[str, httpx.AsyncClient]) -> None:
    for i in range(LIMIT):
        resp = await _chat(gateway, {**BAD, "X-Forwarded-For": f"203.0.113.{i}"})
        assert resp.status_code == 401
    # Every failure counted against the socket peer, whatever the header claimed.
    _throttled(await _chat(gateway, {**GOOD, "X-Forwarded-For": "198.51.100.9"}))


@pytest.mark.parametrize("overrides", [{"trusted_proxies": ("127.0.0.1",)}])
async def test_forwarded_for_from_a_trusted_proxy_names_the_client(
        gateway: tuple[str, httpx.AsyncClient]) -> None:
    attacker = {**BAD, "X-Forwarded-For": "203.0.113.7"}
    for _ in range(LIMIT):
        assert (await _chat(gateway, attacker)).status_code == 401
    _throttled(await _chat(gateway, {**GOOD, "X-Forwarded-For": "203.0.113.7"}))
    # Another client behind the same proxy is not affected.
    resp = await _chat(gateway, {**GOOD, "X-Forwarded-For": "198.51.100.9"})
    assert resp.status_code == 200
