"""Non-streaming chat through gateway -> router -> fake OpenAI upstream, with failover."""

from __future__ import annotations

from decimal import Decimal

import orjson
import pytest

from tests.fakes.openai_upstream import API_KEY, TOOL_ARGS
from tests.integration.conftest import Stack
from tests.support import gross

HELLO = [{"role": "user", "content": "hello there"}]


def _cost(prompt: int, completion: int) -> Decimal:
    return (Decimal(prompt) * 100 + Decimal(completion) * 200) / Decimal(1_000_000)


async def test_echo_answer_usage_cost_and_headers(stack: Stack) -> None:
    resp = await stack.chat({"model": "test/echo", "messages": HELLO, "temperature": 0.5})
    assert resp.status_code == 200
    body = orjson.loads(resp.content)
    assert body["object"] == "chat.completion"
    assert body["id"] == resp.headers["x-generation-id"]
    assert body["id"].startswith("gen-") and len(body["id"]) == 28
    assert body["model"] == "test/echo"
    assert body["provider"] == "fake"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "echo: hello there"}
    assert body["choices"][0]["finish_reason"] == "stop"
    usage = body["usage"]
    assert usage["prompt_tokens"] == 5 and usage["completion_tokens"] == 3
    assert usage["total_tokens"] == 8
    assert usage["is_estimated"] is False
    # The cost is the exact decimal, written as a JSON number without float rounding: the
    # catalog's (net) price of the tokens, with VAT.
    assert Decimal("0.0011") == _cost(5, 3)
    assert f'"cost":{gross("0.0011")},'.encode() in resp.content
    sent = stack.upstream.requests[-1]
    assert sent["model"] == "fake-echo"
    assert sent["temperature"] == 0.5
    assert "stream" not in sent and "stream_options" not in sent
    assert stack.upstream.headers[-1]["Authorization"] == f"Bearer {API_KEY}"


async def test_failover_on_500_to_next_deployment(stack: Stack) -> None:
    resp = await stack.chat({"model": "test/failover", "messages": HELLO})
    assert resp.status_code == 200
    body = resp.json()
    assert body["provider"] == "fake2"
    assert body["choices"][0]["message"]["content"] == "echo: hello there"
    assert stack.upstream.models_called() == ["fake-500", "fake-echo"]


@pytest.mark.parametrize("model", ["test/badkey", "test/garbage"])
async def test_failover_on_upstream_auth_error_and_garbage(stack: Stack, model: str) -> None:
    resp = await stack.chat({"model": model, "messages": HELLO})
    assert resp.status_code == 200
    assert resp.json()["provider"] == "fake2"


async def test_all_deployments_failing_is_502_with_each_attempt(stack: Stack) -> None:
    resp = await stack.chat({"model": "test/all-fail", "messages": HELLO})
    assert resp.status_code == 502
    err = resp.json()["error"]
    assert err["code"] == 502 and err["type"] == "upstream_error"
    attempts = err["metadata"]["attempts"]
    assert [(a["provider_name"], a["reason"], a["status"]) for a in attempts] == [
        ("fake", "server_error", 500), ("fake2", "rate_limited", 429)]
    assert err["metadata"]["provider_name"] == "fake2"
    assert err["metadata"]["raw"]["error"]["code"] == "rate_limit_exceeded"


async def test_upstream_rejection_is_400_without_failover(stack: Stack) -> None:
    resp = await stack.chat({"model": "test/rejected", "messages": HELLO})
    assert resp.status_code == 400
    err = resp.json()["error"]
    assert err["metadata"]["provider_name"] == "fake"
    assert err["metadata"]["raw"]["error"]["code"] == "context_length_exceeded"
    assert stack.upstream.models_called() == ["fake-400"]


