"""/v1/messages with `thinking` and `cache_control`, driven by the official `anthropic` SDK through
gateway -> router -> the demo model (which reasons when asked) and the fake Anthropic Messages API
(thinking blocks and cache_control in its own wire format); cache_control also from the chat
format's content parts."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from anthropic import AsyncAnthropic
from anthropic.types import TextBlock, ThinkingBlock

from tests.fakes import anthropic_upstream
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.support import (
    MASTER_KEY,
    gateway_settings,
    router_settings,
    running_gateway,
    running_router,
)

THINKING: Any = {"type": "enabled", "budget_tokens": 2048}
EPHEMERAL = {"type": "ephemeral"}
DEMO_THOUGHT = "The user said «hi». I will answer in kind."


@dataclass
class Clients:
    sdk: AsyncAnthropic
    http: httpx.AsyncClient
    url: str
    fake: FakeAnthropic


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeAnthropic]:
    server = FakeAnthropic().start()
    yield server
    server.stop()


def _catalog(directory: Path, base_url: str) -> Path:
    path = directory / "catalog.toml"
    path.write_text(f"""
[providers.demo]
type = "demo"
word_delay = 0.001

[providers.claude]
type = "anthropic"
base_url = "{base_url}"
api_key_env = "FAKE_ANTHROPIC_KEY"

[[models]]
id = "xrouter/demo"
name = "demo"
aliases = ["demo"]
  [[models.deployments]]
  provider = "demo"
  upstream_model = "demo"
  capabilities = ["streaming", "tools", "json_mode"]
  price = {{ prompt = "0", completion = "0" }}
  context_length = 16000

[[models]]
id = "test/claude"
name = "claude"
  [[models.deployments]]
  provider = "claude"
  upstream_model = "claude-fake-echo"
  capabilities = ["streaming"]
  price = {{ prompt = "100", completion = "200" }}
  context_length = 16000

[[models]]
id = "test/claude-tools"
name = "claude with tools"
  [[models.deployments]]
  provider = "claude"
  upstream_model = "claude-fake-tools"
  capabilities = ["streaming", "tools", "vision"]
  price = {{ prompt = "100", completion = "200" }}
  context_length = 16000
