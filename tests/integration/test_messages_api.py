"""POST /v1/messages (Anthropic Messages API) through gateway -> router -> fake OpenAI upstream:
what the upstream receives, the `message` bodies, the named SSE events, and Anthropic's errors."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import orjson
import pytest

from tests.fakes.openai_upstream import TOOL_ARGS
from tests.integration.conftest import Stack
from tests.support import MASTER_KEY, gateway_settings, running_gateway

KEY = {"x-api-key": MASTER_KEY, "anthropic-version": "2023-06-01"}
HELLO = [{"role": "user", "content": "hello there"}]
WEATHER = {"name": "get_weather", "description": "Weather in a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}
Events = list[tuple[str, dict[str, Any]]]


async def _post(stack: Stack, body: dict[str, Any], headers: dict[str, str] | None = None,
                ) -> httpx.Response:
    return await stack.http.post(f"{stack.url}/v1/messages", json=body,
                                 headers=KEY if headers is None else headers)


def _error(resp: httpx.Response, status: int, type_: str) -> str:
    """The message of an Anthropic-shaped error, after checking its status and type."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/json"
    body = resp.json()
    assert body["type"] == "error" and set(body) == {"type", "error"}
    assert body["error"]["type"] == type_ and set(body["error"]) == {"type", "message"}
    return str(body["error"]["message"])


async def _stream(stack: Stack, body: dict[str, Any]) -> tuple[httpx.Response, list[str]]:
    """Raw SSE lines (blank separators dropped) of a streamed message."""
    lines: list[str] = []
    async with stack.http.stream("POST", f"{stack.url}/v1/messages", headers=KEY,
                                 json={**body, "stream": True}) as resp:
        if resp.status_code != 200:
            await resp.aread()
            return resp, []
        async for line in resp.aiter_lines():
            if line:
                lines.append(line)
    return resp, lines


def _events(lines: list[str]) -> Events:
    """(event name, data) pairs; every event must be an `event:` line then one `data:` line."""
    assert len(lines) % 2 == 0, lines
    out = []
    for name_line, data_line in zip(lines[::2], lines[1::2], strict=True):
        assert name_line.startswith("event: ") and data_line.startswith("data: "), (name_line,
                                                                                   data_line)
        name, data = name_line[7:], orjson.loads(data_line[6:])
        assert data["type"] == name
        out.append((name, data))
    return out


def _text(events: Events) -> str:
    return "".join(d["delta"]["text"] for n, d in events
                   if n == "content_block_delta" and d["delta"]["type"] == "text_delta")


# ---- whole messages ----------------------------------------------------------------------

async def test_a_text_message(stack: Stack) -> None:
    resp = await _post(stack, {"model": "test/echo", "max_tokens": 64, "messages": HELLO,
                               "temperature": 0.5})
    assert resp.status_code == 200
    gen_id = resp.headers["x-generation-id"]
    assert gen_id.startswith("gen-")
    assert resp.json() == {
        "id": "msg_" + gen_id[4:], "type": "message", "role": "assistant", "model": "test/echo",
        "content": [{"type": "text", "text": "echo: hello there"}],
        "stop_reason": "end_turn", "stop_sequence": None,
        "usage": {"input_tokens": 5, "output_tokens": 3, "cache_read_input_tokens": 0,
                  "cache_creation_input_tokens": 0},
    }
    assert stack.upstream.requests[-1] == {"model": "fake-echo", "messages": HELLO,
                                           "max_tokens": 64, "temperature": 0.5}


