"""One scenario suite, run against every provider adapter and its fake upstream: plain text,
streaming, a tool call round trip, usage, upstream 401/429/500/timeout/garbage, a stream cut
mid-way, and closing a stream early. Fakes are found by tests/fakes/harness.py's contract."""

from __future__ import annotations

import asyncio
import importlib
import json
import pkgutil
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal

import pytest

import tests.fakes
from tests.fakes.harness import TOOL_ARGUMENTS, ScenarioHarness
from xrouter_router.domain.catalog import Deployment, Price
from xrouter_router.domain.errors import (
    UpstreamAuthError,
    UpstreamBadResponse,
    UpstreamRateLimited,
    UpstreamServerError,
)
from xrouter_router.domain.ports import ChatProvider
from xrouter_router.domain.types import ChatRequest, Message, StreamBatch, Tool, ToolCall
from xrouter_router.providers.http import new_session
from xrouter_router.providers.http1 import HttpClient
from xrouter_router.providers.registry import build_provider


def _harness_modules() -> list[str]:
    names = [m.name for m in pkgutil.iter_modules(tests.fakes.__path__) if m.name.endswith("_upstream")]
    return sorted(n for n in names
                  if hasattr(importlib.import_module(f"tests.fakes.{n}"), "harness"))


@pytest.fixture(params=_harness_modules(), scope="module")
def harness(request: pytest.FixtureRequest) -> Iterator[ScenarioHarness]:
    h: ScenarioHarness = importlib.import_module(f"tests.fakes.{request.param}").harness()
    h.start()
    yield h
    h.stop()


@pytest.fixture
async def session() -> AsyncIterator[HttpClient]:
    s = new_session(connect_timeout=2.0, pool_size=8)
    yield s
    await s.close()


def _provider(h: ScenarioHarness, session: HttpClient, *, wrong_key: bool = False) -> ChatProvider:
    return build_provider(h.config(wrong_key=wrong_key), session)


def _deployment(h: ScenarioHarness, scenario: str) -> Deployment:
    caps = frozenset({"streaming", "tools"})
    return Deployment(f"{scenario}@{h.type}", h.config().name, h.upstream_model(scenario),
                      Price(Decimal(1), Decimal(2)), 32000, 1024, caps)


WEATHER = Tool("get_weather", "Current weather in a city",
               b'{"type":"object","properties":{"city":{"type":"string"},'
               b'"unit":{"type":"string"}},"required":["city"]}')


def _request(text: str = "hello there", **kw: object) -> ChatRequest:
    messages = (Message(role="system", content="Be brief."), Message(role="user", content=text))
    return ChatRequest(generation_id="gen-test", model="m", messages=messages, **kw)  # type: ignore[arg-type]


async def _collect(stream: AsyncIterator[StreamBatch]) -> list[StreamBatch]:
    return [batch async for batch in stream]


def _text(batches: list[StreamBatch]) -> str:
    return "".join(d.content or "" for b in batches for d in b.deltas)


async def test_plain_text(harness: ScenarioHarness, session: HttpClient) -> None:
    completion = await _provider(harness, session).chat(_request(), _deployment(harness, "echo"))
    assert completion.message.content == "echo: hello there"
    assert completion.message.role == "assistant"
    assert completion.finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.prompt > 0 and completion.usage.completion > 0


async def test_streamed_text_and_usage(harness: ScenarioHarness, session: HttpClient) -> None:
    batches = await _collect(_provider(harness, session).stream(_request(),
                                                                _deployment(harness, "echo")))
    assert _text(batches) == "echo: hello there"
    assert [d.finish_reason for b in batches for d in b.deltas if d.finish_reason] == ["stop"]
    usage = [b.usage for b in batches if b.usage]
    assert len(usage) == 1 and usage[0].prompt > 0 and usage[0].completion > 0
    assert batches[-1].done is True


