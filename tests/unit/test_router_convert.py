"""Proto <-> domain translation in the router's transport: requests in; results, stream
events, usage and model listings out."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from tests.unit.builders import deployment, model
from xrouter.v1 import router_pb2 as pb
from xrouter_router.domain.errors import InvalidRequest, UpstreamServerError
from xrouter_router.domain.service import StreamEnd, StreamEvent
from xrouter_router.domain.types import (
    ChatRequest,
    ChatResult,
    Completion,
    ContentPart,
    Delta,
    Message,
    ProviderPreferences,
    Sampling,
    Served,
    TokenCounts,
    Tool,
    ToolCall,
    Usage,
)
from xrouter_router.transport.convert import (
    event_to_proto,
    model_to_proto,
    per_token,
    request_from_proto,
    result_to_proto,
    usage_to_proto,
)
from xrouter_router.transport.errors import to_detail

HI = pb.Message(role="user", content="hi")


def test_a_minimal_request_leaves_every_optional_field_unset() -> None:
    r = pb.ChatRequest(generation_id="gen-1", model="m", messages=[HI])
    assert request_from_proto(r) == ChatRequest(
        generation_id="gen-1", model="m", messages=(Message(role="user", content="hi"),))


def test_a_full_request() -> None:
    r = pb.ChatRequest(
        generation_id="gen-2", model="m", models=["f1", "f2"],
        messages=[
            pb.Message(role="system", content=""),
            pb.Message(role="user", name="alice", parts=[
                pb.ContentPart(type="text", text="look"),
                pb.ContentPart(type="image_url", image_url="https://x/a.png", detail="low"),
                pb.ContentPart(type="file", raw_json=b'{"type":"file","file":{}}'),
            ]),
            pb.Message(role="assistant", tool_calls=[
                pb.ToolCall(index=0, id="call_1", name="f", arguments="{}")]),
            pb.Message(role="tool", content="42", tool_call_id="call_1"),
        ],
        max_tokens=0, temperature=0.0, top_p=0.5, top_k=0, frequency_penalty=0.0,
        presence_penalty=-1.0, repetition_penalty=1.5, seed=0, stop=["END"],
        tools=[pb.Tool(name="f", description="d", parameters_json=b'{"type":"object"}', strict=False),
               pb.Tool(name="g")],
        tool_choice_json=b'"auto"', response_format_json=b'{"type":"json_object"}', user="u-1",
        provider=pb.ProviderPreferences(
            order=["a", "b"], allow_fallbacks=False, require_parameters=True,
            data_collection="deny", only=["a", "b", "c"], ignore=["d"], sort="price",
            max_price_prompt="1.5", max_price_completion="0.000001"),
        extra_json=b'{"logprobs":true}',
    )
    assert request_from_proto(r) == ChatRequest(
        generation_id="gen-2", model="m", fallback_models=("f1", "f2"),
        messages=(
            Message(role="system", content=""),
            Message(role="user", name="alice", parts=(
                ContentPart(type="text", text="look"),
                ContentPart(type="image_url", image_url="https://x/a.png", detail="low"),
                ContentPart(type="file", raw_json=b'{"type":"file","file":{}}'),
            )),
            Message(role="assistant", tool_calls=(ToolCall(0, "call_1", "f", "{}"),)),
            Message(role="tool", content="42", tool_call_id="call_1"),
        ),
        sampling=Sampling(max_tokens=0, temperature=0.0, top_p=0.5, top_k=0, frequency_penalty=0.0,
                          presence_penalty=-1.0, repetition_penalty=1.5, seed=0, stop=("END",)),
        tools=(Tool("f", "d", b'{"type":"object"}', False), Tool("g")),
        tool_choice_json=b'"auto"', response_format_json=b'{"type":"json_object"}', user="u-1",
        provider=ProviderPreferences(
            order=("a", "b"), allow_fallbacks=False, require_parameters=True,
            data_collection="deny", only=("a", "b", "c"), ignore=("d",), sort="price",
            max_price_prompt=Decimal("1.5"), max_price_completion=Decimal("0.000001")),
        extra_json=b'{"logprobs":true}',
    )


def test_provider_preferences_defaults_when_sent_empty() -> None:
    r = pb.ChatRequest(model="m", messages=[HI], provider=pb.ProviderPreferences())
    assert request_from_proto(r).provider == ProviderPreferences()


@pytest.mark.parametrize("field", ["max_price_prompt", "max_price_completion"])
def test_an_invalid_max_price_is_an_invalid_request(field: str) -> None:
    prefs = pb.ProviderPreferences(**{field: "cheap"})  # type: ignore[arg-type]
    param = "provider.max_price." + field.removeprefix("max_price_")
    with pytest.raises(InvalidRequest) as info:
        request_from_proto(pb.ChatRequest(model="m", messages=[HI], provider=prefs))
    assert (info.value.message, info.value.param) == (f"{param} must be a decimal number", param)


@pytest.mark.parametrize("value", ["NaN", "sNaN", "Infinity", "-Infinity", "-1",
                                   "1e999999999", "1000000000001"])
def test_a_non_finite_or_out_of_range_max_price_is_an_invalid_request(value: str) -> None:
    prefs = pb.ProviderPreferences(max_price_prompt=value)
    with pytest.raises(InvalidRequest) as info:
        request_from_proto(pb.ChatRequest(model="m", messages=[HI], provider=prefs))
    assert (info.value.message, info.value.param) == (
        "provider.max_price.prompt must be a finite decimal from 0 to 1000000000000",
        "provider.max_price.prompt")


@pytest.mark.parametrize(("r", "message", "param"), [
    (pb.ChatRequest(messages=[HI]), "model is required", "model"),
    (pb.ChatRequest(model="m"), "messages must not be empty", "messages"),
])
def test_model_and_messages_are_required(r: pb.ChatRequest, message: str, param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        request_from_proto(r)
    assert (info.value.message, info.value.param) == (message, param)


SERVED = Served("openai/gpt-4o", "oai", "openai/gpt-4o@oai", 1764115200)
USAGE = Usage(TokenCounts(prompt=1234, completion=56, cached=7, reasoning=3), Decimal("0.20251700"))
USAGE_PB = pb.Usage(prompt_tokens=1234, completion_tokens=56, total_tokens=1290, cached_tokens=7,
                    reasoning_tokens=3, cost="0.202517", estimated=False)


def test_result_to_proto() -> None:
    result = ChatResult(SERVED, Completion(
        Message(role="assistant", content="Sure", tool_calls=(ToolCall(0, "c1", "f", '{"a":1}'),)),
        "tool_calls", None, "fp_1"), USAGE)
    assert result_to_proto("gen-1", result) == pb.ChatResponse(
        id="gen-1", model="openai/gpt-4o", provider="oai", created=1764115200,
        choices=[pb.Choice(index=0, finish_reason="tool_calls", message=pb.Message(
            role="assistant", content="Sure",
            tool_calls=[pb.ToolCall(index=0, id="c1", name="f", arguments='{"a":1}')]))],
        usage=USAGE_PB, system_fingerprint="fp_1", deployment="openai/gpt-4o@oai")


def test_result_without_content_leaves_content_unset() -> None:
    result = ChatResult(SERVED, Completion(Message(role="", content=None), "stop"), USAGE)
    message = result_to_proto("gen-1", result).choices[0].message
    assert message.HasField("content") is False
    assert message.role == "assistant"


@pytest.mark.parametrize(("cost", "text"), [
    ("0.20251700", "0.202517"), ("0E-8", "0"), ("12.00000000", "12"), ("1500.00000000", "1500"),
    ("0.00000001", "0.00000001"),
])
def test_usage_cost_is_a_plain_decimal_string(cost: str, text: str) -> None:
    u = usage_to_proto(Usage(TokenCounts(1, 2, estimated=True), Decimal(cost)))
    assert u == pb.Usage(prompt_tokens=1, completion_tokens=2, total_tokens=3, cost=text,
                         estimated=True)


def test_a_first_stream_event_carries_served_and_its_deltas() -> None:
    ev = StreamEvent(deltas=(
        Delta(index=0, role="assistant", content=""),
        Delta(index=0, reasoning="hmm", tool_calls=(ToolCall(1, "c", "f", '{"'),)),
        Delta(index=1, content="x", finish_reason="stop"),
    ), served=SERVED)
    assert event_to_proto(ev, None) == pb.ChatStreamEvent(
        model="openai/gpt-4o", provider="oai", created=1764115200, chunks=[
            pb.ChunkDelta(index=0, role="assistant", content=""),
            pb.ChunkDelta(index=0, reasoning="hmm",
                          tool_calls=[pb.ToolCall(index=1, id="c", name="f", arguments='{"')]),
            pb.ChunkDelta(index=1, content="x", finish_reason="stop"),
        ], deployment="openai/gpt-4o@oai")


def test_a_middle_event_has_no_served_fields_and_no_end() -> None:
    out = event_to_proto(StreamEvent(deltas=(Delta(content="a"),)), None)
    assert out == pb.ChatStreamEvent(chunks=[pb.ChunkDelta(content="a")])
    assert out.HasField("end") is False
    assert out.chunks[0].HasField("reasoning") is False


def test_the_last_event_carries_usage_and_the_in_band_error() -> None:
    err = UpstreamServerError("a failed mid-stream: overloaded", provider="a")
    detail = to_detail(err)
    out = event_to_proto(StreamEvent(end=StreamEnd(USAGE, err)), detail)
    assert out == pb.ChatStreamEvent(end=pb.StreamEnd(usage=USAGE_PB, error=detail))


def test_a_clean_last_event_has_no_error() -> None:
    out = event_to_proto(StreamEvent(end=StreamEnd(USAGE)), None)
    assert out.end.HasField("error") is False
    assert out.end.usage == USAGE_PB


@pytest.mark.parametrize(("per_million", "text"), [
    ("150", "0.00015"), ("0", "0"), ("0.000", "0"), ("1000000", "1"), ("15000000", "15"),
    ("150.5", "0.0001505"), ("0.01", "0.00000001"), ("2.5", "0.0000025"),
])
def test_per_token_price(per_million: str, text: str) -> None:
    assert per_token(Decimal(per_million)) == text


def test_model_to_proto() -> None:
    m = model("openai/gpt-4o",
              deployment("openai/gpt-4o", "b", caps=("tools", "streaming"), prompt="300", completion="900"),
              replace(deployment("openai/gpt-4o", "a", caps=("json_mode", "vision"), prompt="150",
                                 completion="600"), jurisdiction="us"),
              aliases=("gpt-4o",))
    assert model_to_proto(m) == pb.ModelInfo(
        id="openai/gpt-4o", name="openai/gpt-4o", context_length=8192, max_completion_tokens=1024,
        price_prompt="0.00015", price_completion="0.0006", price_cache_read="0.00015",
        price_cache_write="0.00015", price_reasoning="0.0006", providers=["b", "a"],
        supported_parameters=["max_tokens", "temperature", "top_p", "stop", "seed",
                              "frequency_penalty", "presence_penalty", "tools", "tool_choice",
                              "response_format"],
        input_modalities=["text", "image"], aliases=["gpt-4o"], jurisdictions=["", "us"],
        price_currency="RUB")


def test_a_plain_model_lists_only_the_basic_parameters_and_text_input() -> None:
    info = model_to_proto(model("m", deployment("m", "a")))
    assert list(info.supported_parameters) == ["max_tokens", "temperature", "top_p", "stop", "seed",
                                               "frequency_penalty", "presence_penalty"]
    assert list(info.input_modalities) == ["text"]
    assert (info.price_prompt, info.price_completion) == ("0", "0")