async def test_system_tools_and_tool_choice_reach_the_upstream_in_openai_form(stack: Stack) -> None:
    resp = await _post(stack, {
        "model": "test/tools", "max_tokens": 100, "messages": HELLO,
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}},
                   {"type": "text", "text": "Use tools."}],
        "tools": [WEATHER], "tool_choice": {"type": "tool", "name": "get_weather"},
        "top_p": 0.9, "stop_sequences": ["END"], "metadata": {"user_id": "u-1"},
    })
    assert resp.status_code == 200
    body = resp.json()
    assert body["content"] == [{"type": "tool_use", "id": "call_abc123", "name": "get_weather",
                                "input": {"city": "Moscow", "unit": "celsius"}}]
    assert body["stop_reason"] == "tool_use"
    assert stack.upstream.requests[-1] == {
        "model": "fake-tools",
        # cache_control keeps the blocks apart (as parts) for Anthropic; the text is the same.
        "messages": [{"role": "system", "content": [
                         {"type": "text", "text": "Be brief."},
                         {"type": "text", "text": "\n\nUse tools."}]},
                     {"role": "user", "content": "hello there"}],
        "max_tokens": 100, "top_p": 0.9, "stop": ["END"], "user": "u-1",
        "tools": [{"type": "function", "function": {
            "name": "get_weather", "description": "Weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
    }


async def test_tool_results_reach_the_upstream_as_tool_messages(stack: Stack) -> None:
    resp = await _post(stack, {"model": "test/echo", "max_tokens": 64, "messages": [
        {"role": "user", "content": "Weather in Moscow?"},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "call_abc123", "name": "get_weather",
             "input": {"city": "Moscow"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "call_abc123",
             "content": [{"type": "text", "text": "-5 C"}]},
            {"type": "text", "text": "And tomorrow?"}]},
    ]})
    assert resp.status_code == 200
    assert resp.json()["content"] == [{"type": "text", "text": "echo: And tomorrow?"}]
    assert stack.upstream.requests[-1]["messages"] == [
        {"role": "user", "content": "Weather in Moscow?"},
        {"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "call_abc123", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city":"Moscow"}'}}]},
        {"role": "tool", "content": "-5 C", "tool_call_id": "call_abc123"},
        {"role": "user", "content": [{"type": "text", "text": "And tomorrow?"}]},
    ]


async def test_images_become_image_parts_that_need_a_vision_deployment(stack: Stack) -> None:
    resp = await _post(stack, {"model": "test/echo", "max_tokens": 64, "messages": [
        {"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": "iVBORw0KGgo="}},
            {"type": "text", "text": "What is this?"}]}]})
    # The router saw an image_url part: test/echo's only deployment lacks "vision".
    message = _error(resp, 503, "overloaded_error")
    assert message == "No provider can serve this request with its requirements"
    assert stack.upstream.requests == []


# ---- errors ------------------------------------------------------------------------------

async def test_authentication_by_x_api_key_or_bearer(stack: Stack) -> None:
    body = {"model": "demo", "max_tokens": 16, "messages": HELLO}
    assert (await _post(stack, body, {"Authorization": f"Bearer {MASTER_KEY}"})).status_code == 200
    message = _error(await _post(stack, body, {}), 401, "authentication_error")
    assert message == "Missing API key: send 'x-api-key: <key>' or 'Authorization: Bearer <key>'"
    message = _error(await _post(stack, body, {"x-api-key": "nope"}), 401, "authentication_error")
    assert message == "Invalid API key"


async def test_invalid_requests_are_400_naming_the_field(stack: Stack) -> None:
    message = _error(await _post(stack, {"model": "demo", "messages": HELLO}), 400,
                     "invalid_request_error")
    assert message == "Invalid request: Object missing required field `max_tokens` (at max_tokens)"
    resp = await stack.http.post(f"{stack.url}/v1/messages", content=b"[1]", headers=KEY)
    assert _error(resp, 400, "invalid_request_error") == "Request body must be a JSON object"


async def test_oversized_body_is_request_too_large(stack: Stack) -> None:
    big = [{"role": "user", "content": "x" * (70 * 1024)}]
    _error(await _post(stack, {"model": "demo", "max_tokens": 5, "messages": big}), 413,
           "request_too_large")


async def test_unknown_model_is_not_found(stack: Stack) -> None:
    resp = await _post(stack, {"model": "nobody/nothing", "max_tokens": 5, "messages": HELLO})
    _error(resp, 404, "not_found_error")
    assert resp.headers["x-generation-id"].startswith("gen-")
    resp, lines = await _stream(stack, {"model": "nobody/nothing", "max_tokens": 5,
                                        "messages": HELLO})
    assert lines == []
    _error(resp, 404, "not_found_error")


async def test_upstream_failures_are_api_errors(stack: Stack) -> None:
    body = {"model": "test/all-fail", "max_tokens": 5, "messages": HELLO}
    _error(await _post(stack, body), 502, "api_error")
    resp, lines = await _stream(stack, body)
    assert lines == []
    _error(resp, 502, "api_error")


