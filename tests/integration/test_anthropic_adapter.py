"""The Anthropic adapter against its fake Messages API, for what the shared scenario suite does
not cover: system hoisting, the required max_tokens, turn merging, tool_use/tool_result round
trips, input_json_delta assembly, ping and in-stream error events, 529, cache usage."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from typing import Any

import pytest

from tests.fakes.anthropic_upstream import API_KEY, PREFIX, TOOL_INPUT, FakeAnthropic
from xrouter_router.domain.catalog import Deployment, Price
from xrouter_router.domain.errors import (
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamServerError,
)
from xrouter_router.domain.types import (
    ChatRequest,
    Delta,
    Message,
    Sampling,
    StreamBatch,
    TokenCounts,
    Tool,
    ToolCall,
)
from xrouter_router.providers.anthropic import AnthropicProvider, build
from xrouter_router.providers.config import ProviderConfig
from xrouter_router.providers.http import new_session
from xrouter_router.providers.http1 import HttpClient

WEATHER = Tool("get_weather", "Current weather",
               b'{"type":"object","properties":{"city":{"type":"string"}}}')
TIME = Tool("get_time", "Current time")
SYSTEM = Message(role="system", content="Be brief.")


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeAnthropic]:
    server = FakeAnthropic().start()
    yield server
    server.stop()


@pytest.fixture
async def session() -> AsyncIterator[HttpClient]:
    s = new_session(connect_timeout=2.0, pool_size=4)
    yield s
    await s.close()


def _provider(fake: FakeAnthropic, session: HttpClient,
              **options: Any) -> AnthropicProvider:
    return build(ProviderConfig("claude", "anthropic", fake.base_url, API_KEY, options=options),
                 session)


def _dep(scenario: str, max_completion_tokens: int = 0) -> Deployment:
    return Deployment(f"{scenario}@claude", "claude", PREFIX + scenario, Price(Decimal(1), Decimal(2)),
                      200_000, max_completion_tokens, frozenset({"streaming", "tools"}))


def _req(*messages: Message, **kwargs: Any) -> ChatRequest:
    return ChatRequest("gen-a", "m", messages or (SYSTEM, Message(role="user", content="hi")),
                       **kwargs)


async def _collect(stream: AsyncIterator[StreamBatch]) -> list[StreamBatch]:
    return [batch async for batch in stream]


def _deltas(batches: list[StreamBatch]) -> list[Delta]:
    return [d for b in batches for d in b.deltas]


async def test_headers_system_hoisting_and_the_default_max_tokens(
        fake: FakeAnthropic, session: HttpClient) -> None:
    completion = await _provider(fake, session).chat(_req(), _dep("echo"))
    assert completion.message.content == "echo: hi"
    assert fake.requests[-1] == {"model": "claude-fake-echo", "max_tokens": 4096,
                                 "system": "Be brief.",
                                 "messages": [{"role": "user", "content": "hi"}]}
    headers = fake.headers[-1]
    assert (headers["x-api-key"], headers["anthropic-version"], headers["content-type"]) == (
        API_KEY, "2023-06-01", "application/json")


async def test_options_set_the_version_and_default_max_tokens_within_the_deployment_cap(
        fake: FakeAnthropic, session: HttpClient) -> None:
    provider = _provider(fake, session, version="2024-10-22", default_max_tokens=512)
    await provider.chat(_req(), _dep("echo"))
    assert fake.requests[-1]["max_tokens"] == 512
    assert fake.headers[-1]["anthropic-version"] == "2024-10-22"
    await provider.chat(_req(), _dep("echo", max_completion_tokens=256))
    assert fake.requests[-1]["max_tokens"] == 256


async def test_sampling_reaches_anthropic_within_its_ranges(
        fake: FakeAnthropic, session: HttpClient) -> None:
    sampling = Sampling(max_tokens=64, temperature=1.8, top_p=0.5, top_k=20, seed=3,
                        stop=("END",))
    await _provider(fake, session).chat(_req(sampling=sampling), _dep("echo"))
    sent = fake.requests[-1]
    assert (sent["max_tokens"], sent["temperature"], sent["top_p"], sent["top_k"],
            sent["stop_sequences"]) == (64, 1.0, 0.5, 20, ["END"])
    assert "seed" not in sent


async def test_consecutive_user_messages_are_merged_into_one_turn(
        fake: FakeAnthropic, session: HttpClient) -> None:
    req = _req(Message(role="user", content="first"), Message(role="user", content="second"))
    await _provider(fake, session).chat(req, _dep("echo"))
    assert fake.requests[-1]["messages"] == [{"role": "user", "content": [
        {"type": "text", "text": "first"}, {"type": "text", "text": "second"}]}]


async def test_parallel_tool_use_and_tool_result_round_trip(
        fake: FakeAnthropic, session: HttpClient) -> None:
    provider = _provider(fake, session)
    ask = _req(SYSTEM, Message(role="user", content="weather and time?"), tools=(WEATHER, TIME))
    completion = await provider.chat(ask, _dep("tools-2"))
    assert completion.finish_reason == "tool_calls"
    assert completion.message.content == "Let me check."
    args = json.dumps(TOOL_INPUT, separators=(",", ":"))
    assert completion.message.tool_calls == (ToolCall(0, "toolu_01FakeToolUse0", "get_weather", args),
                                             ToolCall(1, "toolu_01FakeToolUse1", "get_time", args))
    follow = (*ask.messages, completion.message,
              Message(role="tool", content="-3C", tool_call_id="toolu_01FakeToolUse0"),
              Message(role="tool", content="noon", tool_call_id="toolu_01FakeToolUse1"),
              Message(role="user", content="thanks"))
    reply = await provider.chat(_req(*follow, tools=(WEATHER, TIME)), _dep("echo"))
    assert reply.message.content == "echo: thanks"
    assert fake.requests[-1]["messages"][1:] == [
        {"role": "assistant", "content": [
            {"type": "text", "text": "Let me check."},
            {"type": "tool_use", "id": "toolu_01FakeToolUse0", "name": "get_weather",
             "input": TOOL_INPUT},
            {"type": "tool_use", "id": "toolu_01FakeToolUse1", "name": "get_time",
             "input": TOOL_INPUT}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_01FakeToolUse0", "content": "-3C"},
            {"type": "tool_result", "tool_use_id": "toolu_01FakeToolUse1", "content": "noon"},
            {"type": "text", "text": "thanks"}]},
    ]


async def test_a_tool_use_without_its_result_is_rejected_by_anthropic(
        fake: FakeAnthropic, session: HttpClient) -> None:
    call = ToolCall(0, "toolu_x", "get_weather", '{"city":"Oslo"}')
    req = _req(Message(role="user", content="weather?"),
               Message(role="assistant", tool_calls=(call,)),
               Message(role="user", content="never mind"), tools=(WEATHER,))
    with pytest.raises(UpstreamRejected) as info:
        await _provider(fake, session).chat(req, _dep("echo"))
    assert info.value.status == 400
    assert info.value.metadata["raw"]["error"]["type"] == "invalid_request_error"
    assert "`tool_use` ids were found without `tool_result`" in (
        info.value.metadata["raw"]["error"]["message"])


async def test_input_json_deltas_assemble_per_tool_position_with_pings_ignored(
        fake: FakeAnthropic, session: HttpClient) -> None:
    batches = await _collect(_provider(fake, session).stream(
        _req(Message(role="user", content="both?"), tools=(WEATHER, TIME)), _dep("tools-2")))
    deltas = _deltas(batches)
    calls: dict[int, list[ToolCall]] = {}
    for d in deltas:
        for c in d.tool_calls:
            calls.setdefault(c.index, []).append(c)
    assert sorted(calls) == [0, 1]
    for index, name in ((0, "get_weather"), (1, "get_time")):
        first, *rest = calls[index]
        assert (first.id, first.name, first.arguments) == (f"toolu_01FakeToolUse{index}", name, "")
        assert len(rest) == 3 and all(not c.id and not c.name for c in rest)
        assert json.loads("".join(c.arguments for c in rest)) == TOOL_INPUT
    assert "".join(d.content or "" for d in deltas) == "Let me check."
    assert [d.finish_reason for d in deltas if d.finish_reason] == ["tool_calls"]
    assert deltas[0] == Delta(role="assistant")
    assert not [d for d in deltas if d == Delta()]
    assert batches[-1].done


@pytest.mark.parametrize(("scenario", "cls"), [
    ("midstream-overloaded", UpstreamServerError), ("midstream-rate-limit", UpstreamRateLimited),
])
async def test_an_error_event_ends_the_stream_with_an_upstream_error(
        fake: FakeAnthropic, session: HttpClient, scenario: str,
        cls: type[Exception]) -> None:
    got: list[StreamBatch] = []
    with pytest.raises(cls) as info:
        async for batch in _provider(fake, session).stream(_req(), _dep(scenario)):
            got.append(batch)
    assert "".join(d.content or "" for d in _deltas(got)).startswith("echo:")
    assert info.value.metadata["raw"]["type"] == "error"  # type: ignore[attr-defined]


async def test_529_overloaded_is_a_retryable_server_error(
        fake: FakeAnthropic, session: HttpClient) -> None:
    for run in (lambda p: p.chat(_req(), _dep("529")),
                lambda p: _collect(p.stream(_req(), _dep("529")))):
        with pytest.raises(UpstreamServerError) as info:
            await run(_provider(fake, session))
        assert info.value.status == 529 and info.value.retryable
        assert info.value.metadata["raw"] == {
            "type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"},
            "request_id": "req_011CFakeUpstreamRequest"}


async def test_max_tokens_stop_is_length(fake: FakeAnthropic,
                                         session: HttpClient) -> None:
    provider = _provider(fake, session)
    assert (await provider.chat(_req(), _dep("max-tokens"))).finish_reason == "length"
    batches = await _collect(provider.stream(_req(), _dep("max-tokens")))
    assert [d.finish_reason for d in _deltas(batches) if d.finish_reason] == ["length"]


async def test_cache_reads_are_cached_prompt_tokens(fake: FakeAnthropic,
                                                    session: HttpClient) -> None:
    provider = _provider(fake, session)
    completion = await provider.chat(_req(), _dep("cached"))
    sent = fake.requests[-1]
    assert completion.usage is not None
    assert completion.usage.cached == 1200 and completion.usage.prompt > 1200
    batches = await _collect(provider.stream(_req(), _dep("cached")))
    (usage,) = [b.usage for b in batches if b.usage]
    # The same messages cost the same prompt; "echo: hi" streams as two text deltas.
    assert usage == TokenCounts(prompt=completion.usage.prompt, completion=2, cached=1200)
    assert fake.requests[-1]["messages"] == sent["messages"]
