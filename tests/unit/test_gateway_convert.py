"""The gateway's OpenAI/OpenRouter JSON <-> proto translation: validation errors naming the
field, requests into proto, response bodies and SSE chunks out."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from xrouter.v1 import router_pb2 as pb
from xrouter_gateway.convert import ChunkWriter, completion_json, parse_request, to_proto
from xrouter_gateway.errors import APIError

HI = [{"role": "user", "content": "hi"}]


def _error(body: bytes) -> APIError:
    with pytest.raises(APIError) as info:
        parse_request(body)
    assert info.value.status == 400
    assert info.value.type == "invalid_request_error"
    return info.value


def _proto(body: dict[str, Any]) -> pb.ChatRequest:
    req, raw = parse_request(orjson.dumps(body))
    return to_proto(req, raw, "gen-1")


# ---- parse_request -----------------------------------------------------------------------

def test_invalid_json_is_a_400_with_the_position() -> None:
    err = _error(b'{"model": ')
    assert (err.message, err.param) == (
        "Invalid JSON in request body: unexpected end of data at position 10", None)


@pytest.mark.parametrize("body", [b"[1, 2]", b'"text"', b"null", b"3"])
def test_a_body_that_is_not_an_object_is_a_400(body: bytes) -> None:
    err = _error(body)
    assert (err.message, err.param) == ("Request body must be a JSON object", None)


@pytest.mark.parametrize(("body", "message", "param"), [
    ({"model": "m", "messages": HI, "temperature": 2.5},
     "Invalid request: Expected `float` <= 2.0 (at temperature)", "temperature"),
    ({"model": "m", "messages": HI, "top_p": 0},
     "Invalid request: Expected `float` > 0.0 (at top_p)", "top_p"),
    ({"model": "m", "messages": HI, "max_tokens": "ten"},
     "Invalid request: Expected `int | null`, got `str` (at max_tokens)", "max_tokens"),
    ({"model": "m", "messages": []},
     "Invalid request: Expected `array` of length >= 1 (at messages)", "messages"),
    ({"model": "m", "messages": [{"role": "wizard", "content": "x"}]},
     "Invalid request: Invalid enum value 'wizard' (at messages[0].role)", "messages[0].role"),
    ({"model": "m", "messages": HI, "stop": ["a"] * 17},
     "Invalid request: Expected `array` of length <= 16 (at stop)", "stop"),
    ({"model": "", "messages": HI},
     "Invalid request: Expected `str` of length >= 1 (at model)", "model"),
    ({"model": "m", "messages": HI, "provider": {"sortt": "price"}},
     "Invalid request: Object contains unknown field `sortt` (at provider.sortt)",
     "provider.sortt"),
    ({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://x", "detail": "huge"}}]}]},
     "Invalid request: Invalid enum value 'huge' (at messages[0].content[0].image_url.detail)",
     "messages[0].content[0].image_url.detail"),
    ({"model": "m", "messages": HI, "prompt": "hi"},
     "Send either 'messages' or 'prompt', not both", "messages"),
    ({"model": "m"}, "One of 'messages' or 'prompt' is required", "messages"),
    ({"messages": HI}, "'model' is required (or a non-empty 'models' list)", "model"),
    ({"models": [], "messages": HI}, "'model' is required (or a non-empty 'models' list)", "model"),
    ({"model": "m", "messages": HI, "tool_choice": "auto"},
     "'tool_choice' is only allowed when 'tools' are given", "tool_choice"),
    ({"model": "m", "messages": HI, "response_format": {"type": "json_schema"}},
     "response_format of type json_schema needs 'json_schema'", "response_format.json_schema"),
    ({"model": "m", "messages": [{"role": "tool", "content": "42"}]},
     "messages[0]: a tool message needs 'tool_call_id'", "messages[0].tool_call_id"),
    ({"model": "m", "messages": [*HI, {"role": "user"}]},
     "messages[1]: 'content' is required", "messages[1].content"),
    ({"model": "m", "messages": [{"role": "assistant", "content": None}]},
     "messages[0]: 'content' is required", "messages[0].content"),
    ({"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "a"},
                                                              {"type": "text"}]}]},
     "messages[0].content[1]: a text part needs 'text'", "messages[0].content[1].text"),
    ({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
     "messages[0].content[0]: an image_url part needs 'image_url'",
     "messages[0].content[0].image_url"),
])
def test_invalid_requests_name_the_field(body: dict[str, Any], message: str, param: str) -> None:
    err = _error(orjson.dumps(body))
    assert (err.message, err.param) == (message, param)


@pytest.mark.parametrize("body", [
    {"model": "m", "messages": HI, "tool_choice": "none"},
    {"model": "m", "messages": [{"role": "assistant", "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}]},
    {"models": ["a"], "prompt": "hi"},
    {"model": "m", "messages": HI, "response_format": {"type": "json_schema",
                                                       "json_schema": {"name": "x"}}},
])
def test_valid_edge_requests_parse(body: dict[str, Any]) -> None:
    req, raw = parse_request(orjson.dumps(body))
    assert raw == body
    assert req.model == body.get("model")


# ---- to_proto ----------------------------------------------------------------------------

def test_a_minimal_request() -> None:
    r = _proto({"model": "m", "messages": HI})
    assert r == pb.ChatRequest(generation_id="gen-1", model="m",
                               messages=[pb.Message(role="user", content="hi")])
    for name in ("max_tokens", "temperature", "top_p", "top_k", "frequency_penalty",
                 "presence_penalty", "repetition_penalty", "seed", "provider"):
        assert r.HasField(name) is False, name


@pytest.mark.parametrize(("body", "model", "models"), [
    ({"model": "a"}, "a", []),
    ({"model": "a", "models": ["b", "c"]}, "a", ["b", "c"]),
    ({"models": ["b", "c"]}, "b", ["c"]),
    ({"models": ["b"]}, "b", []),
])
def test_model_and_models(body: dict[str, Any], model: str, models: list[str]) -> None:
    r = _proto({**body, "messages": HI})
    assert (r.model, list(r.models)) == (model, models)


def test_a_prompt_becomes_one_user_message() -> None:
    assert list(_proto({"model": "m", "prompt": "Once upon"}).messages) == [
        pb.Message(role="user", content="Once upon")]


@pytest.mark.parametrize(("body", "max_tokens"), [
    ({"max_completion_tokens": 77}, 77),
    ({"max_tokens": 10, "max_completion_tokens": 77}, 10),
    ({"max_tokens": 10}, 10),
])
def test_max_completion_tokens_is_used_when_max_tokens_is_absent(body: dict[str, Any],
                                                                 max_tokens: int) -> None:
    assert _proto({"model": "m", "messages": HI, **body}).max_tokens == max_tokens


def test_sampling_parameters_including_zeros() -> None:
    r = _proto({"model": "m", "messages": HI, "temperature": 0, "top_p": 1, "top_k": 0,
                "frequency_penalty": -2, "presence_penalty": 0.5, "repetition_penalty": 1.2,
                "seed": -7})
    assert (r.temperature, r.top_p, r.top_k, r.frequency_penalty, r.presence_penalty,
            r.repetition_penalty, r.seed) == (0.0, 1.0, 0, -2.0, 0.5, 1.2, -7)
    assert r.HasField("temperature") and r.HasField("top_k")


@pytest.mark.parametrize(("stop", "expected"), [("END", ["END"]), (["a", "b"], ["a", "b"]), ([], [])])
def test_stop_string_becomes_a_list(stop: Any, expected: list[str]) -> None:
    assert list(_proto({"model": "m", "messages": HI, "stop": stop}).stop) == expected


def test_extra_json_holds_exactly_the_untyped_top_level_keys() -> None:
    r = _proto({"model": "m", "messages": HI, "stream": True, "temperature": 1,
                "logit_bias": {"50256": -100}, "min_p": 0.1, "x_custom": {"deep": [1, None]},
                "parallel_tool_calls": False, "transforms": ["middle-out"], "route": "fallback",
                "n": 1})
    assert r.extra_json == (b'{"logit_bias":{"50256":-100},"min_p":0.1,'
                            b'"x_custom":{"deep":[1,null]},"parallel_tool_calls":false}')


def test_no_extra_json_when_every_key_is_typed() -> None:
    assert _proto({"model": "m", "messages": HI, "stream": False}).extra_json == b""


def test_tools_tool_choice_and_response_format() -> None:
    r = _proto({
        "model": "m", "messages": HI,
        "tools": [{"type": "function", "function": {
            "name": "get_weather", "description": "Weather", "strict": True,
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},
                  {"type": "function", "function": {"name": "noop"}}],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "response_format": {"type": "json_schema", "json_schema": {"name": "w", "strict": True}},
    })
    assert list(r.tools) == [
        pb.Tool(name="get_weather", description="Weather", strict=True,
                parameters_json=b'{"type":"object","properties":{"city":{"type":"string"}}}'),
        pb.Tool(name="noop"),
    ]
    assert r.tools[1].HasField("strict") is False
    assert r.tool_choice_json == b'{"type":"function","function":{"name":"get_weather"}}'
    assert r.response_format_json == b'{"type":"json_schema","json_schema":{"name":"w","strict":true}}'


def test_a_string_tool_choice_is_json_text() -> None:
    r = _proto({"model": "m", "messages": HI, "tool_choice": "none"})
    assert r.tool_choice_json == b'"none"'


def test_messages_with_parts_names_and_tool_calls() -> None:
    audio = {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}
    r = _proto({"model": "m", "messages": [
        {"role": "system", "content": "", "name": "rules"},
        {"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": "https://x/a.png", "detail": "low"}},
            {"type": "image_url", "image_url": {"url": "https://x/b.png"}},
            audio,
        ]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
            {"id": "c2", "type": "function", "function": {"name": "g"}}]},
        {"role": "tool", "content": "42", "tool_call_id": "c1"},
    ]})
    assert list(r.messages) == [
        pb.Message(role="system", content="", name="rules"),
        pb.Message(role="user", parts=[
            pb.ContentPart(type="text", text="What is this?"),
            pb.ContentPart(type="image_url", image_url="https://x/a.png", detail="low"),
            pb.ContentPart(type="image_url", image_url="https://x/b.png"),
            pb.ContentPart(type="input_audio", raw_json=orjson.dumps(audio)),
        ]),
        pb.Message(role="assistant", tool_calls=[
            pb.ToolCall(index=0, id="c1", name="f", arguments="{}"),
            pb.ToolCall(index=1, id="c2", name="g", arguments="")]),
        pb.Message(role="tool", content="42", tool_call_id="c1"),
    ]
    assert r.messages[0].HasField("content") is True
    assert r.messages[2].HasField("content") is False


def test_provider_preferences() -> None:
    r = _proto({"model": "m", "messages": HI, "provider": {
        "order": ["a", "b"], "only": ["a"], "ignore": ["c"], "allow_fallbacks": False,
        "require_parameters": True, "data_collection": "deny", "sort": "price",
        "max_price": {"prompt": 1.5, "completion": "2"}}})
    assert r.provider == pb.ProviderPreferences(
        order=["a", "b"], only=["a"], ignore=["c"], allow_fallbacks=False, require_parameters=True,
        data_collection="deny", sort="price", max_price_prompt="1.5", max_price_completion="2")


def test_empty_provider_preferences_leave_optional_flags_unset() -> None:
    r = _proto({"model": "m", "messages": HI, "provider": {"max_price": {"completion": 3}}})
    assert r.HasField("provider") is True
    assert r.provider.HasField("allow_fallbacks") is False
    assert r.provider.HasField("require_parameters") is False
    assert (r.provider.max_price_prompt, r.provider.max_price_completion) == ("", "3")


def test_a_seed_outside_int64_is_a_400_naming_seed() -> None:
    with pytest.raises(APIError) as info:
        _proto({"model": "m", "messages": HI, "seed": 2**63})
    assert (info.value.status, info.value.param) == (400, "seed")


# ---- responses ---------------------------------------------------------------------------

USAGE = pb.Usage(prompt_tokens=3, completion_tokens=2, total_tokens=5, cached_tokens=1,
                 cache_write_tokens=1, reasoning_tokens=1, cost="0.0011", prompt_cost="0.0006",
                 estimated=True)
USAGE_JSON = (b'{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5,"cost":0.0011,'
              b'"is_estimated":true,"prompt_tokens_details":{"cached_tokens":1,'
              b'"cache_write_tokens":1},"completion_tokens_details":{"reasoning_tokens":1},'
              b'"cost_details":{"upstream_inference_cost":null,'
              b'"upstream_inference_prompt_cost":0.0006,"upstream_inference_completions_cost":0.0005}}')


def test_completion_json_exact_bytes() -> None:
    r = pb.ChatResponse(
        id="gen-1", model="openai/gpt-4o", provider="oai", created=1764115200,
        choices=[pb.Choice(index=0, finish_reason="stop",
                           message=pb.Message(role="assistant", content="Hi"))],
        usage=USAGE, system_fingerprint="fp_1")
    assert completion_json(r) == (
        b'{"id":"gen-1","object":"chat.completion","created":1764115200,"model":"openai/gpt-4o",'
        b'"provider":"oai","choices":[{"index":0,"message":{"role":"assistant","content":"Hi"},'
        b'"finish_reason":"stop","logprobs":null}],"usage":' + USAGE_JSON
        + b',"system_fingerprint":"fp_1"}')


def test_completion_json_with_tool_calls_and_no_content() -> None:
    r = pb.ChatResponse(id="g", choices=[pb.Choice(message=pb.Message(tool_calls=[
        pb.ToolCall(index=0, id="c1", name="f", arguments='{"a":1}')]))], usage=pb.Usage())
    body = orjson.loads(completion_json(r))
    assert body["choices"] == [{"index": 0, "finish_reason": None, "logprobs": None, "message": {
        "role": "assistant", "content": None,
        "tool_calls": [{"id": "c1", "type": "function",
                        "function": {"name": "f", "arguments": '{"a":1}'}}]}}]
    assert "system_fingerprint" not in body
    assert b'"cost":0,' in completion_json(r)


@pytest.mark.parametrize(("cost", "text"), [
    ("0.0011", b'"cost":0.0011,'), ("0.20251700", b'"cost":0.20251700,'),
    ("0.00000001", b'"cost":0.00000001,'), ("12", b'"cost":12,'), ("", b'"cost":0,'),
])
def test_cost_is_written_as_the_exact_decimal_text(cost: str, text: bytes) -> None:
    r = pb.ChatResponse(id="g", usage=pb.Usage(cost=cost))
    assert text in completion_json(r)


SERVED = pb.ChatStreamEvent(model="openai/gpt-4o", provider="oai", created=1764115200)
HEAD = (b'{"id":"gen-1","object":"chat.completion.chunk","created":1764115200,'
        b'"model":"openai/gpt-4o","provider":"oai",')


def _writer() -> ChunkWriter:
    w = ChunkWriter("gen-1")
    w.served(SERVED)
    return w


def test_chunks_are_sse_events_one_per_delta() -> None:
    ev = pb.ChatStreamEvent(chunks=[
        pb.ChunkDelta(index=0, role="assistant", content=""),
        pb.ChunkDelta(index=0, reasoning="hmm", tool_calls=[
            pb.ToolCall(index=1, id="c", name="f", arguments='{"')]),
        pb.ChunkDelta(index=0, content="Hi", finish_reason="stop"),
    ])
    assert _writer().deltas(ev) == (
        b"data: " + HEAD + b'"choices":[{"index":0,"delta":{"role":"assistant","content":""},'
        b'"finish_reason":null,"logprobs":null}]}\n\n'
        b"data: " + HEAD + b'"choices":[{"index":0,"delta":{"reasoning":"hmm",'
        b'"reasoning_details":[{"type":"reasoning.text","text":"hmm","index":0}],"tool_calls":'
        b'[{"id":"c","type":"function","function":{"name":"f","arguments":"{\\""},"index":1}]},'
        b'"finish_reason":null,"logprobs":null}]}\n\n'
        b"data: " + HEAD + b'"choices":[{"index":0,"delta":{"content":"Hi"},'
        b'"finish_reason":"stop","logprobs":null}]}\n\n')


def test_a_reasoning_signature_streams_as_its_reasoning_detail() -> None:
    ev = pb.ChatStreamEvent(chunks=[pb.ChunkDelta(index=0, reasoning_signature="sig")])
    assert _writer().deltas(ev) == (
        b"data: " + HEAD + b'"choices":[{"index":0,"delta":{"reasoning_details":[{"type":'
        b'"reasoning.text","text":"","index":0,"signature":"sig"}]},"finish_reason":null,'
        b'"logprobs":null}]}\n\n')


def test_an_event_without_chunks_writes_nothing() -> None:
    assert _writer().deltas(pb.ChatStreamEvent()) == b""


def test_served_is_taken_only_from_an_event_naming_a_model() -> None:
    w = ChunkWriter("gen-1")
    ev = pb.ChatStreamEvent(chunks=[pb.ChunkDelta(content="a")])
    assert w.deltas(ev).startswith(b'data: {"id":"gen-1","object":"chat.completion.chunk",'
                                   b'"created":0,"model":"","provider":"",')
    w.served(SERVED)
    w.served(pb.ChatStreamEvent(provider="other", created=5))
    assert w.deltas(ev).startswith(b"data: " + HEAD)


def test_the_usage_chunk_is_followed_by_done() -> None:
    assert _writer().usage(USAGE) == (
        b"data: " + HEAD + b'"choices":[],"usage":' + USAGE_JSON + b"}\n\ndata: [DONE]\n\n")


def test_a_missing_usage_is_written_as_zeros() -> None:
    out = _writer().usage(None)
    assert out.endswith(b'"usage":{"prompt_tokens":0,"completion_tokens":0,"total_tokens":0,'
                        b'"cost":0,"is_estimated":false,"prompt_tokens_details":{"cached_tokens":0,'
                        b'"cache_write_tokens":0},"completion_tokens_details":{"reasoning_tokens":0},'
                        b'"cost_details":{"upstream_inference_cost":null,'
                        b'"upstream_inference_prompt_cost":0,"upstream_inference_completions_cost":0}'
                        b'}}\n\ndata: [DONE]\n\n')


def test_the_error_chunk_shape() -> None:
    err = APIError(502, "All providers failed: a answered HTTP 503",
                   metadata={"provider_name": "a"})
    out = _writer().error(err)
    assert out.startswith(b"data: ") and out.endswith(b"\n\n")
    assert orjson.loads(out[len(b"data: "):]) == {
        "id": "gen-1", "object": "chat.completion.chunk", "created": 1764115200,
        "model": "openai/gpt-4o", "provider": "oai",
        "error": {"code": 502, "message": "All providers failed: a answered HTTP 503",
                  "metadata": {"provider_name": "a"}},
        "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}],
    }