async def test_tool_call_round_trip(harness: ScenarioHarness, session: HttpClient) -> None:
    provider = _provider(harness, session)
    completion = await provider.chat(_request("weather?", tools=(WEATHER,)),
                                     _deployment(harness, "tools"))
    assert completion.finish_reason == "tool_calls"
    (call,) = completion.message.tool_calls
    assert call.name == "get_weather" and call.id
    assert json.loads(call.arguments) == TOOL_ARGUMENTS
    follow = (
        *_request("weather?", tools=(WEATHER,)).messages,
        Message(role="assistant", content=None, tool_calls=(call,)),
        Message(role="tool", content='{"temperature": -3}', tool_call_id=call.id,
                name="get_weather"),
        Message(role="user", content="thanks"),
    )
    reply = await provider.chat(ChatRequest("gen-2", "m", follow, tools=(WEATHER,)),
                                _deployment(harness, "echo"))
    assert reply.message.content == "echo: thanks"


async def test_streamed_tool_call(harness: ScenarioHarness, session: HttpClient) -> None:
    batches = await _collect(_provider(harness, session).stream(
        _request("weather?", tools=(WEATHER,)), _deployment(harness, "tools")))
    calls: dict[int, list[ToolCall]] = {}
    for b in batches:
        for d in b.deltas:
            for c in d.tool_calls:
                calls.setdefault(c.index, []).append(c)
    assert list(calls) == [0]
    parts = calls[0]
    assert parts[0].name == "get_weather" and parts[0].id
    assert json.loads("".join(p.arguments for p in parts)) == TOOL_ARGUMENTS
    assert [d.finish_reason for b in batches for d in b.deltas if d.finish_reason] == ["tool_calls"]


@pytest.mark.parametrize("stream", [False, True])
async def test_upstream_errors_map_to_the_error_tree(harness: ScenarioHarness,
                                                     session: HttpClient,
                                                     stream: bool) -> None:
    async def run(provider: ChatProvider, scenario: str) -> None:
        if stream:
            await _collect(provider.stream(_request(), _deployment(harness, scenario)))
        else:
            await provider.chat(_request(), _deployment(harness, scenario))

    provider = _provider(harness, session)
    with pytest.raises(UpstreamServerError) as server:
        await run(provider, "500")
    assert server.value.status == 500 and server.value.metadata["raw"]
    with pytest.raises(UpstreamRateLimited) as limited:
        await run(provider, "429")
    assert limited.value.status == 429
    if harness.retry_after:
        assert limited.value.retry_after == 7.0
    with pytest.raises(UpstreamAuthError) as auth:
        await run(_provider(harness, session, wrong_key=True), "echo")
    assert auth.value.status in (401, 403)
    with pytest.raises(UpstreamBadResponse):
        await run(provider, "garbage")
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.5):
            await run(provider, "slow")


async def test_stream_cut_midway(harness: ScenarioHarness, session: HttpClient) -> None:
    got: list[StreamBatch] = []
    with pytest.raises(UpstreamBadResponse):
        async for batch in _provider(harness, session).stream(_request(),
                                                              _deployment(harness, "cut")):
            got.append(batch)
    assert _text(got).startswith("echo:")
    assert _text(got) != "echo: hello there"


async def test_stream_without_usage(harness: ScenarioHarness, session: HttpClient) -> None:
    batches = await _collect(_provider(harness, session).stream(_request(),
                                                                _deployment(harness, "no-usage")))
    assert _text(batches) == "echo: hello there"
    assert all(b.usage is None for b in batches)


async def test_closing_a_stream_closes_the_upstream_connection(
        harness: ScenarioHarness, session: HttpClient) -> None:
    stream = _provider(harness, session).stream(_request(), _deployment(harness, "drip"))
    await anext(stream)
    await anext(stream)
    await stream.aclose()  # type: ignore[attr-defined]
    for _ in range(1500):  # up to 30 s on a loaded machine; usually at once
        if "drip" in harness.disconnects:
            break
        await asyncio.sleep(0.02)
    assert "drip" in harness.disconnects