""", encoding="utf-8")
    return path


@pytest.fixture
async def clients(tmp_path: Path, fake: FakeAnthropic,
                  monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Clients]:
    monkeypatch.setenv("FAKE_ANTHROPIC_KEY", anthropic_upstream.API_KEY)
    settings = router_settings(_catalog(tmp_path, fake.base_url))
    async with running_router(settings) as router:
        target = f"127.0.0.1:{router.server.port}"
        async with running_gateway(gateway_settings(target)) as url, \
                httpx.AsyncClient(timeout=15.0) as http, \
                AsyncAnthropic(base_url=url, api_key=MASTER_KEY, max_retries=0,
                               timeout=15) as sdk:
            yield Clients(sdk, http, url, fake)


def _parts(blocks: list[Any]) -> list[tuple[str, str]]:
    return [(b.type, b.thinking if isinstance(b, ThinkingBlock) else b.text) for b in blocks
            if isinstance(b, ThinkingBlock | TextBlock)]


@pytest.mark.parametrize(("model", "thought", "text"), [
    ("demo", DEMO_THOUGHT, "Hello from the XRouter demo model! You said: «hi»"),
    ("test/claude", anthropic_upstream.THOUGHT, "echo: hi")])
async def test_thinking_whole_and_streamed(clients: Clients, model: str, thought: str,
                                           text: str) -> None:
    messages: Any = [{"role": "user", "content": "hi"}]
    reply = await clients.sdk.messages.create(model=model, max_tokens=4096, thinking=THINKING,
                                              messages=messages)
    assert _parts(reply.content) == [("thinking", thought), ("text", text)]
    async with clients.sdk.messages.stream(model=model, max_tokens=4096, thinking=THINKING,
                                           messages=messages) as stream:
        kinds = [event.type async for event in stream]
        final = await stream.get_final_message()
    assert _parts(final.content) == [("thinking", thought), ("text", text)]
    assert "thinking" in kinds and "text" in kinds  # the SDK's thinking_delta and text events


async def test_thinking_reaches_anthropic_as_its_budget(clients: Clients) -> None:
    await clients.sdk.messages.create(model="test/claude", max_tokens=4096, thinking=THINKING,
                                      messages=[{"role": "user", "content": "hi"}])
    assert clients.fake.requests[-1]["thinking"] == THINKING
    assert clients.fake.requests[-1]["max_tokens"] == 4096


async def test_a_budget_not_under_max_tokens_is_refused(clients: Clients) -> None:
    resp = await clients.http.post(f"{clients.url}/v1/messages", headers={
        "x-api-key": MASTER_KEY, "anthropic-version": "2023-06-01"}, json={
        "model": "demo", "max_tokens": 2048, "thinking": THINKING,
        "messages": [{"role": "user", "content": "hi"}]})
    assert resp.status_code == 400
    assert resp.json()["error"]["message"] == (
        "`max_tokens` must be greater than `thinking.budget_tokens`")


@pytest.mark.parametrize(("signature", "sent"), [
    ("sig", [{"type": "thinking", "thinking": "earlier", "signature": "sig"},
             {"type": "text", "text": "hello"}]),
    ("", "hello")])
async def test_thinking_blocks_sent_back_go_upstream_only_signed(
        clients: Clients, signature: str, sent: Any) -> None:
    reply = await clients.sdk.messages.create(model="test/claude", max_tokens=64, messages=[
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "earlier", "signature": signature},
            {"type": "text", "text": "hello"}]},
        {"role": "user", "content": "again"}])
    assert _parts(reply.content) == [("text", "echo: again")]
    assert clients.fake.requests[-1]["messages"][1] == {"role": "assistant", "content": sent}


WEATHER: Any = {"name": "get_weather", "description": "Weather in a city",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}


@pytest.mark.parametrize("streamed", [False, True])
async def test_a_tool_round_trip_with_thinking_keeps_the_signature(clients: Clients,
                                                                   streamed: bool) -> None:
    """Anthropic requires the tool-using turn's thinking block back, signature intact: the
    signature crosses the router both ways (the fake refuses the next turn otherwise)."""
    first: Any = [{"role": "user", "content": "Weather in Moscow?"}]
    args: Any = {"model": "test/claude-tools", "max_tokens": 4096, "thinking": THINKING,
                 "tools": [WEATHER]}
    if streamed:
        async with clients.sdk.messages.stream(messages=first, **args) as stream:
            reply = await stream.get_final_message()
    else:
        reply = await clients.sdk.messages.create(messages=first, **args)
    thinking = reply.content[0]
    assert isinstance(thinking, ThinkingBlock)
    assert (thinking.thinking, thinking.signature) == (
        anthropic_upstream.THOUGHT, anthropic_upstream.THOUGHT_SIGNATURE)
    call = reply.content[-1]
    assert call.type == "tool_use"
    follow_up: Any = [*first, {"role": "assistant", "content": reply.content},
                      {"role": "user", "content": [{"type": "tool_result",
                                                    "tool_use_id": call.id, "content": "-3 C"}]}]
    again = await clients.sdk.messages.create(messages=follow_up, **args)
    assert again.stop_reason == "tool_use"
    assert clients.fake.requests[-1]["messages"][1]["content"][0] == {
        "type": "thinking", "thinking": anthropic_upstream.THOUGHT,
        "signature": anthropic_upstream.THOUGHT_SIGNATURE}


async def test_cache_control_reaches_anthropic_from_the_messages_format(clients: Clients) -> None:
    await clients.sdk.messages.create(
        model="test/claude", max_tokens=64,
        system=[{"type": "text", "text": "A long policy.", "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": [
            {"type": "text", "text": "A long document.", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "Sum it up."}]}])
    sent = clients.fake.requests[-1]
    assert sent["system"] == [{"type": "text", "text": "A long policy.",
                               "cache_control": EPHEMERAL}]
    assert sent["messages"] == [{"role": "user", "content": [
        {"type": "text", "text": "A long document.", "cache_control": EPHEMERAL},
        {"type": "text", "text": "Sum it up."}]}]


async def test_cache_control_reaches_anthropic_from_the_chat_format(clients: Clients) -> None:
    resp = await clients.http.post(f"{clients.url}/v1/chat/completions", headers={
        "Authorization": f"Bearer {MASTER_KEY}"}, json={"model": "test/claude", "messages": [
            {"role": "system", "content": [
                {"type": "text", "text": "A long policy.", "cache_control": EPHEMERAL}]},
            {"role": "user", "content": [
                {"type": "text", "text": "A long document.",
                 "cache_control": {"type": "ephemeral", "ttl": "1h"}},
                {"type": "text", "text": "Sum it up."}]}]})
    assert resp.status_code == 200, resp.text
    sent = clients.fake.requests[-1]
    assert sent["system"] == [{"type": "text", "text": "A long policy.",
                               "cache_control": EPHEMERAL}]
    assert sent["messages"][0]["content"][0] == {
        "type": "text", "text": "A long document.",
        "cache_control": {"type": "ephemeral", "ttl": "1h"}}


async def test_a_chat_tool_round_trip_with_reasoning_details_keeps_the_signature(
        clients: Clients) -> None:
    """The chat format carries the signature in OpenRouter's `reasoning_details`, both ways."""
    auth = {"Authorization": f"Bearer {MASTER_KEY}"}
    tools = [{"type": "function", "function": {"name": "get_weather",
                                               "parameters": WEATHER["input_schema"]}}]
    body: Any = {"model": "test/claude-tools", "max_tokens": 4096, "tools": tools,
                 "reasoning": {"max_tokens": 2048},
                 "messages": [{"role": "user", "content": "Weather in Moscow?"}]}
    first = await clients.http.post(f"{clients.url}/v1/chat/completions", headers=auth,
                                    json=body)
    assert first.status_code == 200, first.text
    message = first.json()["choices"][0]["message"]
    assert message["reasoning_details"] == [{
        "type": "reasoning.text", "text": anthropic_upstream.THOUGHT, "index": 0,
        "signature": anthropic_upstream.THOUGHT_SIGNATURE}]
    call = message["tool_calls"][0]
    body["messages"] += [message, {"role": "tool", "tool_call_id": call["id"], "content": "-3 C"}]
    again = await clients.http.post(f"{clients.url}/v1/chat/completions", headers=auth, json=body)
    assert again.status_code == 200, again.text
    assert clients.fake.requests[-1]["messages"][1]["content"][0] == {
        "type": "thinking", "thinking": anthropic_upstream.THOUGHT,
        "signature": anthropic_upstream.THOUGHT_SIGNATURE}


