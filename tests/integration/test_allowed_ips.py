"""IP allow-lists of keys through a real gateway and router (embedded mode): set and shown by
the management API, checked by the router against the address the gateway saw on every
authenticated endpoint before any limit or reservation, X-Forwarded-For honoured only from a
trusted proxy, and changes in force at the next request."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.integration.conftest import AUTH, Stack
from tests.support import clear_of_minute_boundary

HELLO = [{"role": "user", "content": "hello there"}]
CHAT = {"model": "test/echo", "messages": HELLO}
TRUSTED = [{"trusted_proxies": ("127.0.0.1",)}]


def refusal(address: str) -> dict[str, Any]:
    return {"error": {
        "message": f"This API key may not be used from {address}: the address is not allowed "
                   "for this key",
        "type": "permission_error", "code": 403, "param": None, "metadata": {}}}


def _bearer(key: str, forwarded_for: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {key}"}
    if forwarded_for is not None:
        headers["X-Forwarded-For"] = forwarded_for
    return headers


async def _top_up(stack: Stack, account: str = "acct-ip") -> None:
    resp = await stack.http.post(f"{stack.url}/v1/credits", headers=AUTH,
                                 json={"account_id": account, "amount": "100"})
    assert resp.status_code == 200, resp.text


async def _key(stack: Stack, **body: Any) -> tuple[str, dict[str, Any]]:
    resp = await stack.http.post(f"{stack.url}/v1/keys", headers=AUTH,
                                 json={"account_id": "acct-ip", "tier": "pro", **body})
    assert resp.status_code == 201, resp.text
    return resp.json()["key"], resp.json()["data"]


async def _patch(stack: Stack, key_id: str, **body: Any) -> httpx.Response:
    return await stack.http.patch(f"{stack.url}/v1/keys/{key_id}", headers=AUTH, json=body)


async def test_the_list_is_set_and_shown_in_canonical_form(stack: Stack) -> None:
    _, info = await _key(stack, allowed_ips=["127.0.0.1", "2001:DB8::/32", "::ffff:10.0.0.0/104"])
    canonical = ["127.0.0.1", "2001:db8::/32", "10.0.0.0/8"]
    assert info["allowed_ips"] == canonical
    one = await stack.http.get(f"{stack.url}/v1/keys/{info['id']}", headers=AUTH)
    assert one.json()["data"]["allowed_ips"] == canonical
    listed = await stack.http.get(f"{stack.url}/v1/keys", headers=AUTH,
                                  params={"account_id": "acct-ip"})
    assert [k["allowed_ips"] for k in listed.json()["data"]] == [canonical]
    _, anywhere = await _key(stack)
    assert anywhere["allowed_ips"] is None
    # The origin's POST /v1/auth/key takes the list too.
    origin = await stack.http.post(f"{stack.url}/v1/auth/key", headers=AUTH, json={
        "label": "origin", "account_id": "acct-ip", "allowed_ips": ["192.0.2.0/24"]})
    assert origin.status_code == 201, origin.text
    made = await stack.http.get(f"{stack.url}/v1/keys/{origin.json()['data']['id']}",
                                headers=AUTH)
    assert made.json()["data"]["allowed_ips"] == ["192.0.2.0/24"]


async def test_a_listed_address_is_served_and_another_is_refused_everywhere(
        stack: Stack) -> None:
    await _top_up(stack)
    here, info = await _key(stack, allowed_ips=["192.0.2.1", "127.0.0.0/8"])
    resp = await stack.chat(CHAT, headers=_bearer(here))
    assert resp.status_code == 200, resp.text
    me = await stack.http.get(f"{stack.url}/v1/key", headers=_bearer(here))
    assert me.json()["data"]["allowed_ips"] == ["192.0.2.1", "127.0.0.0/8"]
    # A management key too: management calls are checked like every other.
    elsewhere, _ = await _key(stack, tier="mgmt", allowed_ips=["192.0.2.0/24", "2001:db8::/32"])
    url, http, auth = stack.url, stack.http, _bearer(elsewhere)
    calls = [
        http.post(f"{url}/v1/chat/completions", headers=auth, json=CHAT),
        http.post(f"{url}/v1/chat/completions", headers=auth, json={**CHAT, "stream": True}),
        http.post(f"{url}/v1/completions", headers=auth, json={"model": "test/echo",
                                                               "prompt": "hi"}),
        http.post(f"{url}/v1/responses", headers=auth, json={"model": "test/echo",
                                                             "input": "hi"}),
        http.post(f"{url}/v1/embeddings", headers=auth, json={"model": "test/embed",
                                                              "input": "hi"}),
        http.post(f"{url}/v1/route/explain", headers=auth, json=CHAT),
        http.get(f"{url}/v1/key", headers=auth),
        http.get(f"{url}/v1/credits", headers=auth),
        http.get(f"{url}/v1/generation", headers=auth, params={"id": resp.json()["id"]}),
        http.get(f"{url}/v1/keys", headers=auth),
        http.patch(f"{url}/v1/keys/{info['id']}", headers=auth, json={"disabled": True}),
    ]
    for call in calls:
        refused = await call
        assert (refused.status_code, refused.json()) == (403, refusal("127.0.0.1")), refused.url
    anthropic = await http.post(f"{url}/v1/messages", json={**CHAT, "max_tokens": 5},
                                headers={"x-api-key": elsewhere,
                                         "anthropic-version": "2023-06-01"})
    assert anthropic.status_code == 403
    assert anthropic.json()["error"] == {"type": "permission_error",
                                         "message": refusal("127.0.0.1")["error"]["message"]}
    # Nothing reached a provider but the one allowed chat; the refused PATCH changed nothing.
    assert stack.upstream.models_called() == ["fake-echo"]
    again = await stack.chat(CHAT, headers=_bearer(here))
    assert again.status_code == 200, again.text


async def test_x_forwarded_for_from_an_untrusted_peer_cannot_spoof_the_address(
        stack: Stack) -> None:
    await _top_up(stack)
    key, _ = await _key(stack, allowed_ips=["192.0.2.0/24"])
    for claimed in ("192.0.2.7", "192.0.2.7, 192.0.2.8", "127.0.0.1, 192.0.2.7"):
        resp = await stack.chat(CHAT, headers=_bearer(key, forwarded_for=claimed))
        assert (resp.status_code, resp.json()) == (403, refusal("127.0.0.1"))
    assert stack.upstream.models_called() == []


@pytest.mark.parametrize("gateway_overrides", TRUSTED)
async def test_a_trusted_proxys_x_forwarded_for_names_the_client(stack: Stack) -> None:
    await _top_up(stack)
    key, _ = await _key(stack, allowed_ips=["192.0.2.0/24", "2001:db8::/32"])
    for client in ("192.0.2.7", "2001:db8::7", "::ffff:192.0.2.9",
                   # the right-most address the proxy did not add itself is the client's
                   "198.51.100.1, 192.0.2.7", "192.0.2.7, 127.0.0.1"):
        resp = await stack.chat(CHAT, headers=_bearer(key, forwarded_for=client))
        assert resp.status_code == 200, (client, resp.text)
    for client, seen in (("198.51.100.7", "198.51.100.7"), ("192.0.2.7, 198.51.100.7",
                                                              "198.51.100.7"),
                         ("2001:db9::1", "2001:db9::1"), ("not-an-address", "not-an-address")):
        resp = await stack.chat(CHAT, headers=_bearer(key, forwarded_for=client))
        assert (resp.status_code, resp.json()) == (403, refusal(seen)), client
    # Without the header the client is the proxy itself, which is not on the list.
    resp = await stack.chat(CHAT, headers=_bearer(key))
    assert (resp.status_code, resp.json()) == (403, refusal("127.0.0.1"))
    # A header that cannot travel as gRPC metadata makes the address unknown: refused, no 500.
    resp = await stack.http.post(f"{stack.url}/v1/chat/completions", json=CHAT, headers={
        b"Authorization": f"Bearer {key}".encode(), b"X-Forwarded-For": b"192.0.2.7\xff"})
    assert (resp.status_code, resp.json()) == (403, refusal("an unknown address"))


@pytest.mark.parametrize("gateway_overrides", TRUSTED)
async def test_a_refusal_comes_before_any_limit_or_reservation(stack: Stack) -> None:
    await _top_up(stack)
    key, _ = await _key(stack, allowed_ips=["192.0.2.0/24"], requests_per_minute=1)
    outside = _bearer(key, forwarded_for="198.51.100.7")
    await clear_of_minute_boundary()
    for body in (CHAT, {**CHAT, "stream": True}):
        for _ in range(3):
            assert (await stack.chat(body, headers=outside)).status_code == 403
    embed = await stack.http.post(f"{stack.url}/v1/embeddings", headers=outside,
                                  json={"model": "test/embed", "input": "hi"})
    assert embed.status_code == 403
    assert stack.upstream.models_called() == []
    inside = _bearer(key, forwarded_for="192.0.2.7")
    first = await stack.chat(CHAT, headers=inside)
    assert first.status_code == 200, first.text
    assert first.headers["x-ratelimit-remaining"] == "0"  # the refusals counted nothing
    assert (await stack.chat(CHAT, headers=inside)).status_code == 429


@pytest.mark.parametrize(("body", "param", "message"), [
    ({"allowed_ips": ["192.0.2.1", "nope"]}, "allowed_ips",
     "allowed_ips: 'nope' is not an IP address or CIDR network"),
    ({"allowed_ips": ["10.1.2.3/8"]}, "allowed_ips",
     "allowed_ips: '10.1.2.3/8' is a network with host bits set (the network is 10.0.0.0/8)"),
    ({"allowed_ips": [f"10.0.{i}.0/24" for i in range(101)]}, "allowed_ips",
     "allowed_ips may hold at most 100 entries; got 101"),
    ({"allowed_ips": "192.0.2.1"}, "allowed_ips",
     "Invalid request: Expected `array | null`, got `str` (at allowed_ips)"),
    ({"allowed_ips": [7]}, "allowed_ips[0]",
     "Invalid request: Expected `str`, got `int` (at allowed_ips[0])"),
])
async def test_malformed_lists_are_400s_naming_the_field_and_value(
        stack: Stack, body: dict[str, Any], param: str, message: str) -> None:
    expected = {"error": {"message": message, "type": "invalid_request_error", "code": 400,
                          "param": param, "metadata": {}}}
    created = await stack.http.post(f"{stack.url}/v1/keys", headers=AUTH,
                                     json={"account_id": "acct-ip", **body})
    assert (created.status_code, created.json()) == (400, expected)
    _, info = await _key(stack, allowed_ips=["192.0.2.1"])
    changed = await _patch(stack, info["id"], **body)
    assert (changed.status_code, changed.json()) == (400, expected)
    kept = await stack.http.get(f"{stack.url}/v1/keys/{info['id']}", headers=AUTH)
    assert kept.json()["data"]["allowed_ips"] == ["192.0.2.1"]
    listed = await stack.http.get(f"{stack.url}/v1/keys", headers=AUTH,
                                  params={"account_id": "acct-ip"})
    assert len(listed.json()["data"]) == 1  # the refused create made no key


async def test_a_change_is_in_force_at_the_next_request(stack: Stack) -> None:
    await _top_up(stack)
    key, info = await _key(stack)
    assert (await stack.chat(CHAT, headers=_bearer(key))).status_code == 200  # now cached
    changed = await _patch(stack, info["id"], allowed_ips=["192.0.2.0/24"])
    assert changed.json()["data"]["allowed_ips"] == ["192.0.2.0/24"]
    resp = await stack.chat(CHAT, headers=_bearer(key))
    assert (resp.status_code, resp.json()) == (403, refusal("127.0.0.1"))
    await _patch(stack, info["id"], allowed_ips=["192.0.2.0/24", "127.0.0.1"])
    assert (await stack.chat(CHAT, headers=_bearer(key))).status_code == 200
    # Other changes keep the list; an empty list removes it.
    await _patch(stack, info["id"], allowed_ips=["192.0.2.0/24"])
    kept = await _patch(stack, info["id"], name="renamed")
    assert kept.json()["data"]["allowed_ips"] == ["192.0.2.0/24"]
    assert (await stack.chat(CHAT, headers=_bearer(key))).status_code == 403
    cleared = await _patch(stack, info["id"], allowed_ips=[])
    assert cleared.json()["data"]["allowed_ips"] is None
    assert (await stack.chat(CHAT, headers=_bearer(key))).status_code == 200