@pytest.mark.parametrize("router_overrides", [{"attempt_timeout": 0.5}])
async def test_attempt_timeout_fails_over_then_times_out(stack: Stack) -> None:
    resp = await stack.chat({"model": "test/slow", "messages": HELLO})
    assert resp.status_code == 200
    assert resp.json()["provider"] == "fake2"
    resp = await stack.chat({"model": "test/slow-only", "messages": HELLO})
    assert resp.status_code == 502
    assert resp.json()["error"]["metadata"]["attempts"][0]["reason"] == "timeout"


async def test_models_array_falls_back_to_next_model(stack: Stack) -> None:
    resp = await stack.chat({"model": "test/all-fail", "models": ["test/echo"], "messages": HELLO})
    assert resp.status_code == 200
    assert resp.json()["model"] == "test/echo"
    resp = await stack.chat({"models": ["test/echo"], "messages": HELLO})
    assert resp.status_code == 200 and resp.json()["model"] == "test/echo"


async def test_prompt_becomes_a_user_message(stack: Stack) -> None:
    resp = await stack.chat({"model": "test/echo", "prompt": "say hi"})
    assert resp.status_code == 200
    assert resp.json()["choices"][0]["message"]["content"] == "echo: say hi"
    assert stack.upstream.requests[-1]["messages"] == [{"role": "user", "content": "say hi"}]


async def test_unknown_parameters_pass_through_untouched(stack: Stack) -> None:
    body = {"model": "test/echo", "messages": HELLO, "logit_bias": {"50256": -100},
            "my_vendor_flag": {"a": [1, 2]}, "top_k": 5, "stop": "END", "seed": 7,
            "response_format": {"type": "text"}}
    resp = await stack.chat(body)
    assert resp.status_code == 200
    sent = stack.upstream.requests[-1]
    assert sent["logit_bias"] == {"50256": -100}
    assert sent["my_vendor_flag"] == {"a": [1, 2]}
    assert sent["stop"] == ["END"] and sent["seed"] == 7
    assert sent["response_format"] == {"type": "text"}
    assert "top_k" not in sent  # not an OpenAI parameter: dropped unless the provider opts in


async def test_multipart_content_and_tool_round_trip(stack: Stack) -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}}}}]
    messages = [{"role": "user", "content": [
        {"type": "text", "text": "weather?"},
        {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}]}]
    resp = await stack.chat({"model": "test/tools", "messages": messages, "tools": tools,
                             "tool_choice": "auto"})
    assert resp.status_code == 200
    choice = resp.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    assert choice["message"]["tool_calls"] == [{"id": "call_abc123", "type": "function", "function": {
        "name": "get_weather", "arguments": TOOL_ARGS}}]
    sent = stack.upstream.requests[-1]
    assert sent["tools"] == tools and sent["tool_choice"] == "auto"
    assert sent["messages"][0]["content"][1] == messages[0]["content"][1]
    follow = [*messages, choice["message"],
              {"role": "tool", "tool_call_id": "call_abc123", "content": '{"t": 3}'}]
    resp = await stack.chat({"model": "test/echo", "messages": follow})
    assert resp.status_code == 200
    assert stack.upstream.requests[-1]["messages"][1]["tool_calls"][0]["function"]["arguments"] \
        == TOOL_ARGS
    assert stack.upstream.requests[-1]["messages"][2] == follow[2]


async def test_tools_need_a_deployment_that_supports_them(stack: Stack) -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    resp = await stack.chat({"model": "test/echo", "messages": HELLO, "tools": tools})
    assert resp.status_code == 503
    err = resp.json()["error"]
    assert err["type"] == "no_provider_available"
    assert err["metadata"]["reasons"] == {"test/echo@fake": "does not support tools"}


async def test_provider_only_and_ignore(stack: Stack) -> None:
    resp = await stack.chat({"model": "test/failover", "messages": HELLO,
                             "provider": {"only": ["fake2"]}})
    assert resp.json()["provider"] == "fake2"
    assert stack.upstream.models_called() == ["fake-echo"]
    resp = await stack.chat({"model": "test/failover", "messages": HELLO,
                             "provider": {"ignore": ["fake2"]}})
    assert resp.status_code == 502
