"""The Anthropic adapter's pure parts: Messages API bodies and parsing its wire format."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson
import pytest

from tests.unit.builders import deployment, request
from xrouter_common.env import ConfigError
from xrouter_router.domain.errors import (
    UpstreamBadResponse,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamServerError,
)
from xrouter_router.domain.types import (
    Completion,
    ContentPart,
    Delta,
    Message,
    Sampling,
    StreamBatch,
    TokenCounts,
    Tool,
    ToolCall,
)
from xrouter_router.providers.anthropic import (
    AnthropicProvider,
    StreamState,
    build,
    finish_reason,
    image_source,
    messages_json,
    parse_message,
    parse_usage,
    request_body,
    stream_error,
    tool_choice_json,
    tool_json,
)
from xrouter_router.providers.config import ProviderConfig
from xrouter_router.providers.sse import SSEEvent

DEP = deployment("m", "up")  # max_completion_tokens=1024
BIG = replace(DEP, max_completion_tokens=0)
SYSTEM = Message(role="system", content="Be brief.")
USER = Message(role="user", content="hello")
CALL = ToolCall(0, "toolu_1", "weather", '{"city":"Oslo"}')


def _body(*messages: Message, dep: Any = BIG, stream: bool = False, **kwargs: Any) -> dict[str, Any]:
    req = request("m", messages=messages or (USER,), **kwargs)
    raw = orjson.dumps(request_body("up", req, dep, default_max_tokens=4096, stream=stream))
    return orjson.loads(raw)  # type: ignore[no-any-return]


# ---- body --------------------------------------------------------------------------------

def test_minimal_body_has_the_required_max_tokens() -> None:
    provider = AnthropicProvider("up", base_url="https://api.example/", api_key="k",
                                 session=None)  # type: ignore[arg-type]
    assert provider.body(request("m"), BIG, stream=False) == (
        b'{"model":"up-m","max_tokens":4096,"messages":[{"role":"user","content":"hello"}]}')


def test_max_tokens_is_capped_by_the_deployment() -> None:
    assert _body(dep=DEP)["max_tokens"] == 1024
    assert _body(dep=DEP, sampling=Sampling(max_tokens=5000))["max_tokens"] == 1024
    assert _body(dep=DEP, sampling=Sampling(max_tokens=300))["max_tokens"] == 300


def test_system_and_developer_messages_are_hoisted_and_joined() -> None:
    body = _body(SYSTEM, USER, Message(role="developer", content="Use metric units."),
                 Message(role="system", content=""))
    assert body["system"] == "Be brief.\n\nUse metric units."
    assert body["messages"] == [{"role": "user", "content": "hello"}]


def test_sampling_is_mapped_and_temperature_clamped_to_anthropics_range() -> None:
    sampling = Sampling(max_tokens=100, temperature=1.5, top_p=0.9, top_k=40, seed=1,
                        frequency_penalty=0.5, presence_penalty=0.5, repetition_penalty=1.1,
                        stop=("END",))
    assert _body(sampling=sampling, stream=True) == {
        "model": "up-m", "max_tokens": 100,
        "messages": [{"role": "user", "content": "hello"}],
        "temperature": 1.0, "top_p": 0.9, "top_k": 40, "stop_sequences": ["END"], "stream": True,
    }
    assert _body(sampling=Sampling(temperature=-0.5))["temperature"] == 0.0


def test_tools_choice_and_user() -> None:
    params = b'{"type":"object","properties":{"city":{"type":"string"}}}'
    body = _body(tools=(Tool("weather", "Get it", params, True), Tool("noop")),
                 tool_choice_json=b'"required"', user="u-7")
    assert body["tools"] == [
        {"name": "weather", "description": "Get it",
         "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
         "strict": True},
        {"name": "noop", "input_schema": {"type": "object", "properties": {}}},
    ]
    assert body["tool_choice"] == {"type": "any"}
    assert body["metadata"] == {"user_id": "u-7"}


def test_tool_choice_without_tools_is_dropped() -> None:
    body = _body(tool_choice_json=b'"auto"')
    assert "tool_choice" not in body


@pytest.mark.parametrize(("raw", "expected"), [
    (b'"auto"', {"type": "auto"}),
    (b'"none"', {"type": "none"}),
    (b'"required"', {"type": "any"}),
    (b'{"type":"function","function":{"name":"weather"}}', {"type": "tool", "name": "weather"}),
    (b'"sometimes"', None),
    (b'{"type":"function"}', None),
    (b"", None),
])
def test_tool_choice(raw: bytes, expected: dict[str, Any] | None) -> None:
    assert tool_choice_json(raw) == expected


def test_tool_json_without_description_or_strict() -> None:
    assert tool_json(Tool("f", strict=False)) == {
        "name": "f", "input_schema": {"type": "object", "properties": {}}}


# ---- messages ----------------------------------------------------------------------------

def test_consecutive_same_role_messages_are_merged() -> None:
    _, turns = messages_json("up", (USER, Message(role="user", content="again"),
                                    Message(role="assistant", content="hi"),
                                    Message(role="assistant", content="there")))
    assert turns == [
        {"role": "user", "content": [{"type": "text", "text": "hello"},
                                     {"type": "text", "text": "again"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "hi"},
                                          {"type": "text", "text": "there"}]},
    ]


def test_tool_calls_become_tool_use_and_results_a_user_turn() -> None:
    second = ToolCall(1, "toolu_2", "time", "")
    _, turns = messages_json("up", (
        USER,
        Message(role="assistant", content="Checking.", tool_calls=(CALL, second)),
        Message(role="tool", content="12C", tool_call_id="toolu_1", name="weather"),
        Message(role="tool", content="noon", tool_call_id="toolu_2"),
        Message(role="user", content="thanks"),
    ))
    assert turns[1:] == [
        {"role": "assistant", "content": [
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Oslo"}},
            {"type": "tool_use", "id": "toolu_2", "name": "time", "input": {}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "12C"},
            {"type": "tool_result", "tool_use_id": "toolu_2", "content": "noon"},
            {"type": "text", "text": "thanks"},
        ]},
    ]


def test_an_assistant_message_of_only_tool_calls_has_no_empty_text_block() -> None:
    _, turns = messages_json("up", (Message(role="assistant", content="", tool_calls=(CALL,)),))
    assert turns[0]["content"] == [{"type": "tool_use", "id": "toolu_1", "name": "weather",
                                    "input": {"city": "Oslo"}}]


@pytest.mark.parametrize("arguments", ['["a"]', "{not json", "42"])
def test_tool_arguments_that_are_not_an_object_are_rejected(arguments: str) -> None:
    msg = Message(role="assistant", tool_calls=(ToolCall(0, "t", "f", arguments),))
    with pytest.raises(UpstreamRejected) as info:
        messages_json("up", (msg,))
    assert info.value.message == "tool call arguments must be a JSON object"
    assert info.value.retryable is False


def test_content_parts_text_and_images_others_dropped() -> None:
    msg = Message(role="user", parts=(
        ContentPart(type="text", text="Describe"),
        ContentPart(type="image_url", image_url="data:image/png;base64,iVBO"),
        ContentPart(type="image_url", image_url="https://x/a.jpg", detail="high"),
        ContentPart(type="input_audio", raw_json=b'{"type":"input_audio"}'),
    ))
    _, turns = messages_json("up", (msg,))
    assert turns[0]["content"] == [
        {"type": "text", "text": "Describe"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"}},
        {"type": "image", "source": {"type": "url", "url": "https://x/a.jpg"}},
    ]


def test_a_percent_encoded_data_url_is_base64_encoded() -> None:
    assert image_source("data:image/svg+xml,%3Csvg%3E") == {
        "type": "base64", "media_type": "image/svg+xml", "data": "PHN2Zz4="}


# ---- responses ---------------------------------------------------------------------------

MESSAGE = {
    "id": "msg_01", "type": "message", "role": "assistant", "model": "claude",
    "content": [
        {"type": "thinking", "thinking": "hmm", "signature": "sig"},
        {"type": "text", "text": "Let me check."},
        {"type": "tool_use", "id": "toolu_a", "name": "f", "input": {"x": [1, 2]}},
        {"type": "tool_use", "id": "toolu_b", "name": "g", "input": {}},
    ],
    "stop_reason": "tool_use", "stop_sequence": None,
    "usage": {"input_tokens": 10, "cache_creation_input_tokens": 5,
              "cache_read_input_tokens": 100, "output_tokens": 20,
              "output_tokens_details": {"thinking_tokens": 4}, "service_tier": "standard"},
}


def test_parse_message() -> None:
    assert parse_message("up", MESSAGE) == Completion(
        Message(role="assistant", content="Let me check.", tool_calls=(
            ToolCall(0, "toolu_a", "f", '{"x":[1,2]}'), ToolCall(1, "toolu_b", "g", "{}")),
            reasoning="hmm", reasoning_signature="sig"),
        "tool_calls",
        TokenCounts(prompt=115, completion=20, cached=100, reasoning=4, cache_write=5),
    )


def test_parse_message_without_text_or_usage() -> None:
    only_tool = {"content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}],
                 "stop_reason": "tool_use"}
    assert parse_message("up", only_tool).message.content is None
    assert parse_message("up", {"content": [], "stop_reason": "max_tokens"}) == Completion(
        Message(role="assistant", content=""), "length")


@pytest.mark.parametrize("data", [{"type": "message"}, {"content": "hi"}])
def test_a_message_without_content_blocks_is_a_bad_response(data: dict[str, Any]) -> None:
    with pytest.raises(UpstreamBadResponse) as info:
        parse_message("up", data)
    assert info.value.message == "up answered without content"


@pytest.mark.parametrize(("stop", "reason"), [
    ("end_turn", "stop"), ("stop_sequence", "stop"), ("pause_turn", "stop"),
    ("max_tokens", "length"), ("model_context_window_exceeded", "length"),
    ("tool_use", "tool_calls"), ("refusal", "content_filter"), (None, "stop"), ("new", "stop"),
])
def test_finish_reason(stop: str | None, reason: str) -> None:
    assert finish_reason(stop) == reason


def test_parse_usage_minimal() -> None:
    assert parse_usage({"input_tokens": 3, "output_tokens": 1}) == TokenCounts(3, 1)


# ---- streams -----------------------------------------------------------------------------

def _ev(name: str, data: dict[str, Any]) -> SSEEvent:
    return SSEEvent(name, orjson.dumps(data))


START = _ev("message_start", {"type": "message_start", "message": {
    "id": "msg_1", "type": "message", "role": "assistant", "content": [], "model": "claude",
    "stop_reason": None, "stop_sequence": None,
    "usage": {"input_tokens": 25, "cache_read_input_tokens": 5, "output_tokens": 1}}})
PING = _ev("ping", {"type": "ping"})


def _block_start(index: int, block: dict[str, Any]) -> SSEEvent:
    return _ev("content_block_start", {"type": "content_block_start", "index": index,
                                       "content_block": block})


def _block_delta(index: int, delta: dict[str, Any]) -> SSEEvent:
    return _ev("content_block_delta", {"type": "content_block_delta", "index": index,
                                       "delta": delta})


def _end(stop: str, usage: dict[str, Any] | None) -> list[SSEEvent]:
    delta: dict[str, Any] = {"type": "message_delta",
                             "delta": {"stop_reason": stop, "stop_sequence": None}}
    if usage is not None:
        delta["usage"] = usage
    return [_ev("message_delta", delta), _ev("message_stop", {"type": "message_stop"})]


def test_a_text_stream_in_one_batch() -> None:
    state = StreamState("up")
    batch = state.batch([
        START, _block_start(0, {"type": "text", "text": ""}), PING,
        _block_delta(0, {"type": "text_delta", "text": "Hi"}),
        _ev("content_block_stop", {"type": "content_block_stop", "index": 0}),
        *_end("end_turn", {"output_tokens": 15}),
    ])
    assert batch == StreamBatch(
        (Delta(role="assistant"), Delta(content="Hi"), Delta(finish_reason="stop")),
        TokenCounts(prompt=30, completion=15, cached=5), done=True)
    assert state.finished


def test_tool_use_blocks_are_numbered_among_tool_calls_not_content_blocks() -> None:
    state = StreamState("up")
    first = state.batch([
        START, _block_start(0, {"type": "text", "text": ""}),
        _block_delta(0, {"type": "text_delta", "text": "Ok."}),
        _block_start(1, {"type": "tool_use", "id": "toolu_a", "name": "f", "input": {}}),
        _block_delta(1, {"type": "input_json_delta", "partial_json": ""}),
        _block_delta(1, {"type": "input_json_delta", "partial_json": '{"a":'}),
    ])
    second = state.batch([
        _block_delta(1, {"type": "input_json_delta", "partial_json": "1}"}),
        _block_start(2, {"type": "tool_use", "id": "toolu_b", "name": "g", "input": {}}),
        _block_delta(2, {"type": "input_json_delta", "partial_json": "{}"}),
        *_end("tool_use", {"output_tokens": 9}),
    ])
    assert first.deltas[2:] == (Delta(tool_calls=(ToolCall(0, "toolu_a", "f", ""),)),
                                Delta(tool_calls=(ToolCall(0, "", "", '{"a":'),)))
    assert second.deltas == (
        Delta(tool_calls=(ToolCall(0, "", "", "1}"),)),
        Delta(tool_calls=(ToolCall(1, "toolu_b", "g", ""),)),
        Delta(tool_calls=(ToolCall(1, "", "", "{}"),)),
        Delta(finish_reason="tool_calls"),
    )
    assert second.done


def test_message_delta_usage_is_cumulative_and_replaces_message_start() -> None:
    batch = StreamState("up").batch([
        START, *_end("max_tokens", {"input_tokens": 40, "cache_read_input_tokens": 5,
                                    "output_tokens": 7}),
    ])
    assert batch.usage == TokenCounts(prompt=45, completion=7, cached=5)
    assert batch.deltas[-1] == Delta(finish_reason="length")


def test_a_stream_without_usage_reports_none() -> None:
    start = _ev("message_start", {"type": "message_start", "message": {"role": "assistant"}})
    assert StreamState("up").batch([start, *_end("end_turn", None)]) == StreamBatch(
        (Delta(role="assistant"), Delta(finish_reason="stop")), None, done=True)


def test_thinking_deltas_are_reasoning_with_its_signature_and_unknown_events_are_ignored(
) -> None:
    events = [_block_start(0, {"type": "thinking", "thinking": ""}),
              _block_delta(0, {"type": "thinking_delta", "thinking": "hmm"}),
              _block_delta(0, {"type": "signature_delta", "signature": "sig"}),
              _ev("future_event", {"type": "future_event"})]
    assert StreamState("up").batch(events) == StreamBatch(
        (Delta(reasoning="hmm"), Delta(reasoning_signature="sig")))
    # reasoning.exclude hides the thinking, and so its signature
    assert StreamState("up", show_reasoning=False).batch(events) == StreamBatch(())


@pytest.mark.parametrize(("kind", "cls"), [
    ("overloaded_error", UpstreamServerError), ("api_error", UpstreamServerError),
    ("rate_limit_error", UpstreamRateLimited),
])
def test_an_error_event_mid_stream_is_kept_after_the_deltas_before_it(
        kind: str, cls: type[Exception]) -> None:
    payload = {"type": "error", "error": {"type": kind, "message": "Overloaded"}}
    state = StreamState("up")
    batch = state.batch([START, _ev("error", payload), _ev("message_stop", {"type": "message_stop"})])
    assert batch == StreamBatch((Delta(role="assistant"),))
    assert isinstance(state.error, cls)
    assert state.error.message == f"up failed mid-stream: {kind}: Overloaded"
    assert state.error.metadata["raw"] == payload


def test_stream_error_without_an_error_object() -> None:
    err = stream_error("up", {"type": "error"})
    assert isinstance(err, UpstreamServerError)
    assert err.message == "up failed mid-stream: error: "


def test_an_event_that_is_not_an_object_is_a_bad_response() -> None:
    with pytest.raises(UpstreamBadResponse):
        StreamState("up").batch([SSEEvent("message_start", b"[1]")])


# ---- build ---------------------------------------------------------------------------------

def test_build_reads_its_options() -> None:
    provider = build(ProviderConfig("a", "anthropic", api_key="sk", headers={"anthropic-beta": "x"},
                                    options={"version": "2024-01-01", "default_max_tokens": 512}),
                     None)  # type: ignore[arg-type]
    assert provider.name == "a"
    assert provider._url == "https://api.anthropic.com/v1/messages"
    assert provider._headers == {"content-type": "application/json",
                                 "anthropic-version": "2024-01-01", "anthropic-beta": "x",
                                 "x-api-key": "sk"}
    assert orjson.loads(provider.body(request("m"), BIG, stream=False))["max_tokens"] == 512


def test_build_rejects_an_option_of_the_wrong_type() -> None:
    with pytest.raises(ConfigError):
        build(ProviderConfig("a", "anthropic", options={"default_max_tokens": "many"}),
              None)  # type: ignore[arg-type]
