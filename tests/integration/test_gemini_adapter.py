"""The Gemini adapter against its fake Gemini API, for what the shared scenario suite does not
cover: the URL and key header, systemInstruction and generationConfig, functionResponse round
trips with generated ids and thought signatures, a stream's end without [DONE], finish reasons."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from typing import Any

import pytest

from tests.fakes.gemini_upstream import API_KEY, PREFIX, TOOL_ARGS, FakeGemini
from xrouter_router.domain.catalog import Deployment, Price
from xrouter_router.domain.errors import (
    UpstreamAuthError,
    UpstreamBadResponse,
    UpstreamRejected,
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
from xrouter_router.providers.config import ProviderConfig
from xrouter_router.providers.gemini import SKIP_SIGNATURE, GeminiProvider, build
from xrouter_router.providers.http import new_session
from xrouter_router.providers.http1 import HttpClient

WEATHER = Tool("get_weather", "Current weather",
               b'{"type":"object","properties":{"city":{"type":"string"}}}')
TIME = Tool("get_time", "Current time")
SYSTEM = Message(role="system", content="Be brief.")
CALL_ID = re.compile(r"call_[0-9a-f]{24}")


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeGemini]:
    server = FakeGemini().start()
    yield server
    server.stop()


@pytest.fixture
async def session() -> AsyncIterator[HttpClient]:
    s = new_session(connect_timeout=2.0, pool_size=4)
    yield s
    await s.close()


def _provider(fake: FakeGemini, session: HttpClient, key: str = API_KEY,
              **options: Any) -> GeminiProvider:
    return build(ProviderConfig("gemini", "gemini", fake.base_url, key, options=options), session)


def _dep(scenario: str) -> Deployment:
    return Deployment(f"{scenario}@gemini", "gemini", PREFIX + scenario,
                      Price(Decimal(1), Decimal(2)), 1_000_000, 8192,
                      frozenset({"streaming", "tools"}))


def _req(*messages: Message, **kwargs: Any) -> ChatRequest:
    return ChatRequest("gen-g", "m", messages or (SYSTEM, Message(role="user", content="hi")),
                       **kwargs)


async def _collect(stream: AsyncIterator[StreamBatch]) -> list[StreamBatch]:
    return [batch async for batch in stream]


def _deltas(batches: list[StreamBatch]) -> list[Delta]:
    return [d for b in batches for d in b.deltas]


async def test_path_key_system_instruction_and_generation_config(
        fake: FakeGemini, session: HttpClient) -> None:
    sampling = Sampling(max_tokens=100, temperature=0.3, top_k=5, stop=("END",))
    completion = await _provider(fake, session).chat(
        _req(sampling=sampling, response_format_json=b'{"type":"json_object"}'), _dep("echo"))
    assert completion.message.content == "echo: hi"
    assert fake.paths[-1] == "/v1beta/models/gemini-fake-echo:generateContent"
    assert fake.headers[-1]["x-goog-api-key"] == API_KEY
    assert fake.requests[-1] == {
        "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "generationConfig": {"candidateCount": 1, "maxOutputTokens": 100, "temperature": 0.3,
                             "topK": 5, "stopSequences": ["END"],
                             "responseMimeType": "application/json"},
    }


async def test_function_calls_get_ids_and_function_responses_round_trip(
        fake: FakeGemini, session: HttpClient) -> None:
    provider = _provider(fake, session)
    ask = _req(SYSTEM, Message(role="user", content="weather and time?"), tools=(WEATHER, TIME))
    completion = await provider.chat(ask, _dep("tools-2"))
    assert completion.finish_reason == "tool_calls"
    first, second = completion.message.tool_calls
    assert CALL_ID.fullmatch(first.id) and CALL_ID.fullmatch(second.id) and first.id != second.id
    assert [(c.index, c.name, json.loads(c.arguments)) for c in (first, second)] == [
        (0, "get_weather", TOOL_ARGS), (1, "get_time", TOOL_ARGS)]
    # OpenAI clients answer with tool_call_id only: the function name comes from the call.
    follow = (*ask.messages, completion.message,
              Message(role="tool", content='{"temperature": -3}', tool_call_id=first.id),
              Message(role="tool", content="noon", tool_call_id=second.id),
              Message(role="user", content="thanks"))
    reply = await provider.chat(_req(*follow, tools=(WEATHER, TIME)), _dep("echo"))
    assert reply.message.content == "echo: thanks"
    assert fake.requests[-1]["contents"][1:] == [
        {"role": "model", "parts": [
            {"functionCall": {"name": "get_weather", "args": TOOL_ARGS},
             "thoughtSignature": SKIP_SIGNATURE},
            {"functionCall": {"name": "get_time", "args": TOOL_ARGS}}]},
        {"role": "user", "parts": [
            {"functionResponse": {"name": "get_weather", "response": {"temperature": -3}}},
            {"functionResponse": {"name": "get_time", "response": {"output": "noon"}}},
            {"text": "thanks"}]},
    ]


async def test_without_a_thought_signature_gemini_3_rejects_the_replayed_call(
        fake: FakeGemini, session: HttpClient) -> None:
    call = ToolCall(0, "call_x", "get_weather", '{"city":"Oslo"}')
    req = _req(Message(role="user", content="weather?"),
               Message(role="assistant", tool_calls=(call,)),
               Message(role="tool", content="-3C", tool_call_id="call_x"), tools=(WEATHER,))
    with pytest.raises(UpstreamRejected) as info:
        await _provider(fake, session, thought_signature="").chat(req, _dep("echo"))
    assert info.value.status == 400
    assert "missing a thought_signature" in info.value.metadata["raw"]["error"]["message"]
    reply = await _provider(fake, session).chat(req, _dep("echo"))
    assert reply.finish_reason == "stop"


async def test_a_missing_function_response_is_rejected(
        fake: FakeGemini, session: HttpClient) -> None:
    calls = (ToolCall(0, "call_a", "get_weather", "{}"), ToolCall(1, "call_b", "get_time", "{}"))
    req = _req(Message(role="user", content="both?"),
               Message(role="assistant", tool_calls=calls),
               Message(role="tool", content="-3C", tool_call_id="call_a"), tools=(WEATHER, TIME))
    with pytest.raises(UpstreamRejected) as info:
        await _provider(fake, session).chat(req, _dep("echo"))
    assert info.value.metadata["raw"]["error"]["status"] == "INVALID_ARGUMENT"


async def test_a_stream_ends_with_the_connection_after_its_finish_reason(
        fake: FakeGemini, session: HttpClient) -> None:
    batches = await _collect(_provider(fake, session).stream(_req(), _dep("echo")))
    assert fake.paths[-1] == "/v1beta/models/gemini-fake-echo:streamGenerateContent?alt=sse"
    assert _deltas(batches) == [Delta(role="assistant", content="echo:"), Delta(content=" hi",
                                                                              finish_reason="stop")]
    # Usage is cumulative in every chunk: the last one is reported, once, on the done batch.
    assert batches[-1].deltas == () and batches[-1].done
    usage = batches[-1].usage
    assert usage is not None and usage.completion == 2
    assert [b.usage for b in batches[:-1]] == [None] * (len(batches) - 1)


async def test_a_stream_closed_without_a_finish_reason_is_a_bad_response(
        fake: FakeGemini, session: HttpClient) -> None:
    got: list[StreamBatch] = []
    with pytest.raises(UpstreamBadResponse) as info:
        async for batch in _provider(fake, session).stream(_req(), _dep("no-finish")):
            got.append(batch)
    assert "".join(d.content or "" for d in _deltas(got)) == "echo: hi"
    assert info.value.message == "gemini stream ended before it was complete"


async def test_a_streamed_function_call_has_a_generated_id(
        fake: FakeGemini, session: HttpClient) -> None:
    batches = await _collect(_provider(fake, session).stream(
        _req(Message(role="user", content="weather?"), tools=(WEATHER,)), _dep("tools")))
    (delta,) = _deltas(batches)
    (call,) = delta.tool_calls
    assert CALL_ID.fullmatch(call.id) and call.name == "get_weather"
    assert json.loads(call.arguments) == TOOL_ARGS
    assert (delta.role, delta.finish_reason) == ("assistant", "tool_calls")


@pytest.mark.parametrize(("scenario", "reason"), [
    ("max-tokens", "length"), ("safety", "content_filter"), ("blocked", "content_filter"),
])
async def test_finish_reasons(fake: FakeGemini, session: HttpClient, scenario: str,
                              reason: str) -> None:
    provider = _provider(fake, session)
    assert (await provider.chat(_req(), _dep(scenario))).finish_reason == reason
    batches = await _collect(provider.stream(_req(), _dep(scenario)))
    assert [d.finish_reason for d in _deltas(batches) if d.finish_reason] == [reason]
    assert batches[-1].done


async def test_thoughts_are_reasoning_not_content(fake: FakeGemini,
                                                  session: HttpClient) -> None:
    provider = _provider(fake, session)
    completion = await provider.chat(_req(), _dep("thoughts"))
    assert completion.message.content == "echo: hi"
    assert completion.usage is not None
    assert (completion.usage.completion, completion.usage.reasoning) == (9 + 21, 21)
    batches = await _collect(provider.stream(_req(), _dep("thoughts")))
    deltas = _deltas(batches)
    assert deltas[0] == Delta(role="assistant", reasoning="The user greets me.")
    assert "".join(d.content or "" for d in deltas) == "echo: hi"
    assert batches[-1].usage == TokenCounts(prompt=completion.usage.prompt, completion=3 + 21,
                                            reasoning=21)


async def test_key_failures_are_auth_errors(fake: FakeGemini,
                                            session: HttpClient) -> None:
    with pytest.raises(UpstreamAuthError) as bad:
        await _provider(fake, session, key="AIzaWrong").chat(_req(), _dep("echo"))
    # Gemini answers a bad key with 400 INVALID_ARGUMENT / API_KEY_INVALID, reported as 401.
    assert bad.value.status == 401
    assert bad.value.metadata["raw"]["error"]["details"][0]["reason"] == "API_KEY_INVALID"
    with pytest.raises(UpstreamAuthError) as missing:
        await _provider(fake, session, key="").chat(_req(), _dep("echo"))
    assert missing.value.status == 403
