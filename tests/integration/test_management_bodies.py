"""Management request bodies (keys, credits, the origin's /v1/auth/key) are strict: an unknown
field is a 400 naming it, and decimals must be finite; chat bodies still pass unknown
parameters through."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.conftest import AUTH, Stack


def _err(resp: Any, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "code", "param", "metadata"}
    return err  # type: ignore[no-any-return]


async def _key_id(stack: Stack) -> str:
    resp = await stack.http.post(f"{stack.url}/v1/keys", headers=AUTH,
                                 json={"account_id": "acct-m", "name": "m"})
    assert resp.status_code == 201, resp.text
    return str(resp.json()["data"]["id"])


@pytest.mark.parametrize(("request_line", "body", "param", "fragment"), [
    ("POST /v1/keys", {"name": "a", "nmae": "typo"}, "nmae", "unknown field `nmae`"),
    ("POST /v1/keys", {"name": "a", "rate_limit": {"requests": 5}}, "rate_limit",
     "unknown field"),
    ("POST /v1/auth/key", {"label": "a", "expires": "2030-01-01"}, "expires",
     "unknown field"),
    ("PATCH /v1/keys/{id}", {"disabled": True, "disable": True}, "disable", "unknown field"),
    ("POST /v1/credits", {"account_id": "acct-m", "amount": "1", "ref": "x"}, "ref",
     "unknown field"),
    ("POST /v1/credits", {"account_id": "acct-m", "amount": "NaN"}, "amount", "finite"),
    ("POST /v1/credits", {"account_id": "acct-m", "amount": "Infinity"}, "amount", "finite"),
    ("POST /v1/credits", {"account_id": "acct-m", "amount": "1e999999999"}, "amount",
     "at most"),
    ("POST /v1/keys", {"name": "a", "limit": "NaN"}, "limit", "finite"),
    ("PATCH /v1/keys/{id}", {"limit": "-Infinity"}, "limit", "finite"),
    ("PATCH /v1/keys/{id}", {"limit": "-5"}, "limit", "at least 0"),
])
async def test_management_bodies_are_strict(stack: Stack, request_line: str,
                                            body: dict[str, Any], param: str,
                                            fragment: str) -> None:
    method, path = request_line.split(" ")
    if "{id}" in path:
        path = path.replace("{id}", await _key_id(stack))
    resp = await stack.http.request(method, f"{stack.url}{path}", headers=AUTH, json=body)
    err = _err(resp, 400)
    assert err["param"] == param
    assert fragment in err["message"]


async def test_chat_bodies_still_pass_unknown_parameters_through(stack: Stack) -> None:
    resp = await stack.chat({"model": "test/echo", "messages": [{"role": "user", "content": "x"}],
                             "vendor_flag": {"deep": [1, 2]}})
    assert resp.status_code == 200, resp.text
    assert stack.upstream.requests[-1]["vendor_flag"] == {"deep": [1, 2]}
