"""Malformed input at the gateway: every case is a 4xx in the documented error shape, naming the
field, and the kept-alive connection serves the next request (a 500 used to drop it)."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from tests.integration.conftest import Stack
from tests.integration.raw_http import RawConnection, RawResponse, request_bytes
from tests.support import MASTER_KEY
from xrouter_gateway.guards import MAX_JSON_DEPTH

AUTH = {"Authorization": f"Bearer {MASTER_KEY}".encode()}
HELLO = [{"role": "user", "content": "hi"}]
VALID = orjson.dumps({"model": "demo", "messages": HELLO})
CHAT = "/v1/chat/completions"


def nested(levels: int) -> Any:
    """A JSON value that is `levels` deep on its own (a dict counts one level)."""
    value: Any = {"type": "string"}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


def chat(**extra: Any) -> bytes:
    return orjson.dumps({"model": "demo", "messages": HELLO, **extra})


def error_of(resp: RawResponse, status: int) -> dict[str, Any]:
    assert resp.status == status, resp.body
    assert resp.headers["content-type"] == "application/json"
    body = resp.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "code", "param", "metadata"}
    assert body["error"]["code"] == status
    return body["error"]  # type: ignore[no-any-return]


async def assert_connection_still_serves(conn: RawConnection) -> None:
    resp = await conn.exchange(request_bytes(CHAT, VALID, AUTH))
    assert resp.status == 200, resp.body
    assert resp.json()["choices"][0]["message"]["content"]


FN = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
# A body is depth 1, its fields depth 2: response_format -> json_schema -> schema is at depth 4.
SCHEMA_TOO_DEEP = {"type": "json_schema",
                   "json_schema": {"name": "s", "schema": nested(MAX_JSON_DEPTH - 2)}}
BODIES: list[tuple[str, bytes, str | None, str]] = [
    ("max_price NaN", chat(provider={"max_price": {"prompt": "NaN"}}),
     "provider.max_price.prompt", "finite"),
    ("max_price Infinity", chat(provider={"max_price": {"completion": "Infinity"}}),
     "provider.max_price.completion", "finite"),
    ("max_price -inf", chat(provider={"max_price": {"prompt": "-inf"}}),
     "provider.max_price.prompt", "finite"),
    ("max_price sNaN", chat(provider={"max_price": {"request": "sNaN"}}),
     "provider.max_price.request", "finite"),
    ("max_price huge exponent", chat(provider={"max_price": {"prompt": "1e999999999"}}),
     "provider.max_price.prompt", "at most"),
    ("max_price negative", chat(provider={"max_price": {"prompt": -1}}),
     "provider.max_price.prompt", "at least 0"),
    ("max_price bool", chat(provider={"max_price": {"prompt": True}}),
     "provider.max_price.prompt", "Expected"),
    ("max_price 1e999 literal",
     VALID[:-1] + b',"provider":{"max_price":{"prompt":1e999}}}', None, "infinity"),
    ("temperature 1e999 literal", VALID[:-1] + b',"temperature":1e999}', None, "infinity"),
    ("temperature NaN literal", VALID[:-1] + b',"temperature":NaN}', None, "Invalid JSON"),
    ("temperature -1e308", chat(temperature=-1e308), "temperature", ">= 0.0"),
    ("top_p huge", chat(top_p=1e308), "top_p", "<= 1.0"),
    ("max_tokens above int32", chat(max_tokens=2**31), "max_tokens", "<="),
    ("max_tokens float", chat(max_tokens=1.5), "max_tokens", "Expected `int"),
    ("seed above int64", VALID[:-1] + b',"seed":18446744073709551616}', "seed",
     "Expected `int"),
    ("n 1e9", chat(n=10**9), "n", "<= 1"),
    ("presence_penalty 1e300", chat(presence_penalty=1e300), "presence_penalty", "<= 2.0"),
    ("logit_bias 1e300", chat(logit_bias={"42": 1e300}), "logit_bias[...]", "<= 100"),
    ("response_format too deep", chat(response_format=SCHEMA_TOO_DEEP), "response_format",
     f"deeper than {MAX_JSON_DEPTH}"),
    ("tool parameters too deep",
     chat(tools=[{"type": "function", "function": {"name": "f", "parameters": nested(80)}}]),
     "tools[0]", "deeper"),
    ("tool_choice too deep",
     chat(tools=[FN], tool_choice={"type": "function", "function": {"name": "f"},
                                   "x": nested(80)}), "tool_choice", "deeper"),
    ("unknown parameter one level too deep", chat(vendor_option=nested(MAX_JSON_DEPTH)),
     "vendor_option", f"deeper than {MAX_JSON_DEPTH}"),
    ("content part too deep",
     chat(messages=[{"role": "user", "content": [{"type": "input_audio", "a": nested(70)}]}]),
     "messages[0].content[0]", "deeper"),
    ("1000 levels of arrays", VALID[:-1] + b',"vendor_option":' + b"[" * 1000 + b"]" * 1000 + b"}",
     "vendor_option", "deeper"),
    ("messages a dict", chat(messages={"role": "user"}), "messages", "Expected `array"),
    ("stream a string", chat(stream="yes"), "stream", "Expected `bool"),
    ("provider.only a string", chat(provider={"only": "x"}), "provider.only", "Expected"),
    ("unknown provider field", chat(provider={"sortt": "price"}), "provider.sortt",
     "unknown field"),
]


@pytest.mark.parametrize(("body", "param", "fragment"), [b[1:] for b in BODIES],
                         ids=[b[0] for b in BODIES])
async def test_malformed_bodies_are_400_and_keep_the_connection(
        stack: Stack, body: bytes, param: str | None, fragment: str) -> None:
    conn = await RawConnection.open(stack.url)
    try:
        err = error_of(await conn.exchange(request_bytes(CHAT, body, AUTH)), 400)
        assert err["param"] == param
        assert fragment in err["message"]
        await assert_connection_still_serves(conn)
    finally:
        await conn.close()


async def test_json_at_the_depth_limit_passes(stack: Stack) -> None:
    conn = await RawConnection.open(stack.url)
    try:
        at_limit = chat(vendor_option=nested(MAX_JSON_DEPTH - 1))
        resp = await conn.exchange(request_bytes(CHAT, at_limit, AUTH))
        assert resp.status == 200, resp.body
    finally:
        await conn.close()


NON_ASCII = "привет".encode()
HEADERS: list[tuple[str, str, dict[str, bytes], int, str]] = [
    ("bearer utf-8", CHAT, {"Authorization": b"Bearer " + NON_ASCII}, 401, "Authorization"),
    ("bearer latin-1", CHAT, {"Authorization": b"Bearer xr-\xffabc"}, 401, "Authorization"),
    ("request id utf-8", CHAT, {**AUTH, "X-Request-Id": NON_ASCII}, 400, "X-Request-Id"),
    ("keys bearer utf-8", "/v1/keys", {"Authorization": b"Bearer " + NON_ASCII}, 401,
     "Authorization"),
]


@pytest.mark.parametrize(("path", "headers", "status", "param"), [h[1:] for h in HEADERS],
                         ids=[h[0] for h in HEADERS])
async def test_non_ascii_headers_are_4xx_and_keep_the_connection(
        stack: Stack, path: str, headers: dict[str, bytes], status: int, param: str) -> None:
    conn = await RawConnection.open(stack.url)
    try:
        method = "POST" if path == CHAT else "GET"
        raw = request_bytes(path, VALID if method == "POST" else None, headers, method)
        err = error_of(await conn.exchange(raw), status)
        assert err["param"] == param
        assert "printable ASCII" in err["message"]
        await assert_connection_still_serves(conn)
    finally:
        await conn.close()


async def test_non_ascii_x_api_key_is_401_in_anthropic_shape(stack: Stack) -> None:
    conn = await RawConnection.open(stack.url)
    try:
        body = orjson.dumps({"model": "demo", "max_tokens": 5, "messages": HELLO})
        resp = await conn.exchange(request_bytes("/v1/messages", body, {"x-api-key": NON_ASCII}))
        assert resp.status == 401
        assert resp.json() == {"type": "error", "error": {
            "type": "authentication_error",
            "message": "The x-api-key header must be printable ASCII"}}
        await assert_connection_still_serves(conn)
    finally:
        await conn.close()


async def test_oversized_headers_are_431_and_close(stack: Stack) -> None:
    conn = await RawConnection.open(stack.url)
    try:
        await assert_connection_still_serves(conn)
        big = {**AUTH, "X-Padding": b"a" * (64 * 1024)}
        err = error_of(await conn.exchange(request_bytes(CHAT, VALID, big)), 431)
        assert err["type"] == "request_too_large"
        assert err["message"] == "The request headers are larger than 32768 bytes"
        assert await conn.closed_by_server()
    finally:
        await conn.close()
    conn = await RawConnection.open(stack.url)
    try:  # just under the limit is served
        await assert_connection_still_serves(conn)
        resp = await conn.exchange(request_bytes(CHAT, VALID, {**AUTH, "X-Padding": b"a" * 30000}))
        assert resp.status == 200
    finally:
        await conn.close()


async def test_a_request_line_that_is_not_ascii_is_400_json(stack: Stack) -> None:
    conn = await RawConnection.open(stack.url)
    try:
        resp = await conn.exchange(b"GET /v1/\xd0\xbf HTTP/1.1\r\nHost: x\r\n\r\n")
        assert error_of(resp, 400)["message"] == "Invalid HTTP request"
        assert await conn.closed_by_server()
    finally:
        await conn.close()



@pytest.mark.parametrize(("extra", "param"), [
    ({"tools": [{"name": "f", "input_schema": nested(300)}]}, "tools"),
    ({"messages": [{"role": "assistant", "content": [
        {"type": "tool_use", "id": "t1", "name": "f", "input": nested(300)}]}]}, "messages"),
])
async def test_deep_json_in_messages_api_is_400_in_anthropic_shape(
        stack: Stack, extra: dict[str, Any], param: str) -> None:
    conn = await RawConnection.open(stack.url)
    try:
        # json, not orjson: orjson refuses to write JSON this deep (which was the 500).
        body = json.dumps({"model": "demo", "max_tokens": 5, "messages": HELLO, **extra})
        resp = await conn.exchange(request_bytes("/v1/messages", body.encode(), AUTH))
        assert resp.status == 400, resp.body
        assert resp.json() == {"type": "error", "error": {
            "type": "invalid_request_error",
            "message": f"{param}: JSON is nested deeper than {MAX_JSON_DEPTH} levels"}}
        await assert_connection_still_serves(conn)
    finally:
        await conn.close()
