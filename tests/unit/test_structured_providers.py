"""Structured outputs in each provider's wire format: YandexGPT's native jsonSchema / jsonObject,
and the forced tool (Anthropic) or function (GigaChat) that stands in for response_format
elsewhere, whose call comes back as the answer's text, whole and streamed; the demo model's
conforming answers."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson
import pytest

from tests.unit.builders import deployment, request
from xrouter_router.domain.structured import answer_check
from xrouter_router.domain.types import (
    ChatRequest,
    Completion,
    Delta,
    Message,
    StreamBatch,
    Tool,
    ToolCall,
)
from xrouter_router.providers import anthropic, yandexgpt
from xrouter_router.providers.anthropic import ANY_TOOL, StreamState, parse_message
from xrouter_router.providers.demo import DemoProvider
from xrouter_router.providers.forced_tool import (
    ForcedTool,
    StreamedAnswer,
    as_answer,
    forced_tool,
    with_tool,
)
from xrouter_router.providers.gigachat.provider import AUTO
from xrouter_router.providers.gigachat.wire import chat_body, parse_chunk, parse_completion
from xrouter_router.providers.sse import SSEEvent

SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
FORMAT = orjson.dumps({"type": "json_schema", "json_schema": {
    "name": "weather", "schema": SCHEMA, "strict": True}})
OBJECT = b'{"type":"json_object"}'
DESCRIPTION = "Answer with the response, as this function's arguments."
LOOKUP = Tool("lookup", "Look it up", b'{"type":"object","properties":{}}')
FORCE_WEATHER = orjson.dumps({"type": "function", "function": {"name": "weather"}})


def _req(fmt: bytes = FORMAT, **kwargs: Any) -> ChatRequest:
    return request("m", response_format_json=fmt, **kwargs)


def _forced(req: ChatRequest, any_tool: bytes = ANY_TOOL) -> ForcedTool:
    found = forced_tool(req, any_tool=any_tool)
    assert found is not None
    return found


# ---- YandexGPT: native --------------------------------------------------------------------------

def _yandex_body(fmt: bytes) -> dict[str, Any]:
    provider = yandexgpt.YandexGPTProvider("ya", base_url="http://x", folder_id="b1g",
                                           api_key="k", session=None)  # type: ignore[arg-type]
    dep = replace(deployment("m", "ya"), upstream_model="yandexgpt:latest")
    return orjson.loads(provider.body(_req(fmt), dep, stream=False))  # type: ignore[no-any-return]


def test_yandex_sends_the_schema_as_json_schema() -> None:
    body = _yandex_body(FORMAT)
    assert body["jsonSchema"] == {"schema": SCHEMA}
    assert "jsonObject" not in body and "jsonSchema" not in body["completionOptions"]


def test_yandex_sends_json_object_as_its_flag() -> None:
    body = _yandex_body(OBJECT)
    assert body["jsonObject"] is True and "jsonSchema" not in body


def test_yandex_sends_no_format_for_text() -> None:
    assert set(_yandex_body(b'{"type":"text"}')) == {"modelUri", "completionOptions", "messages"}


# ---- the forced tool: which choice ---------------------------------------------------------------

def test_the_format_becomes_a_tool_named_after_the_schema_and_forced() -> None:
    req = _req()
    sent = with_tool(req, _forced(req))
    assert sent.tools == (Tool("weather", DESCRIPTION, orjson.dumps(SCHEMA)),)
    assert sent.tool_choice_json == FORCE_WEATHER
    assert sent.response_format_json == b""


def test_json_object_is_a_tool_taking_any_object() -> None:
    req = _req(OBJECT)
    assert with_tool(req, _forced(req)).tools == (
        Tool("json_response", DESCRIPTION, b'{"type":"object"}'),)


@pytest.mark.parametrize(("choice", "any_tool", "sent"), [
    (b"", ANY_TOOL, ANY_TOOL),             # the client's tools may still be called first
    (b'"auto"', AUTO, AUTO),
    (b'"none"', ANY_TOOL, FORCE_WEATHER),  # the client's tools are off: the answer is forced
    (b'"required"', ANY_TOOL, b'"required"'),
    (b'{"type":"function","function":{"name":"lookup"}}', ANY_TOOL,
     b'{"type":"function","function":{"name":"lookup"}}'),
])
def test_beside_the_clients_tools(choice: bytes, any_tool: bytes, sent: bytes) -> None:
    req = _req(tools=(LOOKUP,), tool_choice_json=choice)
    out = with_tool(req, _forced(req, any_tool))
    assert [t.name for t in out.tools] == ["lookup", "weather"]
    assert out.tool_choice_json == sent


def test_no_format_no_tool() -> None:
    assert forced_tool(_req(b'{"type":"text"}'), any_tool=ANY_TOOL) is None


# ---- Anthropic ----------------------------------------------------------------------------------

def test_anthropic_body_forces_the_format_tool_without_output_config() -> None:
    req = _req(extra_json=b'{"reasoning":{"effort":"high"}}')
    body = anthropic.request_body("c", with_tool(req, _forced(req)), deployment("m", "c"),
                                  default_max_tokens=4096, stream=False)
    assert orjson.loads(orjson.dumps(body["tools"])) == [
        {"name": "weather", "description": DESCRIPTION, "input_schema": SCHEMA}]
    assert body["tool_choice"] == {"type": "tool", "name": "weather"}
    # Anthropic refuses thinking with a forced tool; nothing of the native format is sent.
    assert "thinking" not in body and "output_config" not in body


def test_anthropic_answer_is_the_tool_input_as_text() -> None:
    data = {"content": [{"type": "tool_use", "id": "toolu_1", "name": "weather",
                         "input": {"city": "Moscow"}}],
            "stop_reason": "tool_use", "usage": {"input_tokens": 5, "output_tokens": 7}}
    answer = as_answer(parse_message("c", data), _forced(_req()))
    assert answer.message == Message(role="assistant", content='{"city":"Moscow"}')
    assert answer.finish_reason == "stop"
    assert answer.usage is not None and answer.usage.completion == 7


def _sse(kind: str, payload: dict[str, Any]) -> SSEEvent:
    return SSEEvent(kind, orjson.dumps({"type": kind, **payload}))


def test_anthropic_stream_turns_the_tool_input_into_content() -> None:
    state, answer = StreamState("c"), StreamedAnswer(_forced(_req()))
    events = [
        _sse("message_start", {"message": {"usage": {"input_tokens": 5}}}),
        _sse("content_block_start", {"index": 0, "content_block": {
            "type": "tool_use", "id": "toolu_1", "name": "weather", "input": {}}}),
        _sse("content_block_delta", {"index": 0, "delta": {"type": "input_json_delta",
                                                           "partial_json": '{"city": '}}),
        _sse("content_block_delta", {"index": 0, "delta": {"type": "input_json_delta",
                                                           "partial_json": '"Moscow"}'}}),
        _sse("message_delta", {"delta": {"stop_reason": "tool_use"},
                               "usage": {"output_tokens": 7}}),
    ]
    batch = answer.batch(state.batch(events))
    assert [(d.content, d.tool_calls, d.finish_reason) for d in batch.deltas] == [
        (None, (), ""), (None, (), ""), ('{"city": ', (), ""), ('"Moscow"}', (), ""),
        (None, (), "stop")]


def test_a_clients_tool_called_beside_stays_a_call() -> None:
    forced = _forced(_req(tools=(LOOKUP,)))
    call = ToolCall(0, "toolu_2", "lookup", "{}")
    whole = as_answer(Completion(Message(role="assistant", content=None, tool_calls=(call,)),
                                 "tool_calls"), forced)
    assert whole.message.tool_calls == (call,) and whole.finish_reason == "tool_calls"
    streamed = StreamedAnswer(forced).batch(StreamBatch((
        Delta(tool_calls=(call,)), Delta(finish_reason="tool_calls"))))
    assert [(d.tool_calls, d.finish_reason) for d in streamed.deltas] == [
        ((call,), ""), ((), "tool_calls")]


# ---- GigaChat -----------------------------------------------------------------------------------

def test_gigachat_body_forces_the_format_function() -> None:
    req = _req()
    body = orjson.loads(chat_body("g", with_tool(req, _forced(req, AUTO)), "GigaChat",
                                  stream=False))
    assert body["functions"] == [{"name": "weather", "description": DESCRIPTION,
                                  "parameters": SCHEMA}]
    assert body["function_call"] == {"name": "weather"}
    assert "response_format" not in body


def test_gigachat_answer_is_the_function_arguments_as_text() -> None:
    data = {"choices": [{"message": {"role": "assistant", "content": "", "function_call": {
        "name": "weather", "arguments": {"city": "Moscow"}}}, "index": 0,
        "finish_reason": "function_call"}], "usage": {"prompt_tokens": 5,
                                                      "completion_tokens": 7}}
    answer = as_answer(parse_completion("g", data), _forced(_req(), AUTO))
    assert answer.message == Message(role="assistant", content='{"city":"Moscow"}')
    assert answer.finish_reason == "stop"


def test_gigachat_stream_turns_the_function_call_into_content() -> None:
    chunk = {"choices": [{"delta": {"role": "assistant", "content": "", "function_call": {
        "name": "weather", "arguments": {"city": "Moscow"}}}, "index": 0,
        "finish_reason": "function_call"}]}
    deltas, _ = parse_chunk("g", chunk)
    batch = StreamedAnswer(_forced(_req(), AUTO)).batch(StreamBatch(tuple(deltas)))
    assert [(d.content, d.tool_calls, d.finish_reason) for d in batch.deltas] == [
        ('{"city":"Moscow"}', (), "stop")]


# ---- the demo model ------------------------------------------------------------------------------

NESTED = {"$defs": {"City": {"type": "object", "required": ["name"], "title": "City",
                             "properties": {"name": {"type": "string", "title": "Name"}}}},
          "type": "object", "title": "Rating", "required": ["city", "score"],
          "properties": {"city": {"$ref": "#/$defs/City"}, "score": {"type": "integer"}}}


async def test_the_demo_answers_a_nested_pydantic_schema_conformingly() -> None:
    raw = orjson.dumps({"type": "json_schema", "json_schema": {"name": "r", "schema": NESTED}})
    req = _req(raw)
    answer = await DemoProvider("demo", word_delay=0).chat(req, deployment("m", "demo"))
    assert orjson.loads(answer.message.text()) == {"city": {"name": "demo"}, "score": 1}
    check = answer_check(req)
    assert check is not None
    check.check("demo", answer.message, answer.finish_reason)
