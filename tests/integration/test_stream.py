"""Streaming exactly like OpenRouter: chunks, the usage chunk, [DONE], in-band errors,
keep-alive comments, failover before the first byte, and cancellation on disconnect."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import orjson
import pytest

from tests.fakes.openai_upstream import TOOL_ARGS
from tests.integration.conftest import AUTH, Stack, content_of, events
from tests.support import gross

HELLO = [{"role": "user", "content": "hello there"}]


async def test_stream_chunks_usage_and_done(stack: Stack) -> None:
    resp, lines = await stack.stream({"model": "test/echo", "messages": HELLO})
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "text/event-stream"
    assert resp.headers["x-accel-buffering"] == "no"
    gen_id = resp.headers["x-generation-id"]
    assert lines[-1] == "data: [DONE]"
    evs = events(lines)
    assert all(e["id"] == gen_id and e["object"] == "chat.completion.chunk" for e in evs)
    assert all(e["model"] == "test/echo" and e["provider"] == "fake" for e in evs)
    assert evs[0]["choices"][0]["delta"]["role"] == "assistant"
    assert content_of(lines) == "echo: hello there"
    assert [c["finish_reason"] for e in evs for c in e["choices"]][-1] == "stop"
    final = evs[-1]
    assert final["choices"] == []
    assert final["usage"]["prompt_tokens"] == 5 and final["usage"]["completion_tokens"] == 3
    assert Decimal(str(final["usage"]["cost"])) == gross("0.0011")  # 0.0011 net, with VAT
    sent = stack.upstream.requests[-1]
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}


async def test_stream_tool_call_deltas_keep_their_index(stack: Stack) -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
    resp, lines = await stack.stream({"model": "test/tools", "messages": HELLO, "tools": tools})
    assert resp.status_code == 200
    calls = [tc for e in events(lines) for c in e["choices"] for tc in c["delta"].get("tool_calls", [])]
    assert [c["index"] for c in calls] == [0, 0]
    assert calls[0]["id"] == "call_abc123" and calls[0]["function"]["name"] == "get_weather"
    assert "".join(c["function"]["arguments"] for c in calls) == TOOL_ARGS
    finishes = [c["finish_reason"] for e in events(lines) for c in e["choices"] if c["finish_reason"]]
    assert finishes == ["tool_calls"]


async def test_stream_cut_midway_ends_with_error_chunk_then_usage(stack: Stack) -> None:
    resp, lines = await stack.stream({"model": "test/cut", "messages": HELLO})
    assert resp.status_code == 200
    evs = events(lines)
    error_chunk = evs[-2]
    assert error_chunk["error"]["code"] == 502
    assert error_chunk["choices"] == [{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}]
    # What arrived before the cut is passed on (aiohttp drops the last read when the cut
    # arrives in the same packet as data, so only a prefix is guaranteed).
    text = content_of(lines)
    assert text and "echo: hello there".startswith(text) and text != "echo: hello there"
    usage = evs[-1]["usage"]
    assert usage["is_estimated"] is True
    # cl100k_base: "echo" ":" " hello"
    assert usage["completion_tokens"] == {"echo": 1, "echo:": 2, "echo: hello": 3}[text]
    assert lines[-1] == "data: [DONE]"


async def test_stream_fails_over_before_the_first_byte(stack: Stack) -> None:
    resp, lines = await stack.stream({"model": "test/failover", "messages": HELLO})
    assert resp.status_code == 200
    assert {e["provider"] for e in events(lines)} == {"fake2"}
    assert content_of(lines) == "echo: hello there"


async def test_stream_failing_everywhere_early_is_a_plain_502(stack: Stack) -> None:
    resp, lines = await stack.stream({"model": "test/all-fail", "messages": HELLO})
    assert resp.status_code == 502 and lines == []
    assert orjson.loads(resp.content)["error"]["type"] == "upstream_error"


@pytest.mark.parametrize("router_overrides", [{"attempt_timeout": 6.0}])
@pytest.mark.parametrize("gateway_overrides", [{"sse_commit_after": 0.3}])
async def test_processing_comments_while_waiting_for_the_first_byte(stack: Stack) -> None:
    resp, lines = await stack.stream({"model": "test/slow-only", "messages": HELLO})
    assert resp.status_code == 200
    first_data = next(i for i, line in enumerate(lines) if line.startswith("data:"))
    comments = lines[:first_data]
    # 3 s of waiting, a comment every 0.2 s after the 0.3 s grace: about 13 on an idle machine,
    # fewer when the loop is slow; two show that they repeat.
    assert len(comments) >= 2
    assert set(comments) == {": XROUTER PROCESSING"}
    assert content_of(lines) == "echo: hello there"


async def test_upstream_ignoring_stream_still_streams(stack: Stack) -> None:
    resp, lines = await stack.stream({"model": "test/json-stream", "messages": HELLO})
    assert resp.status_code == 200
    assert content_of(lines) == "echo: hello there"
    assert lines[-1] == "data: [DONE]"


async def test_missing_upstream_usage_is_estimated(stack: Stack) -> None:
    resp, lines = await stack.stream({"model": "test/no-usage", "messages": HELLO})
    assert resp.status_code == 200
    usage = events(lines)[-1]["usage"]
    assert usage["is_estimated"] is True
    assert usage["completion_tokens"] == 4  # cl100k_base: "echo" ":" " hello" " there"
    assert usage["prompt_tokens"] == 6  # 4 per message + "hello" " there"


async def test_client_disconnect_cancels_the_upstream_request(stack: Stack) -> None:
    async with stack.http.stream("POST", f"{stack.url}/v1/chat/completions", headers=AUTH,
                                 json={"model": "test/drip", "messages": HELLO,
                                       "stream": True}) as resp:
        seen = 0
        async for line in resp.aiter_lines():
            if line.startswith("data:"):
                seen += 1
            if seen == 3:
                break
    # Leaving the block closed the connection: the upstream must see its client go away.
    for _ in range(600):  # up to 30 s on a loaded machine; usually at once
        if stack.upstream.disconnects:
            break
        await asyncio.sleep(0.05)
    assert stack.upstream.disconnects == ["fake-drip"]


async def test_openrouter_style_comments_and_null_choices_are_tolerated(stack: Stack) -> None:
    resp, lines = await stack.stream({"model": "test/openrouter", "messages": HELLO})
    assert resp.status_code == 200
    assert content_of(lines) == "echo: hello there"
    assert events(lines)[-1]["usage"]["is_estimated"] is False


async def test_an_error_object_inside_the_upstream_stream_becomes_the_error_chunk(
        stack: Stack) -> None:
    resp, lines = await stack.stream({"model": "test/stream-error", "messages": HELLO})
    assert resp.status_code == 200
    evs = events(lines)
    assert content_of(lines) == "echo: hello"
    assert evs[-2]["error"]["code"] == 502
    assert evs[-2]["error"]["message"] == "fake failed mid-stream: Upstream overloaded"
    assert evs[-2]["error"]["metadata"] == {"provider_name": "fake", "reason": "server_error",
                                            "raw": {"code": 502, "message": "Upstream overloaded"}}
    assert lines[-1] == "data: [DONE]"