async def test_no_router_is_overloaded_with_retry_after() -> None:
    async with running_gateway(gateway_settings("127.0.0.1:1", router_retries=1)) as url, \
            httpx.AsyncClient(timeout=10) as http:
        resp = await http.post(f"{url}/v1/messages", headers=KEY,
                               json={"model": "demo", "max_tokens": 5, "messages": HELLO})
        _error(resp, 503, "overloaded_error")
        assert resp.headers["retry-after"] == "1"


# ---- streaming ---------------------------------------------------------------------------

async def test_a_streamed_text_message(stack: Stack) -> None:
    resp, lines = await _stream(stack, {"model": "test/echo", "max_tokens": 64, "messages": HELLO})
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "text/event-stream"
    gen_id = resp.headers["x-generation-id"]
    events = _events(lines)
    names = [n for n, _ in events]
    assert names == ["message_start", "content_block_start",
                     *["content_block_delta"] * 3, "content_block_stop",
                     "message_delta", "message_stop"]
    assert events[0][1]["message"] == {
        "id": "msg_" + gen_id[4:], "type": "message", "role": "assistant", "model": "test/echo",
        "content": [], "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": 0, "output_tokens": 0}}
    assert events[1][1] == {"type": "content_block_start", "index": 0,
                            "content_block": {"type": "text", "text": ""}}
    assert _text(events) == "echo: hello there"
    assert events[-2][1] == {"type": "message_delta",
                             "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                             "usage": {"input_tokens": 5, "output_tokens": 3,
                                       "cache_read_input_tokens": 0,
                                       "cache_creation_input_tokens": 0}}
    sent = stack.upstream.requests[-1]
    assert sent["stream"] is True and sent["max_tokens"] == 64


async def test_a_streamed_tool_call_is_one_tool_use_block(stack: Stack) -> None:
    resp, lines = await _stream(stack, {"model": "test/tools", "max_tokens": 64,
                                        "messages": HELLO, "tools": [WEATHER]})
    assert resp.status_code == 200
    events = _events(lines)
    assert [n for n, _ in events] == ["message_start", "content_block_start",
                                      "content_block_delta", "content_block_delta",
                                      "content_block_stop", "message_delta", "message_stop"]
    assert events[1][1]["content_block"] == {"type": "tool_use", "id": "call_abc123",
                                             "name": "get_weather", "input": {}}
    deltas = [d["delta"] for n, d in events if n == "content_block_delta"]
    assert {d["type"] for d in deltas} == {"input_json_delta"}
    assert "".join(d["partial_json"] for d in deltas) == TOOL_ARGS
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"


async def test_a_stream_cut_midway_ends_with_an_error_event(stack: Stack) -> None:
    resp, lines = await _stream(stack, {"model": "test/cut", "max_tokens": 64, "messages": HELLO})
    assert resp.status_code == 200
    events = _events(lines)
    assert _text(events) == "echo: hello"
    assert events[-1][0] == "error"
    assert events[-1][1]["error"]["type"] == "api_error"
    assert "message_stop" not in [n for n, _ in events]


@pytest.mark.parametrize("router_overrides", [{"attempt_timeout": 6.0}])
@pytest.mark.parametrize("gateway_overrides", [{"sse_commit_after": 0.3}])
async def test_pings_while_waiting_for_the_first_token(stack: Stack) -> None:
    resp, lines = await _stream(stack, {"model": "test/slow-only", "max_tokens": 64,
                                        "messages": HELLO})
    assert resp.status_code == 200
    events = _events(lines)
    first = [n for n, _ in events].index("message_start")
    assert first >= 2  # 3 s of waiting, a ping every 0.2 s after the 0.3 s grace (about 13)
    assert events[:first] == [("ping", {"type": "ping"})] * first
    assert _text(events) == "echo: hello there"
    assert events[-1] == ("message_stop", {"type": "message_stop"})


async def test_client_disconnect_cancels_the_upstream_request(stack: Stack) -> None:
    async with stack.http.stream("POST", f"{stack.url}/v1/messages", headers=KEY,
                                 json={"model": "test/drip", "max_tokens": 64, "messages": HELLO,
                                       "stream": True}) as resp:
        seen = 0
        async for line in resp.aiter_lines():
            if line.startswith("event: content_block_delta"):
                seen += 1
            if seen == 3:
                break
    for _ in range(600):  # up to 30 s on a loaded machine; usually at once
        if stack.upstream.disconnects:
            break
        await asyncio.sleep(0.05)
    assert stack.upstream.disconnects == ["fake-drip"]