PIXEL = "https://example.com/chart.png"


def _assert_breakpoints(sent: dict[str, Any]) -> None:
    """The tool's, the image's and the tool result's breakpoints reached Anthropic."""
    assert sent["tools"][0]["cache_control"] == EPHEMERAL
    assert sent["messages"][0]["content"][0] == {
        "type": "image", "source": {"type": "url", "url": PIXEL}, "cache_control": EPHEMERAL}
    assert sent["messages"][2]["content"] == [{"type": "tool_result", "tool_use_id": "toolu_1",
                                               "content": "-3 C", "cache_control": EPHEMERAL}]


async def test_cache_control_on_tools_images_and_tool_results_from_the_messages_format(
        clients: Clients) -> None:
    """Claude Code's breakpoints: the last tool's definition, an image, a tool result."""
    tools: Any = [{**WEATHER, "cache_control": EPHEMERAL}]
    messages: Any = [
        {"role": "user", "content": [
            {"type": "image", "source": {"type": "url", "url": PIXEL}, "cache_control": EPHEMERAL},
            {"type": "text", "text": "Weather?"}]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1",
                                           "name": "get_weather", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                      "content": "-3 C", "cache_control": EPHEMERAL}]}]
    await clients.sdk.messages.create(model="test/claude-tools", max_tokens=64, tools=tools,
                                      messages=messages)
    _assert_breakpoints(clients.fake.requests[-1])


async def test_cache_control_on_tools_images_and_tool_results_from_the_chat_format(
        clients: Clients) -> None:
    resp = await clients.http.post(f"{clients.url}/v1/chat/completions", headers={
        "Authorization": f"Bearer {MASTER_KEY}"}, json={
            "model": "test/claude-tools",
            "tools": [{"type": "function", "cache_control": EPHEMERAL,
                       "function": {"name": "get_weather",
                                    "parameters": WEATHER["input_schema"]}}],
            "messages": [
                {"role": "user", "content": [
                    {"type": "image_url", "image_url": {"url": PIXEL},
                     "cache_control": EPHEMERAL},
                    {"type": "text", "text": "Weather?"}]},
                {"role": "assistant", "content": None, "tool_calls": [
                    {"id": "toolu_1", "type": "function",
                     "function": {"name": "get_weather", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "toolu_1", "content": [
                    {"type": "text", "text": "-3 C", "cache_control": EPHEMERAL}]}]})
    assert resp.status_code == 200, resp.text
    _assert_breakpoints(clients.fake.requests[-1])
