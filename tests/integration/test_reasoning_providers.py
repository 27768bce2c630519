"""The one `reasoning` parameter (OpenRouter's shape, in ChatRequest.extra_json) through the
OpenAI-compatible, Anthropic and Gemini adapters against their fakes: what each upstream is sent
in its own terms, and the reasoning that comes back (whole and streamed), hidden by
`exclude: true`. Also Anthropic's cache_control passed through from content parts."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

import orjson
import pytest

from tests.fakes import anthropic_upstream, gemini_upstream, openai_upstream
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.gemini_upstream import FakeGemini
from tests.fakes.openai_upstream import FakeOpenAI
from xrouter_common.env import ConfigError
from xrouter_router.domain.catalog import Deployment, Price
from xrouter_router.domain.ports import ChatProvider
from xrouter_router.domain.types import (
    ChatRequest,
    ContentPart,
    Message,
    Sampling,
    StreamBatch,
    Tool,
)
from xrouter_router.providers import anthropic, gemini, openai
from xrouter_router.providers.config import ProviderConfig
from xrouter_router.providers.http import new_session
from xrouter_router.providers.http1 import HttpClient

HIGH = {"effort": "high"}


@dataclass
class Fakes:
    openai: FakeOpenAI
    anthropic: FakeAnthropic
    gemini: FakeGemini


@pytest.fixture(scope="module")
def fakes() -> Iterator[Fakes]:
    servers = Fakes(FakeOpenAI().start(), FakeAnthropic().start(), FakeGemini().start())
    yield servers
    for server in (servers.openai, servers.anthropic, servers.gemini):
        server.stop()


@pytest.fixture
def fake_openai(fakes: Fakes) -> FakeOpenAI:
    return fakes.openai


@pytest.fixture
def fake_anthropic(fakes: Fakes) -> FakeAnthropic:
    return fakes.anthropic


@pytest.fixture
def fake_gemini(fakes: Fakes) -> FakeGemini:
    return fakes.gemini


@pytest.fixture
async def session() -> AsyncIterator[HttpClient]:
    async with new_session(connect_timeout=2.0, pool_size=4) as s:
        yield s


def _dep(upstream_model: str, max_completion_tokens: int = 0) -> Deployment:
    return Deployment(f"{upstream_model}@up", "up", upstream_model, Price(Decimal(1), Decimal(2)),
                      200_000, max_completion_tokens, frozenset({"streaming"}))


def _req(reasoning: dict[str, Any] | None = None, *, max_tokens: int | None = None,
         temperature: float | None = None, messages: tuple[Message, ...] = ()) -> ChatRequest:
    extra = orjson.dumps({"reasoning": reasoning}) if reasoning is not None else b""
    return ChatRequest("gen-r", "m", messages or (Message(role="user", content="hi"),),
                       sampling=Sampling(max_tokens=max_tokens, temperature=temperature),
                       extra_json=extra)


async def _stream(provider: ChatProvider, request: ChatRequest,
                  deployment: Deployment) -> tuple[str, str]:
    """(the streamed reasoning, the streamed content)."""
    batches: list[StreamBatch] = [b async for b in provider.stream(request, deployment)]
    deltas = [d for b in batches for d in b.deltas]
    return ("".join(d.reasoning or "" for d in deltas), "".join(d.content or "" for d in deltas))


# ---- OpenAI-compatible ----------------------------------------------------------------------

def _openai(fake: FakeOpenAI, session: HttpClient, **options: Any) -> ChatProvider:
    return openai.build(ProviderConfig("up", "openai", fake.base_url, openai_upstream.API_KEY,
                                       options=options), session)


@pytest.mark.parametrize(("reasoning", "effort"), [
    (HIGH, "high"), ({"max_tokens": 2000}, "medium"), ({"enabled": True}, "medium"),
    ({"effort": "none"}, "none"), ({"enabled": False}, None)])
async def test_openai_format_sends_reasoning_effort(
        fake_openai: FakeOpenAI, session: HttpClient, reasoning: dict[str, Any],
        effort: str | None) -> None:
    provider = _openai(fake_openai, session, reasoning_format="openai")
    await provider.chat(_req(reasoning), _dep("fake-echo"))
    sent = fake_openai.requests[-1]
    assert "reasoning" not in sent
    assert sent.get("reasoning_effort") == effort


async def test_openrouter_format_passes_reasoning_through(
        fake_openai: FakeOpenAI, session: HttpClient) -> None:
    wanted = {"effort": "low", "exclude": True}
    await _openai(fake_openai, session).chat(_req(wanted), _dep("fake-echo"))
    assert fake_openai.requests[-1]["reasoning"] == wanted
    assert "reasoning_effort" not in fake_openai.requests[-1]


def test_reasoning_format_defaults_by_url_and_is_checked() -> None:
    public = openai.build(ProviderConfig("o", "openai"), None)  # type: ignore[arg-type]
    body = orjson.loads(public.body(_req(HIGH), _dep("gpt-5"), stream=False))
    assert (body["reasoning_effort"], "reasoning" in body) == ("high", False)
    with pytest.raises(ConfigError, match=r"providers\.o\.reasoning_format"):
        openai.build(ProviderConfig("o", "openai", options={"reasoning_format": "x"}),
                     None)  # type: ignore[arg-type]


async def test_openai_compatible_reasoning_content_whole_and_streamed(
        fake_openai: FakeOpenAI, session: HttpClient) -> None:
    provider = _openai(fake_openai, session)
    whole = await provider.chat(_req(HIGH), _dep("fake-deepseek-reasoner"))
    assert (whole.message.reasoning, whole.message.content) == (openai_upstream.THOUGHT,
                                                                "echo: hi")
    assert await _stream(provider, _req(HIGH), _dep("fake-deepseek-reasoner")) == (
        openai_upstream.THOUGHT, "echo: hi")


async def test_openai_compatible_exclude_hides_reasoning(
        fake_openai: FakeOpenAI, session: HttpClient) -> None:
    provider = _openai(fake_openai, session)
    hidden = {"effort": "high", "exclude": True}
    whole = await provider.chat(_req(hidden), _dep("fake-deepseek-reasoner"))
    assert (whole.message.reasoning, whole.message.content) == (None, "echo: hi")
    assert await _stream(provider, _req(hidden), _dep("fake-deepseek-reasoner")) == ("",
                                                                                     "echo: hi")


# ---- Anthropic ------------------------------------------------------------------------------

def _anthropic(fake: FakeAnthropic, session: HttpClient) -> ChatProvider:
    return anthropic.build(ProviderConfig("claude", "anthropic", fake.base_url,
                                          anthropic_upstream.API_KEY), session)


@pytest.mark.parametrize(("reasoning", "limits", "sent"), [
    # (max_tokens asked, the deployment's max_completion_tokens) -> (max_tokens, budget_tokens)
    # effort -> its share of max_tokens (high: 80%)
    (HIGH, (10_000, 0), (10_000, 8000)),
    # an explicit budget wins over the effort
    ({"effort": "low", "max_tokens": 3000}, (10_000, 0), (10_000, 3000)),
    # no max_tokens: the adapter's default (4096) and low's share, at least 1024
    ({"effort": "low"}, (None, 0), (4096, 1024)),
    # the budget does not fit under max_tokens: max_tokens grows by it
    ({"max_tokens": 2048}, (500, 0), (2548, 2048)),
    # ... up to the deployment's ceiling, the budget kept under it
    ({"max_tokens": 4000}, (1000, 3000), (3000, 2999)),
])
async def test_anthropic_thinking_budget(
        fake_anthropic: FakeAnthropic, session: HttpClient,
        reasoning: dict[str, Any], limits: tuple[int | None, int], sent: tuple[int, int]) -> None:
    await _anthropic(fake_anthropic, session).chat(
        _req(reasoning, max_tokens=limits[0], temperature=0.3),
        _dep("claude-fake-echo", limits[1]))
    body = fake_anthropic.requests[-1]
    assert (body["max_tokens"], body["thinking"]) == (
        sent[0], {"type": "enabled", "budget_tokens": sent[1]})
    assert "temperature" not in body  # refused by Anthropic with thinking


async def test_anthropic_without_reasoning_sends_no_thinking(
        fake_anthropic: FakeAnthropic, session: HttpClient) -> None:
    provider = _anthropic(fake_anthropic, session)
    for request in (_req(None, temperature=0.3), _req({"effort": "none"}, temperature=0.3)):
        whole = await provider.chat(request, _dep("claude-fake-echo"))
        assert whole.message.reasoning is None
        assert "thinking" not in fake_anthropic.requests[-1]
        assert fake_anthropic.requests[-1]["temperature"] == 0.3


@pytest.mark.parametrize(("choice", "thinks"), [
    (b'"auto"', True), (b'"required"', False),
    (b'{"type":"function","function":{"name":"get_weather"}}', False)])
async def test_anthropic_thinks_unless_a_tool_call_is_forced(
        fake_anthropic: FakeAnthropic, session: HttpClient, choice: bytes,
        thinks: bool) -> None:
    request = replace(_req(HIGH), tools=(Tool("get_weather"),), tool_choice_json=choice)
    whole = await _anthropic(fake_anthropic, session).chat(request, _dep("claude-fake-tools"))
    assert ("thinking" in fake_anthropic.requests[-1]) is thinks
    assert whole.finish_reason == "tool_calls"


async def test_anthropic_thinking_blocks_become_reasoning(
        fake_anthropic: FakeAnthropic, session: HttpClient) -> None:
    provider = _anthropic(fake_anthropic, session)
    whole = await provider.chat(_req(HIGH), _dep("claude-fake-echo"))
    assert (whole.message.reasoning, whole.message.content) == (anthropic_upstream.THOUGHT,
                                                                "echo: hi")
    assert await _stream(provider, _req(HIGH), _dep("claude-fake-echo")) == (
        anthropic_upstream.THOUGHT, "echo: hi")


async def test_anthropic_exclude_hides_thinking(
        fake_anthropic: FakeAnthropic, session: HttpClient) -> None:
    provider = _anthropic(fake_anthropic, session)
    hidden = {"effort": "high", "exclude": True}
    whole = await provider.chat(_req(hidden), _dep("claude-fake-echo"))
    assert "thinking" in fake_anthropic.requests[-1]  # still asked for, and billed
    assert (whole.message.reasoning, whole.message.content) == (None, "echo: hi")
    assert await _stream(provider, _req(hidden), _dep("claude-fake-echo")) == ("", "echo: hi")


def _cached(text: str) -> ContentPart:
    raw = {"type": "text", "text": text, "cache_control": {"type": "ephemeral"}}
    return ContentPart(type="text", text=text, raw_json=orjson.dumps(raw))


async def test_anthropic_cache_control_reaches_the_upstream(
        fake_anthropic: FakeAnthropic, session: HttpClient) -> None:
    messages = (
        Message(role="system", parts=(_cached("A long policy."), ContentPart("text", "Be brief."))),
        Message(role="user", parts=(_cached("A long document."), ContentPart("text", "Sum up."))),
    )
    await _anthropic(fake_anthropic, session).chat(_req(messages=messages),
                                                    _dep("claude-fake-echo"))
    body = fake_anthropic.requests[-1]
    ephemeral = {"type": "ephemeral"}
    assert body["system"] == [
        {"type": "text", "text": "A long policy.", "cache_control": ephemeral},
        {"type": "text", "text": "Be brief."}]
    assert body["messages"] == [{"role": "user", "content": [
        {"type": "text", "text": "A long document.", "cache_control": ephemeral},
        {"type": "text", "text": "Sum up."}]}]


# ---- Gemini ---------------------------------------------------------------------------------

def _gemini(fake: FakeGemini, session: HttpClient) -> ChatProvider:
    return gemini.build(ProviderConfig("gem", "gemini", fake.base_url, gemini_upstream.API_KEY),
                        session)


@pytest.mark.parametrize(("reasoning", "max_tokens", "config"), [
    (HIGH, 10_000, {"thinkingBudget": 8000, "includeThoughts": True}),
    (HIGH, None, {"thinkingBudget": 16384, "includeThoughts": True}),
    ({"max_tokens": 512, "exclude": True}, None, {"thinkingBudget": 512, "includeThoughts": False}),
    ({"effort": "none"}, None, {"thinkingBudget": 0}),
])
async def test_gemini_thinking_config(
        fake_gemini: FakeGemini, session: HttpClient, reasoning: dict[str, Any],
        max_tokens: int | None, config: dict[str, Any]) -> None:
    await _gemini(fake_gemini, session).chat(_req(reasoning, max_tokens=max_tokens),
                                             _dep("gemini-fake-echo"))
    assert fake_gemini.requests[-1]["generationConfig"]["thinkingConfig"] == config


async def test_gemini_thought_parts_become_reasoning(
        fake_gemini: FakeGemini, session: HttpClient) -> None:
    provider = _gemini(fake_gemini, session)
    whole = await provider.chat(_req(HIGH), _dep("gemini-fake-echo"))
    assert (whole.message.reasoning, whole.message.content) == ("The user greets me.", "echo: hi")
    assert await _stream(provider, _req(HIGH), _dep("gemini-fake-echo")) == (
        "The user greets me.", "echo: hi")
    await provider.chat(_req(None), _dep("gemini-fake-echo"))
    assert "thinkingConfig" not in fake_gemini.requests[-1]["generationConfig"]


async def test_gemini_exclude_hides_thoughts(fake_gemini: FakeGemini,
                                             session: HttpClient) -> None:
    provider = _gemini(fake_gemini, session)
    hidden = {"effort": "low", "exclude": True}
    # The `thoughts` scenario answers with a thought part whatever it was asked.
    whole = await provider.chat(_req(hidden), _dep("gemini-fake-thoughts"))
    assert (whole.message.reasoning, whole.message.content) == (None, "echo: hi")
    assert whole.usage is not None and whole.usage.reasoning == 21  # billed all the same
    assert await _stream(provider, _req(hidden), _dep("gemini-fake-thoughts")) == ("",
                                                                                   "echo: hi")
