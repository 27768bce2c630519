"""The Gemini adapter's pure parts: generateContent bodies, parsing, stream chunks, errors."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import orjson
import pytest

from tests.unit.builders import deployment, request
from xrouter_common.env import ConfigError
from xrouter_router.domain.errors import (
    ErrorKind,
    InvalidRequest,
    UpstreamAuthError,
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
    TokenCounts,
    Tool,
    ToolCall,
)
from xrouter_router.providers.config import ProviderConfig
from xrouter_router.providers.gemini import (
    SKIP_SIGNATURE,
    GeminiProvider,
    StreamState,
    build,
    contents_json,
    finish_reason,
    image_part,
    new_call_id,
    parse_response,
    parse_usage,
    request_body,
    status_error,
    tool_config,
)

DEP = deployment("m", "up")  # max_completion_tokens=1024
USER = Message(role="user", content="hello")
CALL = ToolCall(0, "call_1", "weather", '{"city":"Oslo"}')
CALL_ID = re.compile(r"call_[0-9a-f]{24}")


def _body(*messages: Message, **kwargs: Any) -> dict[str, Any]:
    req = request("m", messages=messages or (USER,), **kwargs)
    return orjson.loads(orjson.dumps(request_body("up", req, DEP)))  # type: ignore[no-any-return]


def _provider(**kwargs: Any) -> GeminiProvider:
    return GeminiProvider("up", base_url="https://g.example/", api_key="AIza",
                          session=None, **kwargs)  # type: ignore[arg-type]


# ---- body --------------------------------------------------------------------------------

def test_minimal_body() -> None:
    assert _provider().body(request("m"), DEP) == (
        b'{"contents":[{"role":"user","parts":[{"text":"hello"}]}],'
        b'"generationConfig":{"candidateCount":1}}')


def test_urls() -> None:
    provider = _provider(api_version="v1")
    assert provider.url("gemini-2.5-flash", stream=False) == (
        "https://g.example/v1/models/gemini-2.5-flash:generateContent")
    assert provider.url("models/tuned/x", stream=True) == (
        "https://g.example/v1/models/tuned%2Fx:streamGenerateContent?alt=sse")


def test_system_messages_become_the_system_instruction() -> None:
    body = _body(Message(role="system", content="Be brief."), USER,
                 Message(role="developer", content="Metric units."))
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief.\n\nMetric units."}]}
    assert body["contents"] == [{"role": "user", "parts": [{"text": "hello"}]}]


def test_generation_config_maps_sampling_and_caps_max_tokens() -> None:
    sampling = Sampling(max_tokens=5000, temperature=1.5, top_p=0.9, top_k=40, seed=7,
                        frequency_penalty=0.25, presence_penalty=-0.5, repetition_penalty=1.1,
                        stop=("END",))
    assert _body(sampling=sampling)["generationConfig"] == {
        "candidateCount": 1, "maxOutputTokens": 1024, "temperature": 1.5, "topP": 0.9,
        "topK": 40, "presencePenalty": -0.5, "frequencyPenalty": 0.25, "seed": 7,
        "stopSequences": ["END"],
    }
    uncapped = request_body("up", request("m", sampling=Sampling(max_tokens=5000)),
                            replace(DEP, max_completion_tokens=0))
    assert uncapped["generationConfig"]["maxOutputTokens"] == 5000


@pytest.mark.parametrize(("fmt", "expected"), [
    (b'{"type":"json_object"}', {"responseMimeType": "application/json"}),
    (b'{"type":"json_schema","json_schema":{"name":"w","schema":{"type":"object"}}}',
     {"responseMimeType": "application/json", "responseJsonSchema": {"type": "object"}}),
    (b'{"type":"text"}', {}),
])
def test_response_format(fmt: bytes, expected: dict[str, Any]) -> None:
    assert _body(response_format_json=fmt)["generationConfig"] == {"candidateCount": 1, **expected}


def test_tools_are_function_declarations_with_json_schema() -> None:
    params = b'{"type":"object","properties":{"city":{"type":"string"}},"additionalProperties":false}'
    body = _body(tools=(Tool("weather", "Get it", params), Tool("noop")),
                 tool_choice_json=b'{"type":"function","function":{"name":"weather"}}')
    assert body["tools"] == [{"functionDeclarations": [
        {"name": "weather", "description": "Get it",
         "parametersJsonSchema": {"type": "object", "properties": {"city": {"type": "string"}},
                                  "additionalProperties": False}},
        {"name": "noop"},
    ]}]
    assert body["toolConfig"] == {"functionCallingConfig": {
        "mode": "ANY", "allowedFunctionNames": ["weather"]}}


@pytest.mark.parametrize(("raw", "mode"), [
    (b'"auto"', "AUTO"), (b'"none"', "NONE"), (b'"required"', "ANY"), (b'"other"', None),
    (b"", None),
])
def test_tool_config_modes(raw: bytes, mode: str | None) -> None:
    expected = {"functionCallingConfig": {"mode": mode}} if mode else None
    assert tool_config(raw) == expected


def test_tool_choice_without_tools_is_dropped() -> None:
    assert "toolConfig" not in _body(tool_choice_json=b'"required"')


# ---- contents ----------------------------------------------------------------------------

def test_function_calls_and_responses_round_trip() -> None:
    second = ToolCall(1, "call_2", "time", "")
    _, contents = contents_json("up", (
        USER,
        Message(role="assistant", content="Checking.", tool_calls=(CALL, second)),
        Message(role="tool", content='{"temp": 12}', tool_call_id="call_1"),
        Message(role="tool", content="noon", tool_call_id="call_2", name="clock"),
        Message(role="user", content="thanks"),
    ))
    assert contents[1:] == [
        {"role": "model", "parts": [
            {"text": "Checking."},
            {"functionCall": {"name": "weather", "args": {"city": "Oslo"}},
             "thoughtSignature": SKIP_SIGNATURE},
            {"functionCall": {"name": "time", "args": {}}},
        ]},
        {"role": "user", "parts": [
            {"functionResponse": {"name": "weather", "response": {"temp": 12}}},
            {"functionResponse": {"name": "clock", "response": {"output": "noon"}}},
            {"text": "thanks"},
        ]},
    ]


def test_no_signature_is_sent_when_the_option_is_empty() -> None:
    _, contents = contents_json("up", (Message(role="assistant", tool_calls=(CALL,)),), "")
    assert contents == [{"role": "model", "parts": [
        {"functionCall": {"name": "weather", "args": {"city": "Oslo"}}}]}]


def test_consecutive_roles_are_merged_and_empty_messages_skipped() -> None:
    _, contents = contents_json("up", (
        USER, Message(role="user", content="again"), Message(role="assistant", content=""),
        Message(role="assistant", content="hi"),
    ))
    assert contents == [{"role": "user", "parts": [{"text": "hello"}, {"text": "again"}]},
                        {"role": "model", "parts": [{"text": "hi"}]}]


def test_malformed_tool_arguments_are_rejected() -> None:
    with pytest.raises(UpstreamRejected):
        contents_json("up", (Message(role="assistant",
                                     tool_calls=(ToolCall(0, "c", "f", "[1]"),)),))


def test_images_are_inline_or_file_data_and_other_parts_dropped() -> None:
    _, contents = contents_json("up", (Message(role="user", parts=(
        ContentPart(type="text", text="Look"),
        ContentPart(type="image_url", image_url="data:image/webp;base64,UklG"),
        ContentPart(type="input_audio", raw_json=b"{}"),
    )),))
    assert contents[0]["parts"] == [{"text": "Look"},
                                    {"inlineData": {"mimeType": "image/webp", "data": "UklG"}}]


@pytest.mark.parametrize(("url", "mime"), [
    ("https://x.example/cat.png?size=2", "image/png"), ("https://x.example/photo", "image/jpeg"),
])
def test_http_images_are_file_data(url: str, mime: str) -> None:
    assert image_part(url) == {"fileData": {"mimeType": mime, "fileUri": url}}


def test_a_malformed_image_url_is_the_clients_error() -> None:
    # urlsplit raises ValueError on it: that was a 500, and the request kept its slot.
    with pytest.raises(InvalidRequest) as caught:
        image_part("http://[::1")
    assert (caught.value.kind, caught.value.param) == (ErrorKind.INVALID_REQUEST, "messages")


# ---- responses ---------------------------------------------------------------------------

def test_parse_response_text_and_usage() -> None:
    data = {
        "candidates": [{"content": {"parts": [{"text": "thinking", "thought": True},
                                              {"text": "Hello"}, {"text": " there"}],
                                    "role": "model"},
                        "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 3,
                          "thoughtsTokenCount": 5, "cachedContentTokenCount": 4,
                          "totalTokenCount": 18},
        "modelVersion": "gemini-2.5-flash",
    }
    assert parse_response("up", data) == Completion(
        Message(role="assistant", content="Hello there", reasoning="thinking"), "stop",
        TokenCounts(prompt=10, completion=8, cached=4, reasoning=5))


def test_function_calls_get_generated_ids_and_finish_as_tool_calls() -> None:
    data = {"candidates": [{"content": {"parts": [
        {"functionCall": {"name": "f", "args": {"a": 1}}, "thoughtSignature": "sig"},
        {"functionCall": {"name": "g"}},
    ], "role": "model"}, "finishReason": "STOP"}]}
    completion = parse_response("up", data)
    first, second = completion.message.tool_calls
    assert (first.index, first.name, first.arguments) == (0, "f", '{"a":1}')
    assert (second.index, second.name, second.arguments) == (1, "g", "{}")
    assert CALL_ID.fullmatch(first.id) and CALL_ID.fullmatch(second.id)
    assert first.id != second.id
    assert completion.message.content is None
    assert completion.finish_reason == "tool_calls"
    assert completion.usage is None


def test_a_blocked_prompt_is_a_content_filter_finish() -> None:
    data = {"promptFeedback": {"blockReason": "SAFETY"},
            "usageMetadata": {"promptTokenCount": 7, "totalTokenCount": 7}}
    assert parse_response("up", data) == Completion(
        Message(role="assistant", content=""), "content_filter", TokenCounts(prompt=7))


def test_a_safety_finish_without_content() -> None:
    data = {"candidates": [{"finishReason": "SAFETY", "index": 0}]}
    assert parse_response("up", data) == Completion(Message(role="assistant", content=""),
                                                    "content_filter")


@pytest.mark.parametrize("data", [{}, {"candidates": []}, {"modelVersion": "x"}])
def test_no_candidates_is_a_bad_response(data: dict[str, Any]) -> None:
    with pytest.raises(UpstreamBadResponse) as info:
        parse_response("up", data)
    assert info.value.message == "up answered without candidates"


def test_a_candidate_that_is_not_an_object_is_a_type_error() -> None:
    with pytest.raises(TypeError):  # upstream_errors turns it into UpstreamBadResponse
        parse_response("up", {"candidates": ["x"]})


@pytest.mark.parametrize(("reason", "called", "expected"), [
    ("STOP", False, "stop"), ("STOP", True, "tool_calls"), ("MAX_TOKENS", False, "length"),
    ("SAFETY", False, "content_filter"), ("RECITATION", False, "content_filter"),
    ("BLOCKLIST", False, "content_filter"), ("PROHIBITED_CONTENT", False, "content_filter"),
    ("SPII", False, "content_filter"), ("OTHER", False, "stop"),
    ("MALFORMED_FUNCTION_CALL", True, "stop"),
])
def test_finish_reason(reason: str, called: bool, expected: str) -> None:
    assert finish_reason(reason, called=called) == expected


def test_parse_usage() -> None:
    assert parse_usage({"promptTokenCount": 5, "toolUsePromptTokenCount": 2}) == TokenCounts(7)
    assert parse_usage({}) is None
    assert parse_usage(None) is None


def test_new_call_ids_are_unique() -> None:
    ids = {new_call_id() for _ in range(100)}
    assert len(ids) == 100 and all(CALL_ID.fullmatch(i) for i in ids)


# ---- streams -----------------------------------------------------------------------------

def _chunk(parts: list[dict[str, Any]], finish: str = "", usage: int | None = None) -> bytes:
    candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    chunk: dict[str, Any] = {"candidates": [candidate]}
    if usage is not None:
        chunk["usageMetadata"] = {"promptTokenCount": 4, "candidatesTokenCount": usage}
    return orjson.dumps(chunk)


def test_text_chunks_the_first_carrying_the_role_and_the_last_usage_kept() -> None:
    state = StreamState("up")
    assert state.deltas([_chunk([{"text": "Hel"}], usage=1), _chunk([{"text": "lo"}], usage=2)]) == (
        Delta(role="assistant", content="Hel"), Delta(content="lo"))
    assert not state.finished
    assert state.deltas([_chunk([{"text": "!"}], "STOP", usage=3)]) == (
        Delta(content="!", finish_reason="stop"),)
    assert state.finished
    assert state.usage == TokenCounts(prompt=4, completion=3)


def test_function_calls_are_numbered_across_chunks_and_finish_as_tool_calls() -> None:
    state = StreamState("up")
    first = state.deltas([_chunk([{"functionCall": {"name": "f", "args": {"a": 1}}}])])
    second = state.deltas([_chunk([{"functionCall": {"name": "g", "args": {}}}], "STOP")])
    (call_f,) = first[0].tool_calls
    (call_g,) = second[0].tool_calls
    assert (call_f.index, call_f.name, call_f.arguments) == (0, "f", '{"a":1}')
    assert (call_g.index, call_g.name, call_g.arguments) == (1, "g", "{}")
    assert CALL_ID.fullmatch(call_f.id) and second[0].finish_reason == "tool_calls"


def test_thoughts_stream_as_reasoning_and_empty_chunks_yield_nothing() -> None:
    state = StreamState("up")
    assert state.deltas([_chunk([{"text": "hmm", "thought": True}]), _chunk([{"text": ""}]),
                         orjson.dumps({"usageMetadata": {"promptTokenCount": 4}})]) == (
        Delta(role="assistant", reasoning="hmm"),)
    assert state.usage == TokenCounts(prompt=4)


def test_a_blocked_prompt_ends_the_stream() -> None:
    state = StreamState("up")
    assert state.deltas([orjson.dumps({"promptFeedback": {"blockReason": "OTHER"}})]) == (
        Delta(role="assistant", finish_reason="content_filter"),)
    assert state.finished


@pytest.mark.parametrize(("code", "cls"), [(429, UpstreamRateLimited), (500, UpstreamServerError)])
def test_an_error_chunk_is_kept_after_the_deltas_before_it(code: int, cls: type[Exception]) -> None:
    err = {"code": code, "message": "boom", "status": "X"}
    state = StreamState("up")
    assert state.deltas([_chunk([{"text": "a"}]), orjson.dumps({"error": err}),
                         _chunk([{"text": "b"}])]) == (Delta(role="assistant", content="a"),)
    assert isinstance(state.error, cls)
    assert state.error.message == "up failed mid-stream: boom"
    assert state.error.metadata["raw"] == err


def test_a_chunk_that_is_not_an_object_is_a_bad_response() -> None:
    with pytest.raises(UpstreamBadResponse):
        StreamState("up").deltas([b'"x"'])


# ---- errors --------------------------------------------------------------------------------

def _error_body(code: int, status: str, details: list[Any] | None = None) -> bytes:
    err: dict[str, Any] = {"code": code, "message": "m", "status": status}
    if details is not None:
        err["details"] = details
    return orjson.dumps({"error": err})


def test_an_invalid_api_key_is_an_auth_error() -> None:
    body = _error_body(400, "INVALID_ARGUMENT", [
        {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}])
    err = status_error("up", 400, body, None)
    assert isinstance(err, UpstreamAuthError) and err.status == 401
    assert err.metadata["raw"] == orjson.loads(body)


def test_other_400s_are_rejections() -> None:
    assert isinstance(status_error("up", 400, _error_body(400, "INVALID_ARGUMENT"), None),
                      UpstreamRejected)


def test_retry_info_gives_retry_after_unless_the_header_does() -> None:
    body = _error_body(429, "RESOURCE_EXHAUSTED", [
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure"},
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"}])
    err = status_error("up", 429, body, None)
    assert isinstance(err, UpstreamRateLimited) and err.retry_after == 7.0
    assert status_error("up", 429, body, "3").retry_after == 3.0
    assert status_error("up", 429, _error_body(429, "RESOURCE_EXHAUSTED"), None).retry_after == 0


@pytest.mark.parametrize("body", [b"<html>oops</html>", b'{"error": "x"}', b"[1]",
                                  b'{"error": {"details": "x"}}'])
def test_error_bodies_that_are_not_googles_format_still_map_by_status(body: bytes) -> None:
    assert isinstance(status_error("up", 503, body, None), UpstreamServerError)


# ---- build ---------------------------------------------------------------------------------

def test_build_reads_its_options() -> None:
    provider = build(ProviderConfig("g", "gemini", api_key="AIza",
                                    options={"api_version": "v1", "thought_signature": ""}),
                     None)  # type: ignore[arg-type]
    assert provider.name == "g"
    assert provider.url("m", stream=False) == (
        "https://generativelanguage.googleapis.com/v1/models/m:generateContent")
    assert provider._headers == {"Content-Type": "application/json", "x-goog-api-key": "AIza"}
    req = request("m", messages=(Message(role="assistant", tool_calls=(CALL,)),))
    assert b"thoughtSignature" not in provider.body(req, DEP)


def test_build_rejects_an_option_of_the_wrong_type() -> None:
    with pytest.raises(ConfigError):
        build(ProviderConfig("g", "gemini", options={"api_version": 1}),
              None)  # type: ignore[arg-type]
