"""The OpenAI adapter's pure parts: request bodies and parsing the wire format (no network)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tests.unit.builders import deployment, request
from xrouter_router.domain.errors import UpstreamBadResponse, UpstreamServerError
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
from xrouter_router.providers.openai import (
    OpenAIProvider,
    completion_as_batch,
    message_json,
    parse_completion,
    parse_delta,
    parse_usage,
    tool_json,
)

DEP = deployment("m", "up")
HELLO_JSON = {"role": "user", "content": "hello"}


def _provider(nonstandard: bool = False) -> OpenAIProvider:
    return OpenAIProvider("up", base_url="https://api.example/v1/", api_key="sk-up",
                          session=None,  # type: ignore[arg-type]
                          send_nonstandard_params=nonstandard)


def _body(stream: bool = False, nonstandard: bool = False, **kwargs: Any) -> dict[str, Any]:
    body = _provider(nonstandard).body(request("m", **kwargs), DEP, stream=stream)
    return orjson.loads(body)  # type: ignore[no-any-return]


# ---- body --------------------------------------------------------------------------------

def test_minimal_body_is_model_and_messages_only() -> None:
    body = _provider().body(request("m"), DEP, stream=False)
    assert body == b'{"model":"up-m","messages":[{"role":"user","content":"hello"}]}'


def test_stream_body_asks_for_usage() -> None:
    assert _body(stream=True) == {"model": "up-m", "messages": [HELLO_JSON], "stream": True,
                                  "stream_options": {"include_usage": True}}


def test_extra_json_goes_first_and_typed_fields_win() -> None:
    extra = b'{"logit_bias":{"50256":-100},"temperature":0.1,"model":"other","messages":[]}'
    body = _provider().body(request("m", extra_json=extra, sampling=Sampling(temperature=0.7)),
                            DEP, stream=False)
    assert body == (b'{"logit_bias":{"50256":-100},"temperature":0.7,"model":"up-m",'
                    b'"messages":[{"role":"user","content":"hello"}]}')


def test_extra_stream_keys_are_dropped_from_a_whole_answer_request() -> None:
    extra = b'{"stream":true,"stream_options":{"include_usage":false},"parallel_tool_calls":false}'
    assert _body(extra_json=extra) == {"parallel_tool_calls": False, "model": "up-m",
                                       "messages": [HELLO_JSON]}


def test_extra_stream_options_are_overridden_in_a_stream_request() -> None:
    extra = b'{"stream_options":{"include_usage":false}}'
    body = _body(stream=True, extra_json=extra)
    assert body["stream_options"] == {"include_usage": True}
    assert body["stream"] is True


SAMPLING = Sampling(max_tokens=100, temperature=0.5, top_p=0.9, top_k=40, frequency_penalty=0.25,
                    presence_penalty=-0.5, repetition_penalty=1.1, seed=42, stop=("\n\n", "END"))


def test_standard_sampling_parameters_are_sent_and_nonstandard_ones_are_not() -> None:
    assert _body(sampling=SAMPLING) == {
        "model": "up-m", "messages": [HELLO_JSON], "max_tokens": 100, "temperature": 0.5,
        "top_p": 0.9, "frequency_penalty": 0.25, "presence_penalty": -0.5, "seed": 42,
        "stop": ["\n\n", "END"],
    }


def test_nonstandard_parameters_are_sent_when_the_provider_allows_them() -> None:
    body = _body(sampling=SAMPLING, nonstandard=True)
    assert (body["top_k"], body["repetition_penalty"]) == (40, 1.1)


def test_zero_valued_parameters_are_still_sent() -> None:
    body = _body(sampling=Sampling(temperature=0.0, seed=0, top_k=0), nonstandard=True)
    assert (body["temperature"], body["seed"], body["top_k"]) == (0.0, 0, 0)


def test_tools_tool_choice_and_response_format_are_emitted_verbatim() -> None:
    params = b'{ "type": "object", "properties": { "city": {"type": "string"} } }'
    choice = b'{"type": "function", "function": {"name": "weather"}}'
    fmt = b'{"type": "json_schema", "json_schema": {"name": "w", "strict": true}}'
    req = request("m", tools=(Tool("weather", "Get the weather", params, True), Tool("noop")),
                  tool_choice_json=choice, response_format_json=fmt, user="user-7")
    body = _provider().body(req, DEP, stream=False)
    assert body.endswith(
        b'"tools":[{"type":"function","function":{"name":"weather","description":"Get the weather",'
        b'"parameters":' + params + b',"strict":true}},'
        b'{"type":"function","function":{"name":"noop"}}],'
        b'"tool_choice":' + choice + b',"response_format":' + fmt + b',"user":"user-7"}')


def test_tool_json_leaves_out_what_was_not_given() -> None:
    assert tool_json("f", "", b"", None) == {"type": "function", "function": {"name": "f"}}
    assert orjson.loads(orjson.dumps(tool_json("f", "d", b'{"type":"object"}', False))) == {
        "type": "function",
        "function": {"name": "f", "description": "d", "parameters": {"type": "object"},
                     "strict": False},
    }


# ---- messages ----------------------------------------------------------------------------

def test_message_json_content_parts() -> None:
    audio = b'{"type":"input_audio","input_audio":{"data":"AAAA","format":"wav"}}'
    m = Message(role="user", parts=(
        ContentPart(type="text", text="Describe"),
        ContentPart(type="image_url", image_url="https://x/a.png", detail="high"),
        ContentPart(type="image_url", image_url="data:image/png;base64,iVBO"),
        ContentPart(type="input_audio", raw_json=audio),
    ), name="alice")
    assert orjson.dumps(message_json(m)) == (
        b'{"role":"user","content":[{"type":"text","text":"Describe"},'
        b'{"type":"image_url","image_url":{"url":"https://x/a.png","detail":"high"}},'
        b'{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBO"}},'
        + audio + b'],"name":"alice"}')


def test_message_json_tool_calls_and_tool_results() -> None:
    call = Message(role="assistant", tool_calls=(ToolCall(0, "call_1", "weather", '{"city":"Oslo"}'),))
    result = Message(role="tool", content="12C", tool_call_id="call_1")
    assert message_json(call) == {
        "role": "assistant", "content": None,
        "tool_calls": [{"id": "call_1", "type": "function",
                        "function": {"name": "weather", "arguments": '{"city":"Oslo"}'}}],
    }
    assert message_json(result) == {"role": "tool", "content": "12C", "tool_call_id": "call_1"}


# ---- parsing -----------------------------------------------------------------------------

COMPLETION = {
    "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt",
    "system_fingerprint": "fp_44709d6fcb",
    "choices": [{"index": 0, "finish_reason": "tool_calls", "logprobs": None, "message": {
        "role": "assistant", "content": None, "refusal": None,
        "tool_calls": [
            {"id": "call_a", "type": "function", "function": {"name": "f", "arguments": "{}"}},
            {"id": "call_b", "type": "function", "function": {"name": "g", "arguments": "[1]"}},
        ]}}],
    "usage": {"prompt_tokens": 19, "completion_tokens": 10, "total_tokens": 29,
              "prompt_tokens_details": {"cached_tokens": 4, "audio_tokens": 0},
              "completion_tokens_details": {"reasoning_tokens": 2}},
}


def test_cache_writes_reported_by_an_openrouter_compatible_upstream_are_kept_apart() -> None:
    raw = {"prompt_tokens": 19, "completion_tokens": 10, "total_tokens": 29,
           "prompt_tokens_details": {"cached_tokens": 4, "cache_write_tokens": 6}}
    assert parse_usage(raw) == TokenCounts(prompt=19, completion=10, cached=4, cache_write=6)


def test_parse_completion() -> None:
    assert parse_completion("up", COMPLETION) == Completion(
        Message(role="assistant", content=None, tool_calls=(
            ToolCall(0, "call_a", "f", "{}"), ToolCall(1, "call_b", "g", "[1]"))),
        "tool_calls",
        TokenCounts(prompt=19, completion=10, cached=4, reasoning=2),
        "fp_44709d6fcb",
    )


def test_parse_completion_defaults() -> None:
    data = {"choices": [{"message": {"content": "hi"}, "finish_reason": None}], "usage": None}
    assert parse_completion("up", data) == Completion(Message(role="assistant", content="hi"), "stop")


@pytest.mark.parametrize("data", [{"id": "x"}, {"choices": []}, {"choices": None}])
def test_parse_completion_without_choices_is_a_bad_response(data: dict[str, Any]) -> None:
    with pytest.raises(UpstreamBadResponse) as info:
        parse_completion("up", data)
    assert info.value.message == "up answered without choices"
    assert info.value.metadata == {"provider_name": "up", "reason": "bad_response", "raw": data}


def test_parse_usage_with_and_without_details() -> None:
    assert parse_usage(COMPLETION["usage"]) == TokenCounts(19, 10, 4, 2)  # type: ignore[arg-type]
    assert parse_usage({"prompt_tokens": 3, "completion_tokens_details": None}) == TokenCounts(3, 0)
    assert parse_usage({}) == TokenCounts()


def test_parse_delta() -> None:
    choice = {"index": 1, "finish_reason": None, "delta": {
        "role": "assistant", "content": "",
        "tool_calls": [{"index": 2, "id": "call_c", "type": "function",
                        "function": {"name": "h", "arguments": ""}}]}}
    assert parse_delta(choice) == Delta(index=1, role="assistant", content="",
                                        tool_calls=(ToolCall(2, "call_c", "h", ""),))


def test_parse_delta_continuation_fragment_has_no_id_or_name() -> None:
    choice = {"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": '{"a'}}]}}
    assert parse_delta(choice) == Delta(tool_calls=(ToolCall(0, "", "", '{"a'),))


@pytest.mark.parametrize(("delta", "reasoning"), [
    ({"reasoning_content": "think"}, "think"),
    ({"reasoning": "ponder"}, "ponder"),
    ({"reasoning": "ponder", "reasoning_content": "think"}, "ponder"),
    ({"content": "x"}, None),
])
def test_parse_delta_reasoning(delta: dict[str, Any], reasoning: str | None) -> None:
    assert parse_delta({"delta": delta}).reasoning == reasoning


def test_parse_delta_final_chunk() -> None:
    assert parse_delta({"index": 0, "delta": {}, "finish_reason": "length"}) == Delta(
        finish_reason="length")
    assert parse_delta({"index": 0}) == Delta()


def _batch(*payloads: bytes) -> StreamBatch:
    batch, failure = _provider()._batch(list(payloads))
    if failure is not None:
        raise failure
    return batch


def test_stream_chunks_parse_into_one_batch() -> None:
    batch = _batch(
        b'{"id":"c","choices":[{"index":0,"delta":{"role":"assistant","content":"Hi"}}]}',
        b'{"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}',
        b'{"id":"c","choices":null,"usage":{"prompt_tokens":5,"completion_tokens":1}}',
        b"[DONE]",
    )
    assert batch == StreamBatch((Delta(role="assistant", content="Hi"), Delta(finish_reason="stop")),
                                TokenCounts(5, 1), done=True)


def test_a_usage_chunk_with_empty_choices_is_tolerated() -> None:
    assert _batch(b'{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":1}}') == StreamBatch(
        (), TokenCounts(5, 1))


def test_an_error_chunk_mid_stream_is_a_server_error_with_raw() -> None:
    batch, failure = _provider()._batch([b'{"choices":[{"delta":{"content":"a"}}]}',
                                         b'{"error":{"message":"overloaded","code":529}}',
                                         b'{"choices":[{"delta":{"content":"never"}}]}'])
    # The deltas before the error are kept; nothing after it is read.
    assert batch == StreamBatch((Delta(content="a"),))
    assert isinstance(failure, UpstreamServerError)
    assert failure.message == "up failed mid-stream: overloaded"
    assert failure.metadata == {"provider_name": "up", "reason": "server_error",
                                "raw": {"message": "overloaded", "code": 529}}


def test_a_chunk_that_is_not_an_object_is_a_bad_response() -> None:
    with pytest.raises(UpstreamBadResponse) as info:
        _batch(b"[1, 2]")
    assert info.value.message == "up sent a body that is not a JSON object"


def test_completion_as_batch_replays_a_whole_answer() -> None:
    c = Completion(Message(role="assistant", content="Hi", tool_calls=(ToolCall(0, "i", "f", "{}"),)),
                   "tool_calls", TokenCounts(2, 3))
    assert completion_as_batch(c) == StreamBatch(
        (Delta(role="assistant", content="Hi", tool_calls=(ToolCall(0, "i", "f", "{}"),),
               finish_reason="tool_calls"),),
        TokenCounts(2, 3), done=True)
