"""Both services as processes, driven by the official `anthropic` SDK through /v1/messages."""

from __future__ import annotations

from typing import Any

import anthropic
import pytest
from anthropic import Anthropic
from anthropic.types import MessageParam, TextBlock, ThinkingBlock, ToolParam, ToolUseBlock

from tests.e2e.conftest import Deployment
from tests.support import MASTER_KEY

pytestmark = pytest.mark.e2e

WEATHER: ToolParam = {"name": "get_weather", "description": "Weather in a city",
                      "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}


def client(dep: Deployment, key: str = MASTER_KEY) -> Anthropic:
    return Anthropic(base_url=dep.base_url.removesuffix("/v1"), api_key=key, max_retries=0,
                     timeout=20)


def test_non_streaming_text(deployment: Deployment) -> None:
    reply = client(deployment).messages.create(
        model="demo", max_tokens=64, messages=[{"role": "user", "content": "Привет!"}])
    assert reply.id.startswith("msg_") and len(reply.id) == 28
    assert reply.model == "xrouter/demo"
    assert reply.role == "assistant" and reply.stop_reason == "end_turn"
    assert len(reply.content) == 1 and isinstance(reply.content[0], TextBlock)
    assert reply.content[0].text == "Hello from the XRouter demo model! You said: «Привет!»"
    assert reply.usage.output_tokens == 9 and reply.usage.input_tokens > 0


def test_streaming_text_and_final_message(deployment: Deployment) -> None:
    with client(deployment).messages.stream(
            model="demo", max_tokens=64, system="Be nice.",
            messages=[{"role": "user", "content": "stream please"}]) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    text = "Hello from the XRouter demo model! You said: «stream please»"
    assert len(pieces) == 10 and "".join(pieces) == text
    assert final.model == "xrouter/demo" and final.stop_reason == "end_turn"
    assert [b.type for b in final.content] == ["text"]
    assert isinstance(final.content[0], TextBlock) and final.content[0].text == text
    assert final.usage.output_tokens == 10 and final.usage.input_tokens > 0


def test_max_tokens_is_the_stop_reason_when_the_answer_is_cut(deployment: Deployment) -> None:
    reply = client(deployment).messages.create(
        model="demo", max_tokens=3, messages=[{"role": "user", "content": "hi"}])
    assert reply.stop_reason == "max_tokens"
    assert isinstance(reply.content[0], TextBlock) and reply.content[0].text == "Hello from the"


def test_tool_use_round_trip(deployment: Deployment) -> None:
    c = client(deployment)
    messages: list[MessageParam] = [{"role": "user", "content": "Weather in Moscow?"}]
    reply = c.messages.create(model="test/tools", max_tokens=64, messages=messages,
                              tools=[WEATHER], tool_choice={"type": "any"})
    assert reply.stop_reason == "tool_use"
    call = reply.content[0]
    assert isinstance(call, ToolUseBlock)
    assert (call.id, call.name, call.input) == ("call_abc123", "get_weather",
                                                {"city": "Moscow", "unit": "celsius"})
    with c.messages.stream(model="test/tools", max_tokens=64, messages=messages,
                           tools=[WEATHER]) as stream:
        streamed = stream.get_final_message()
    assert streamed.stop_reason == "tool_use"
    assert isinstance(streamed.content[0], ToolUseBlock)
    assert streamed.content[0].input == {"city": "Moscow", "unit": "celsius"}
    messages += [{"role": "assistant", "content": reply.content},
                 {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id,
                                               "content": '{"temp": -3}'}]}]
    final = c.messages.create(model="test/echo", max_tokens=64, messages=messages)
    assert isinstance(final.content[0], TextBlock)
    assert final.content[0].text == "echo: Weather in Moscow?"
    assert final.stop_reason == "end_turn"


def test_thinking_and_cache_control(deployment: Deployment) -> None:
    """The demo model reasons when asked: thinking blocks, whole and streamed; cache_control on
    system and text blocks is accepted (the demo has nothing to cache)."""
    kwargs: dict[str, object] = {"model": "demo", "max_tokens": 4096,
                                 "thinking": {"type": "enabled", "budget_tokens": 1024}}
    system: Any = [{"type": "text", "text": "Be nice.", "cache_control": {"type": "ephemeral"}}]
    messages: Any = [{"role": "user", "content": [
        {"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]}]
    thought = "The user said «hi». I will answer in kind."
    reply = client(deployment).messages.create(system=system, messages=messages, **kwargs)  # type: ignore[call-overload]
    assert [b.type for b in reply.content] == ["thinking", "text"]
    assert isinstance(reply.content[0], ThinkingBlock) and reply.content[0].thinking == thought
    with client(deployment).messages.stream(system=system, messages=messages,
                                            **kwargs) as stream:  # type: ignore[arg-type]
        thinking = "".join(e.thinking for e in stream if e.type == "thinking")
        final = stream.get_final_message()
    assert thinking == thought
    assert isinstance(final.content[0], ThinkingBlock) and final.content[0].thinking == thought
    assert isinstance(final.content[1], TextBlock)
    assert final.content[1].text == "Hello from the XRouter demo model! You said: «hi»"


def test_sdk_sees_documented_errors(deployment: Deployment) -> None:
    with pytest.raises(anthropic.NotFoundError) as nf:
        client(deployment).messages.create(model="ghost", max_tokens=5,
                                           messages=[{"role": "user", "content": "x"}])
    assert nf.value.status_code == 404
    assert nf.value.body == {"type": "error", "error": {"type": "not_found_error",
                                                        "message": "Model 'ghost' does not exist"}}
    with pytest.raises(anthropic.AuthenticationError):
        client(deployment, key="wrong").messages.create(
            model="demo", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    with pytest.raises(anthropic.BadRequestError) as bad:
        # This SDK no longer offers `temperature`; older clients still send it.
        client(deployment).messages.create(model="demo", max_tokens=5, extra_body={"temperature": 9},
                                           messages=[{"role": "user", "content": "x"}])
    assert bad.value.body == {"type": "error", "error": {
        "type": "invalid_request_error",
        "message": "Invalid request: Expected `float` <= 1.0 (at temperature)"}}
    with pytest.raises(anthropic.NotFoundError), client(deployment).messages.stream(
            model="ghost", max_tokens=5, messages=[{"role": "user", "content": "x"}]) as stream:
        stream.until_done()


def test_a_stream_failing_midway_raises_in_the_sdk(deployment: Deployment) -> None:
    pieces: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as failed, client(deployment).messages.stream(
            model="test/cut", max_tokens=64,
            messages=[{"role": "user", "content": "hello there"}]) as stream:
        pieces.extend(stream.text_stream)
    assert "".join(pieces) == "echo: hello"
    assert failed.value.status_code == 200  # the error arrived in-band, after the headers
    assert failed.value.type == "api_error"
