"""The gateway's Anthropic Messages JSON <-> proto translation: validation errors naming the
field, requests into proto, `message` bodies, the named SSE events, and the error shape."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from xrouter.v1 import router_pb2 as pb
from xrouter_gateway.anthropic_format import (
    message_id,
    message_json,
    parse_messages,
    to_chat_request,
)
from xrouter_gateway.anthropic_stream import MessageStreamWriter
from xrouter_gateway.errors import APIError

HI = [{"role": "user", "content": "hi"}]
WEATHER_TOOL = {"name": "get_weather", "description": "Weather in a city",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}


def _error(body: bytes) -> APIError:
    with pytest.raises(APIError) as info:
        parse_messages(body)
    assert info.value.status == 400
    assert info.value.type == "invalid_request_error"
    return info.value


def _proto(body: dict[str, Any]) -> pb.ChatRequest:
    return to_chat_request(parse_messages(orjson.dumps(body)), "gen-1")


def _messages(*messages: dict[str, Any], **extra: Any) -> list[pb.Message]:
    return list(_proto({"model": "m", "max_tokens": 5, "messages": list(messages), **extra}).messages)


# ---- parse_messages ----------------------------------------------------------------------

def test_invalid_json_is_a_400_with_the_position() -> None:
    err = _error(b'{"model": ')
    assert (err.message, err.param) == (
        "Invalid JSON in request body: unexpected end of data at position 10", None)


@pytest.mark.parametrize("body", [b"[1, 2]", b'"text"', b"null"])
def test_a_body_that_is_not_an_object_is_a_400(body: bytes) -> None:
    assert _error(body).message == "Request body must be a JSON object"


@pytest.mark.parametrize(("body", "message", "param"), [
    ({"model": "m", "messages": HI},
     "Invalid request: Object missing required field `max_tokens` (at max_tokens)", "max_tokens"),
    ({"model": "m", "max_tokens": 0, "messages": HI},
     "Invalid request: Expected `int` >= 1 (at max_tokens)", "max_tokens"),
    ({"max_tokens": 5, "messages": HI},
     "Invalid request: Object missing required field `model` (at model)", "model"),
    ({"model": "m", "max_tokens": 5, "messages": []},
     "Invalid request: Expected `array` of length >= 1 (at messages)", "messages"),
    ({"model": "m", "max_tokens": 5, "messages": HI, "temperature": 1.5},
     "Invalid request: Expected `float` <= 1.0 (at temperature)", "temperature"),
    ({"model": "m", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]},
     "Invalid request: Invalid enum value 'system' (at messages[0].role)", "messages[0].role"),
    ({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [
        {"type": "document", "source": {}}]}]},
     "Invalid request: Invalid value 'document' (at messages[0].content[0].type)",
     "messages[0].content[0].type"),
    ({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "text"}]}]},
     "Invalid request: Object missing required field `text` (at messages[0].content[0].text)",
     "messages[0].content[0].text"),
    ({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/tiff", "data": "x"}}]}]},
     "Invalid request: Invalid enum value 'image/tiff' "
     "(at messages[0].content[0].source.media_type)", "messages[0].content[0].source.media_type"),
    ({"model": "m", "max_tokens": 5, "messages": HI,
      "tools": [{"type": "web_search_20250305", "name": "web_search", "input_schema": {}}]},
     "Invalid request: Invalid enum value 'web_search_20250305' (at tools[0].type)",
     "tools[0].type"),
    ({"model": "m", "max_tokens": 5, "messages": HI, "tools": [{"name": "f"}]},
     "Invalid request: Object missing required field `input_schema` (at tools[0].input_schema)",
     "tools[0].input_schema"),
    ({"model": "m", "max_tokens": 5, "messages": HI, "tool_choice": {"type": "tool"}},
     "Invalid request: Object missing required field `name` (at tool_choice.name)",
     "tool_choice.name"),
    ({"model": "m", "max_tokens": 5, "messages": HI, "stop_sequences": "END"},
     "Invalid request: Expected `array | null`, got `str` (at stop_sequences)", "stop_sequences"),
])
def test_schema_errors_name_the_field(body: dict[str, Any], message: str, param: str) -> None:
    err = _error(orjson.dumps(body))
    assert (err.message, err.param) == (message, param)


@pytest.mark.parametrize(("message", "text", "param"), [
    ({"role": "user", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}]},
     "messages[0].content[0]: 'tool_use' blocks are not allowed in user messages",
     "messages[0].content[0].type"),
    ({"role": "assistant", "content": [{"type": "text", "text": "a"},
                                       {"type": "tool_result", "tool_use_id": "t"}]},
     "messages[0].content[1]: 'tool_result' blocks are not allowed in assistant messages",
     "messages[0].content[1].type"),
    ({"role": "assistant", "content": [
        {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}}]},
     "messages[0].content[0]: 'image' blocks are not allowed in assistant messages",
     "messages[0].content[0].type"),
])
def test_blocks_in_the_wrong_role_are_a_400(message: dict[str, Any], text: str, param: str) -> None:
    err = _error(orjson.dumps({"model": "m", "max_tokens": 5, "messages": [message]}))
    assert (err.message, err.param) == (text, param)


@pytest.mark.parametrize("choice", [{"type": "any"}, {"type": "tool", "name": "f"}])
def test_forcing_a_tool_without_tools_is_a_400(choice: dict[str, Any]) -> None:
    err = _error(orjson.dumps({"model": "m", "max_tokens": 5, "messages": HI, "tool_choice": choice}))
    assert (err.message, err.param) == (
        f"tool_choice of type '{choice['type']}' needs 'tools'", "tool_choice")


def test_unknown_top_level_fields_are_ignored() -> None:
    req = parse_messages(orjson.dumps({"model": "m", "max_tokens": 5, "messages": HI,
                                       "context_management": {"edits": []},
                                       "service_tier": "auto"}))
    assert req.model == "m"


# ---- to_chat_request ---------------------------------------------------------------------

def test_a_minimal_request() -> None:
    assert _proto({"model": "claude", "max_tokens": 64, "messages": HI}) == pb.ChatRequest(
        generation_id="gen-1", model="claude", max_tokens=64,
        messages=[pb.Message(role="user", content="hi")])


def test_sampling_stop_sequences_and_user() -> None:
    out = _proto({"model": "m", "max_tokens": 5, "messages": HI, "temperature": 0.5, "top_p": 0.9,
                  "top_k": 40, "stop_sequences": ["END", "\n\n"],
                  "metadata": {"user_id": "user-42"}, "stream": True})
    assert (out.temperature, out.top_p, out.top_k) == (0.5, 0.9, 40)
    assert list(out.stop) == ["END", "\n\n"]
    assert out.user == "user-42"
    assert not out.extra_json and not out.tool_choice_json


def test_absent_sampling_fields_stay_unset() -> None:
    out = _proto({"model": "m", "max_tokens": 5, "messages": HI, "metadata": {}})
    assert not any(out.HasField(f) for f in ("temperature", "top_p", "top_k"))
    assert out.user == ""


def test_system_string_and_blocks_become_one_system_message_first() -> None:
    assert _messages(*HI, system="Be brief.")[0] == pb.Message(role="system", content="Be brief.")
    blocks = [{"type": "text", "text": "Be brief."},
              {"type": "text", "text": "Answer in French.", "cache_control": {"type": "ephemeral"}}]
    assert _messages(*HI, system=blocks[:1] * 2) == [
        pb.Message(role="system", content="Be brief.\n\nBe brief."),
        pb.Message(role="user", content="hi")]
    # With cache_control: parts, so that the breakpoint can reach Anthropic; the same text.
    cached = b'{"type":"text","text":"\\n\\nAnswer in French.","cache_control":{"type":"ephemeral"}}'
    assert _messages(*HI, system=blocks) == [
        pb.Message(role="system", parts=[
            pb.ContentPart(type="text", text="Be brief."),
            pb.ContentPart(type="text", text="\n\nAnswer in French.", raw_json=cached)]),
        pb.Message(role="user", content="hi")]


def test_user_blocks_become_parts_and_images_urls() -> None:
    msgs = _messages({"role": "user", "content": [
        {"type": "text", "text": "What is on these?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0K"}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]})
    assert msgs == [pb.Message(role="user", parts=[
        pb.ContentPart(type="text", text="What is on these?"),
        pb.ContentPart(type="image_url", image_url="data:image/png;base64,iVBORw0K"),
        pb.ContentPart(type="image_url", image_url="https://example.com/cat.jpg"),
    ])]


def test_assistant_tool_use_and_user_tool_results_become_tool_calls_and_tool_messages() -> None:
    msgs = _messages(
        {"role": "user", "content": "Weather in Moscow and Paris?"},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Let me check."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Moscow"}},
            {"type": "tool_use", "id": "toolu_2", "name": "get_weather",
             "input": {"city": "Paris", "days": [1, 2]}},
        ]},
        {"role": "user", "content": [
            {"type": "text", "text": "Here you go."},
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "-5 C"},
            {"type": "tool_result", "tool_use_id": "toolu_2", "is_error": True,
             "content": [{"type": "text", "text": "timeout"}, {"type": "text", "text": "retry later"}]},
        ]},
    )
    assert msgs == [
        pb.Message(role="user", content="Weather in Moscow and Paris?"),
        pb.Message(role="assistant", content="Let me check.", tool_calls=[
            pb.ToolCall(index=0, id="toolu_1", name="get_weather", arguments='{"city":"Moscow"}'),
            pb.ToolCall(index=1, id="toolu_2", name="get_weather",
                        arguments='{"city":"Paris","days":[1,2]}'),
        ]),
        pb.Message(role="tool", tool_call_id="toolu_1", content="-5 C"),
        pb.Message(role="tool", tool_call_id="toolu_2", content="Error: timeout\n\nretry later"),
        pb.Message(role="user", parts=[pb.ContentPart(type="text", text="Here you go.")]),
    ]


def test_tool_results_alone_add_no_user_message_and_tool_use_alone_no_content() -> None:
    msgs = _messages(
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1"}]},
    )
    assert msgs == [
        pb.Message(role="assistant", tool_calls=[pb.ToolCall(index=0, id="t1", name="f",
                                                             arguments="{}")]),
        pb.Message(role="tool", tool_call_id="t1", content=""),
    ]
    assert not msgs[0].HasField("content")


def test_assistant_text_blocks_are_joined_and_strings_pass_through() -> None:
    msgs = _messages({"role": "user", "content": "a"},
                     {"role": "assistant", "content": [{"type": "text", "text": "B)"},
                                                       {"type": "text", "text": " Helios"}]},
                     {"role": "assistant", "content": "prefill"})
    assert msgs[1:] == [pb.Message(role="assistant", content="B) Helios"),
                        pb.Message(role="assistant", content="prefill")]


def test_tools_become_typed_proto_tools() -> None:
    out = _proto({"model": "m", "max_tokens": 5, "messages": HI,
                  "tools": [WEATHER_TOOL, {"name": "noop", "input_schema": {"type": "object"},
                                           "type": "custom"}]})
    assert list(out.tools) == [
        pb.Tool(name="get_weather", description="Weather in a city",
                parameters_json=b'{"type":"object","properties":{"city":{"type":"string"}}}'),
        pb.Tool(name="noop", parameters_json=b'{"type":"object"}'),
    ]
    assert not out.tools[0].HasField("strict")


@pytest.mark.parametrize(("choice", "expected"), [
    ({"type": "auto"}, b'"auto"'),
    ({"type": "any"}, b'"required"'),
    ({"type": "none"}, b'"none"'),
    ({"type": "tool", "name": "get_weather"}, b'{"type":"function","function":{"name":"get_weather"}}'),
])
def test_tool_choice_becomes_openai_tool_choice(choice: dict[str, Any], expected: bytes) -> None:
    out = _proto({"model": "m", "max_tokens": 5, "messages": HI, "tools": [WEATHER_TOOL],
                  "tool_choice": choice})
    assert (out.tool_choice_json, out.extra_json) == (expected, b"")


def test_disable_parallel_tool_use_turns_parallel_tool_calls_off() -> None:
    out = _proto({"model": "m", "max_tokens": 5, "messages": HI, "tools": [WEATHER_TOOL],
                  "tool_choice": {"type": "any", "disable_parallel_tool_use": True}})
    assert (out.tool_choice_json, out.extra_json) == (b'"required"', b'{"parallel_tool_calls":false}')


@pytest.mark.parametrize("choice", [{"type": "auto"}, {"type": "none"}])
def test_tool_choice_without_tools_is_dropped(choice: dict[str, Any]) -> None:
    out = _proto({"model": "m", "max_tokens": 5, "messages": HI, "tool_choice": choice})
    assert (out.tool_choice_json, list(out.tools)) == (b"", [])


# ---- message_json ------------------------------------------------------------------------

def _reply(message: pb.Message, finish: str = "stop", usage: pb.Usage | None = None) -> pb.ChatResponse:
    return pb.ChatResponse(id="gen-abc", model="test/echo", provider="fake", created=1,
                           choices=[pb.Choice(index=0, message=message, finish_reason=finish)],
                           usage=usage or pb.Usage(prompt_tokens=12, completion_tokens=3,
                                                   total_tokens=15, cost="0.01"))


def test_message_id_is_the_generation_id_under_msg_() -> None:
    assert message_id("gen-0123abcd") == "msg_0123abcd"


def test_a_text_reply_is_an_anthropic_message() -> None:
    body = message_json(_reply(pb.Message(role="assistant", content="echo: hi")), "msg_abc")
    assert orjson.loads(body) == {
        "id": "msg_abc", "type": "message", "role": "assistant", "model": "test/echo",
        "content": [{"type": "text", "text": "echo: hi"}],
        "stop_reason": "end_turn", "stop_sequence": None,
        "usage": {"input_tokens": 12, "output_tokens": 3, "cache_read_input_tokens": 0,
                  "cache_creation_input_tokens": 0},
    }


def test_tool_calls_become_tool_use_blocks_after_the_text() -> None:
    message = pb.Message(role="assistant", content="Checking.", tool_calls=[
        pb.ToolCall(index=0, id="call_1", name="get_weather", arguments='{"city": "Moscow"}'),
        pb.ToolCall(index=1, id="call_2", name="noop", arguments="")])
    body = orjson.loads(message_json(_reply(message, "tool_calls"), "msg_abc"))
    assert body["content"] == [
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Moscow"}},
        {"type": "tool_use", "id": "call_2", "name": "noop", "input": {}},
    ]
    assert body["stop_reason"] == "tool_use"


@pytest.mark.parametrize("arguments", ['{"city": ', "[1, 2]"])
def test_tool_arguments_that_are_not_an_object_are_a_502(arguments: str) -> None:
    message = pb.Message(role="assistant", tool_calls=[
        pb.ToolCall(index=0, id="call_1", name="get_weather", arguments=arguments)])
    with pytest.raises(APIError) as info:
        message_json(_reply(message, "tool_calls"), "msg_abc")
    assert (info.value.status, info.value.message) == (
        502, "The model called tool 'get_weather' with arguments that are not a JSON object")


@pytest.mark.parametrize(("finish", "stop_reason"), [
    ("stop", "end_turn"), ("length", "max_tokens"), ("tool_calls", "tool_use"),
    ("content_filter", "end_turn"), ("", "end_turn"),
])
def test_finish_reasons_become_stop_reasons(finish: str, stop_reason: str) -> None:
    body = orjson.loads(message_json(_reply(pb.Message(content="x"), finish), "msg_abc"))
    assert body["stop_reason"] == stop_reason


def test_empty_content_gives_no_block_and_cached_tokens_are_cache_reads() -> None:
    usage = pb.Usage(prompt_tokens=100, completion_tokens=1, cached_tokens=60)
    body = orjson.loads(message_json(_reply(pb.Message(content=""), usage=usage), "msg_abc"))
    assert body["content"] == []
    assert body["usage"] == {"input_tokens": 40, "output_tokens": 1, "cache_read_input_tokens": 60,
                             "cache_creation_input_tokens": 0}


def test_cache_writes_are_apart_from_input_tokens_as_anthropic_counts_them() -> None:
    usage = pb.Usage(prompt_tokens=100, completion_tokens=1, cached_tokens=60,
                     cache_write_tokens=30)
    body = orjson.loads(message_json(_reply(pb.Message(content=""), usage=usage), "msg_abc"))
    assert body["usage"] == {"input_tokens": 10, "output_tokens": 1, "cache_read_input_tokens": 60,
                             "cache_creation_input_tokens": 30}


# ---- MessageStreamWriter -----------------------------------------------------------------

def _parse(stream: bytes) -> list[tuple[str, dict[str, Any]]]:
    """(event name, data) pairs; also checks each event's name is its data's type."""
    out = []
    for block in stream.decode().split("\n\n")[:-1]:
        name_line, data_line = block.split("\n")
        name, data = name_line.removeprefix("event: "), orjson.loads(data_line.removeprefix("data: "))
        assert data["type"] == name
        out.append((name, data))
    return out


def _chunk(content: str | None = None, calls: list[pb.ToolCall] | None = None, finish: str = "",
           role: str = "") -> pb.ChunkDelta:
    d = pb.ChunkDelta(index=0, role=role, tool_calls=calls or [], finish_reason=finish)
    if content is not None:
        d.content = content
    return d


def _run(*events: pb.ChatStreamEvent, usage: pb.Usage | None = None) -> list[tuple[str, dict[str, Any]]]:
    writer = MessageStreamWriter("msg_1", "requested")
    writer.served(events[0])
    return _parse(b"".join(writer.deltas(ev) for ev in events) + writer.usage(usage))


START = ("message_start", {"type": "message_start", "message": {
    "id": "msg_1", "type": "message", "role": "assistant", "model": "test/echo", "content": [],
    "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 0, "output_tokens": 0}}})


def _end(stop_reason: str, usage: dict[str, int]) -> list[tuple[str, dict[str, Any]]]:
    return [("message_delta", {"type": "message_delta",
                               "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                               "usage": usage}),
            ("message_stop", {"type": "message_stop"})]


def test_a_text_stream_is_one_text_block_between_start_and_stop() -> None:
    events = _run(
        pb.ChatStreamEvent(model="test/echo", provider="fake",
                           chunks=[_chunk("", role="assistant"), _chunk("echo:")]),
        pb.ChatStreamEvent(chunks=[_chunk(" hi")]),
        pb.ChatStreamEvent(chunks=[_chunk(finish="stop")],
                           end=pb.StreamEnd(usage=pb.Usage(prompt_tokens=9, completion_tokens=2))),
        usage=pb.Usage(prompt_tokens=9, completion_tokens=2, cached_tokens=4),
    )
    assert events == [
        START,
        ("content_block_start", {"type": "content_block_start", "index": 0,
                                 "content_block": {"type": "text", "text": ""}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "text_delta", "text": "echo:"}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "text_delta", "text": " hi"}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        *_end("end_turn", {"input_tokens": 5, "output_tokens": 2, "cache_read_input_tokens": 4,
                           "cache_creation_input_tokens": 0}),
    ]


def test_text_then_tool_calls_give_one_block_each() -> None:
    events = _run(
        pb.ChatStreamEvent(model="test/echo", chunks=[_chunk("Checking.")]),
        pb.ChatStreamEvent(chunks=[_chunk(calls=[pb.ToolCall(index=0, id="call_1", name="get_weather",
                                                             arguments='{"city": ')])]),
        pb.ChatStreamEvent(chunks=[_chunk(calls=[pb.ToolCall(index=0, arguments='"Moscow"}')])]),
        pb.ChatStreamEvent(chunks=[_chunk(calls=[pb.ToolCall(index=1, id="call_2", name="noop")]),
                                   _chunk(finish="tool_calls")]),
        pb.ChatStreamEvent(end=pb.StreamEnd()),
    )
    assert events[1:] == [
        ("content_block_start", {"type": "content_block_start", "index": 0,
                                 "content_block": {"type": "text", "text": ""}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "text_delta", "text": "Checking."}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("content_block_start", {"type": "content_block_start", "index": 1, "content_block": {
            "type": "tool_use", "id": "call_1", "name": "get_weather", "input": {}}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 1, "delta": {
            "type": "input_json_delta", "partial_json": '{"city": '}}),
        ("content_block_delta", {"type": "content_block_delta", "index": 1, "delta": {
            "type": "input_json_delta", "partial_json": '"Moscow"}'}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 1}),
        ("content_block_start", {"type": "content_block_start", "index": 2, "content_block": {
            "type": "tool_use", "id": "call_2", "name": "noop", "input": {}}}),
        ("content_block_stop", {"type": "content_block_stop", "index": 2}),
        *_end("tool_use", {"input_tokens": 0, "output_tokens": 0, "cache_read_input_tokens": 0,
                           "cache_creation_input_tokens": 0}),
    ]


def test_the_requested_model_stands_when_the_router_names_none() -> None:
    events = _run(pb.ChatStreamEvent(chunks=[_chunk(finish="length")], end=pb.StreamEnd()))
    assert events[0][1]["message"]["model"] == "requested"
    assert [name for name, _ in events] == ["message_start", "message_delta", "message_stop"]
    assert events[1][1]["delta"]["stop_reason"] == "max_tokens"


def test_an_error_after_the_start_is_an_error_event_and_the_end() -> None:
    writer = MessageStreamWriter("msg_1", "m")
    out = writer.deltas(pb.ChatStreamEvent(model="m", chunks=[_chunk("echo:")]))
    out += writer.error(APIError(502, "The upstream connection was lost"))
    out += writer.usage(pb.Usage(prompt_tokens=3))
    assert [name for name, _ in _parse(out)] == ["message_start", "content_block_start",
                                                 "content_block_delta", "error"]
    assert _parse(out)[-1][1] == {"type": "error", "error": {
        "type": "api_error", "message": "The upstream connection was lost"}}


def test_an_error_before_any_event_is_the_only_event() -> None:
    writer = MessageStreamWriter("msg_1", "m")
    out = writer.error(APIError(503, "No provider is available")) + writer.usage(None)
    assert out == (b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error",'
                   b'"message":"No provider is available"}}\n\n')


@pytest.mark.parametrize(("extra", "sent"), [
    ({"thinking": {"type": "enabled", "budget_tokens": 1024}},
     {"reasoning": {"max_tokens": 1024}}),
    ({"thinking": {"type": "enabled", "budget_tokens": 1024}, "tools": [WEATHER_TOOL],
      "tool_choice": {"type": "auto", "disable_parallel_tool_use": True}},
     {"parallel_tool_calls": False, "reasoning": {"max_tokens": 1024}}),
    ({"thinking": {"type": "disabled"}}, None)])
def test_thinking_becomes_the_reasoning_budget(extra: dict[str, Any],
                                               sent: dict[str, Any] | None) -> None:
    req = _proto({"model": "m", "max_tokens": 2000, "messages": HI, **extra})
    assert (orjson.loads(req.extra_json) if req.extra_json else None) == sent


@pytest.mark.parametrize(("thinking", "message"), [
    ({"type": "enabled", "budget_tokens": 100}, "Expected `int` >= 1024"),
    ({"type": "enabled", "budget_tokens": 5000}, "`max_tokens` must be greater than"),
    ({"type": "sometimes"}, "Invalid value 'sometimes'")])
def test_invalid_thinking_is_400(thinking: dict[str, Any], message: str) -> None:
    with pytest.raises(APIError) as err:
        parse_messages(orjson.dumps({"model": "m", "max_tokens": 2000, "messages": HI,
                                     "thinking": thinking}))
    assert err.value.status == 400 and message in err.value.message
