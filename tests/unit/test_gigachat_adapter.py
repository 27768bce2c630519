"""The GigaChat adapter's pure parts: request bodies, tool mapping, parsing completions, stream
chunks, tokens and embeddings, finish reasons and error bodies (no network)."""

from __future__ import annotations

import re
from typing import Any

import orjson
import pytest

from tests.unit.builders import request
from xrouter_common.env import ConfigError
from xrouter_router.domain.errors import (
    UpstreamAuthError,
    UpstreamBadResponse,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamServerError,
    UpstreamUnavailable,
)
from xrouter_router.domain.types import (
    ContentPart,
    Delta,
    Message,
    Sampling,
    TokenCounts,
    Tool,
    ToolCall,
)
from xrouter_router.providers.config import ProviderConfig
from xrouter_router.providers.gigachat import build
from xrouter_router.providers.gigachat.wire import (
    api_error,
    chat_body,
    embeddings_body,
    finish_reason,
    function_call_json,
    messages_json,
    parse_chunk,
    parse_completion,
    parse_embeddings,
    parse_token,
    token_error,
)

HELLO = {"role": "user", "content": "hello"}
WEATHER = Tool("get_weather", "Current weather", b'{"type":"object","properties":{"city":{"type":"string"}}}')
CLOCK = Tool("get_time")
CALL = ToolCall(0, "call_1", "get_weather", '{"city": "Moscow"}')
CALL_ID = re.compile(r"call_[0-9a-f]{24}")


def _body(stream: bool = False, update_interval: float = 0.0, **kwargs: Any) -> dict[str, Any]:
    raw = chat_body("giga", request("m", **kwargs), "GigaChat", stream=stream,
                    update_interval=update_interval)
    return orjson.loads(raw)  # type: ignore[no-any-return]


# ---- request body ------------------------------------------------------------------------

def test_minimal_body_is_model_and_messages_only() -> None:
    raw = chat_body("giga", request("m"), "GigaChat", stream=False)
    assert raw == b'{"model":"GigaChat","messages":[{"role":"user","content":"hello"}]}'


def test_stream_body_sets_stream_and_the_configured_update_interval() -> None:
    assert _body(stream=True) == {"model": "GigaChat", "messages": [HELLO], "stream": True}
    assert _body(stream=True, update_interval=0.5)["update_interval"] == 0.5
    assert "update_interval" not in _body(stream=False, update_interval=0.5)


def test_supported_sampling_is_mapped_and_the_rest_is_dropped() -> None:
    sampling = Sampling(max_tokens=100, temperature=0.7, top_p=0.9, top_k=40,
                        frequency_penalty=0.5, presence_penalty=0.5, repetition_penalty=1.1,
                        seed=7, stop=("END",))
    body = _body(sampling=sampling, user="u1", extra_json=b'{"logit_bias":{}}',
                 response_format_json=b'{"type":"json_object"}')
    assert body == {"model": "GigaChat", "messages": [HELLO], "temperature": 0.7, "top_p": 0.9,
                    "max_tokens": 100, "repetition_penalty": 1.1}


def test_sampling_is_kept_inside_gigachats_ranges() -> None:
    body = _body(sampling=Sampling(temperature=0.0, top_p=1.5, max_tokens=0,
                                   repetition_penalty=0.0))
    assert body == {"model": "GigaChat", "messages": [HELLO], "temperature": 0.001, "top_p": 1.0}


def test_tools_become_functions_with_auto_by_default() -> None:
    body = _body(tools=(WEATHER, CLOCK))
    assert body["functions"] == [
        {"name": "get_weather", "description": "Current weather",
         "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}},
        {"name": "get_time", "parameters": {"type": "object", "properties": {}}},
    ]
    assert body["function_call"] == "auto"


@pytest.mark.parametrize(("choice", "tools", "expected"), [
    (b'"auto"', (WEATHER, CLOCK), "auto"),
    (b'"none"', (WEATHER, CLOCK), "none"),
    (b'"required"', (WEATHER,), {"name": "get_weather"}),
    (b'"required"', (WEATHER, CLOCK), "auto"),
    (b'{"type":"function","function":{"name":"get_time"}}', (WEATHER, CLOCK), {"name": "get_time"}),
    (b'{"type":"function"}', (WEATHER,), "auto"),
])
def test_tool_choice_becomes_function_call(choice: bytes, tools: tuple[Tool, ...],
                                           expected: Any) -> None:
    assert function_call_json(choice, tools) == expected


def test_tool_choice_without_tools_is_dropped() -> None:
    assert _body(tool_choice_json=b'"auto"') == {"model": "GigaChat", "messages": [HELLO]}


def test_system_stays_system_developer_becomes_system_and_images_are_dropped() -> None:
    parts = (ContentPart("text", text="what is "), ContentPart("image_url", image_url="https://x/i.png"),
             ContentPart("text", text="this?"))
    messages = (Message("system", "Be brief."), Message("developer", "No emoji."),
                Message("user", parts=parts))
    assert messages_json("giga", messages) == [
        {"role": "system", "content": "Be brief."},
        {"role": "system", "content": "No emoji."},
        {"role": "user", "content": "what is this?"},
    ]


def test_a_tool_call_round_trip_uses_function_call_objects_and_function_messages() -> None:
    messages = (Message("user", "weather?"),
                Message("assistant", None, tool_calls=(CALL,)),
                Message("tool", '{"temperature": -3}', tool_call_id="call_1"),
                Message("user", "thanks"))
    # The arguments object is the client's JSON text, byte for byte.
    assert orjson.dumps(messages_json("giga", messages)) == (
        b'[{"role":"user","content":"weather?"},'
        b'{"role":"assistant","content":"",'
        b'"function_call":{"name":"get_weather","arguments":{"city": "Moscow"}}},'
        b'{"role":"function","content":"{\\"temperature\\": -3}","name":"get_weather"},'
        b'{"role":"user","content":"thanks"}]')


def test_a_tool_result_that_is_not_json_goes_as_a_json_string() -> None:
    messages = (Message("assistant", tool_calls=(CALL,)),
                Message("tool", 'sunny, "warm"', tool_call_id="call_1"))
    assert messages_json("giga", messages)[1] == {"role": "function", "name": "get_weather",
                                                  "content": '"sunny, \\"warm\\""'}


def test_parallel_tool_calls_are_interleaved_with_their_results() -> None:
    second = ToolCall(1, "call_2", "get_time", "")
    messages = (Message("assistant", "Checking.", tool_calls=(CALL, second)),
                Message("tool", '"12:00"', tool_call_id="call_2"),
                Message("tool", '{"t": 1}', tool_call_id="call_1"),
                Message("tool", '"orphan"', tool_call_id="call_x", name="lost"))
    assert orjson.loads(orjson.dumps(messages_json("giga", messages))) == [
        {"role": "assistant", "content": "Checking.",
         "function_call": {"name": "get_weather", "arguments": {"city": "Moscow"}}},
        {"role": "function", "content": '{"t": 1}', "name": "get_weather"},
        {"role": "assistant", "content": "", "function_call": {"name": "get_time", "arguments": {}}},
        {"role": "function", "content": '"12:00"', "name": "get_time"},
        {"role": "function", "content": '"orphan"', "name": "lost"},
    ]


@pytest.mark.parametrize("arguments", ["[1, 2]", "not json", '"text"'])
def test_tool_call_arguments_that_are_not_an_object_are_refused(arguments: str) -> None:
    bad = (Message("assistant", tool_calls=(ToolCall(0, "c", "f", arguments),)),)
    with pytest.raises(UpstreamRejected, match="JSON object") as err:
        messages_json("giga", bad)
    assert err.value.provider == "giga"


def test_embeddings_body() -> None:
    assert embeddings_body(("a", "b"), "Embeddings") == b'{"model":"Embeddings","input":["a","b"]}'


# ---- responses ---------------------------------------------------------------------------

@pytest.mark.parametrize(("raw", "has_call", "expected"), [
    ("stop", False, "stop"), ("length", False, "length"), ("function_call", True, "tool_calls"),
    ("blacklist", False, "content_filter"), ("error", True, "tool_calls"), ("error", False, "stop"),
    (None, False, "stop"),
])
def test_finish_reasons(raw: str | None, has_call: bool, expected: str) -> None:
    assert finish_reason(raw, has_call) == expected


def test_parse_text_completion_with_usage() -> None:
    data = {"choices": [{"message": {"content": "Hi!", "role": "assistant"}, "index": 0,
                         "finish_reason": "stop"}],
            "created": 1, "model": "GigaChat:2.0.28.2", "object": "chat.completion",
            "usage": {"prompt_tokens": 17, "completion_tokens": 10, "total_tokens": 27,
                      "precached_prompt_tokens": 2}}
    completion = parse_completion("giga", data)
    assert completion.message == Message("assistant", "Hi!")
    assert completion.finish_reason == "stop"
    # The 2 cached tokens come on top of the 17 billed ones (total_tokens = 17 + 10).
    assert completion.usage == TokenCounts(prompt=19, completion=10, cached=2)


def test_parse_function_call_completion_generates_an_id_and_a_string() -> None:
    data = {"choices": [{"message": {"content": "", "role": "assistant",
                                     "function_call": {"name": "fc", "arguments": {
                                         "location": "Москва", "num_days": 0}},
                                     "functions_state_id": "77d3fb14-457a-46ba-937e-8d856156d003"},
                         "index": 0, "finish_reason": "function_call"}],
            "object": "chat.completion"}
    completion = parse_completion("giga", data)
    (call,) = completion.message.tool_calls
    assert CALL_ID.fullmatch(call.id)
    assert (call.index, call.name) == (0, "fc")
    assert call.arguments == '{"location":"Москва","num_days":0}'
    assert completion.message.content is None
    assert completion.finish_reason == "tool_calls"
    assert completion.usage is None
    assert parse_completion("giga", data).message.tool_calls[0].id != call.id


def test_a_completion_without_choices_is_a_bad_response() -> None:
    with pytest.raises(UpstreamBadResponse):
        parse_completion("giga", {"object": "chat.completion", "choices": []})


@pytest.mark.parametrize("choice", [{"index": 0}, {"message": "Hi!"}])
def test_a_choice_without_a_message_object_is_a_bad_response(choice: dict[str, Any]) -> None:
    with pytest.raises(UpstreamBadResponse):
        parse_completion("giga", {"object": "chat.completion", "choices": [choice]})


@pytest.mark.parametrize("choices", [["text"], [{"delta": "text", "index": 0}], [{"index": 0}]])
def test_a_chunk_choice_without_a_delta_object_is_a_bad_response(choices: list[Any]) -> None:
    with pytest.raises(UpstreamBadResponse):
        parse_chunk("giga", {"object": "chat.completion", "choices": choices})


def test_parse_stream_chunks() -> None:
    first = {"choices": [{"delta": {"content": "$1, 2$", "role": "assistant"}, "index": 0}],
             "created": 1, "model": "GigaChat:2.0.28.2", "object": "chat.completion"}
    last = {"choices": [{"delta": {"content": ""}, "index": 0, "finish_reason": "stop"}],
            "object": "chat.completion",
            "usage": {"prompt_tokens": 17, "completion_tokens": 10, "total_tokens": 27}}
    assert parse_chunk("giga", first) == ([Delta(role="assistant", content="$1, 2$")], None)
    assert parse_chunk("giga", last) == ([Delta(content="", finish_reason="stop")],
                                          TokenCounts(17, 10))


def test_parse_a_streamed_function_call() -> None:
    chunk = {"choices": [{"delta": {"content": "", "role": "assistant",
                                    "function_call": {"name": "get_weather",
                                                      "arguments": {"city": "Moscow"}}},
                          "index": 0, "finish_reason": "function_call"}],
             "object": "chat.completion"}
    (delta,), usage = parse_chunk("giga", chunk)
    (call,) = delta.tool_calls
    assert (delta.content, delta.finish_reason, usage) == (None, "tool_calls", None)
    assert (call.name, call.arguments) == ("get_weather", '{"city":"Moscow"}')
    assert CALL_ID.fullmatch(call.id)


def test_built_in_function_progress_is_not_answer_text() -> None:
    chunk = {"choices": [{"delta": {"content": "осталось 5 секунд", "role": "function_in_progress"},
                          "index": 0}], "object": "chat.completion"}
    assert parse_chunk("giga", chunk) == ([], None)


def test_an_error_body_inside_a_stream_raises() -> None:
    with pytest.raises(UpstreamServerError, match="Internal Server Error") as err:
        parse_chunk("giga", {"status": 500, "message": "Internal Server Error"})
    assert err.value.metadata["raw"] == {"status": 500, "message": "Internal Server Error"}


def test_parse_embeddings_orders_by_index_and_sums_usage() -> None:
    data = {"object": "list", "model": "Embeddings", "data": [
        {"object": "embedding", "embedding": [3, 4.5], "index": 1, "usage": {"prompt_tokens": 4}},
        {"object": "embedding", "embedding": [1, 2.5], "index": 0, "usage": {"prompt_tokens": 6}},
    ]}
    embeddings = parse_embeddings("giga", data, 2)
    assert embeddings.vectors == ((1.0, 2.5), (3.0, 4.5))
    assert embeddings.usage == TokenCounts(prompt=10)


def test_embeddings_of_the_wrong_count_are_a_bad_response() -> None:
    with pytest.raises(UpstreamBadResponse):
        parse_embeddings("giga", {"object": "list", "data": []}, 1)


def test_parse_token_reads_expires_at_in_milliseconds_and_in_seconds() -> None:
    assert parse_token("giga", {"access_token": "t", "expires_at": 4102444800000}) == (
        "t", 4102444800.0)
    assert parse_token("giga", {"access_token": "t", "expires_at": 1679471442}) == (
        "t", 1679471442.0)


@pytest.mark.parametrize("data", [{"access_token": "secret-token"}, {"expires_at": 1},
                                  {"access_token": "secret-token", "expires_at": "soon"}, []])
def test_a_token_body_without_its_fields_is_a_bad_response_that_never_shows_it(data: Any) -> None:
    with pytest.raises(UpstreamBadResponse) as err:
        parse_token("giga", data)
    assert "secret-token" not in str(err.value) and "raw" not in err.value.metadata


# ---- errors ------------------------------------------------------------------------------

@pytest.mark.parametrize(("status", "message", "cls"), [
    (401, "Unauthorized", UpstreamAuthError),
    (404, "No such model", UpstreamUnavailable),
    (422, "Invalid params: repetition_penalty must be in range (0, +inf)", UpstreamRejected),
    (429, "Too many requests", UpstreamRateLimited),
    (500, "Internal Server Error", UpstreamServerError),
])
def test_api_error_bodies(status: int, message: str, cls: type[Exception]) -> None:
    body = orjson.dumps({"status": status, "message": message})
    err = api_error("giga", status, body, None)
    assert type(err) is cls
    assert err.message == f"giga answered HTTP {status}: {message}"
    assert err.status == status
    assert err.metadata["raw"] == {"status": status, "message": message}


def test_an_error_body_that_is_not_json_keeps_the_status_only() -> None:
    err = api_error("giga", 502, b"<html>bad gateway</html>", "3")
    assert (type(err), err.message, err.retry_after) == (UpstreamServerError,
                                                         "giga answered HTTP 502", 3.0)


@pytest.mark.parametrize(("status", "body", "cls"), [
    (401, {"code": 6, "message": "credentials doesn't match db data"}, UpstreamAuthError),
    (400, {"code": 7, "message": "scope from db not fully includes consumed scope"},
     UpstreamAuthError),
    (429, {"code": 0, "message": "Too many requests"}, UpstreamRateLimited),
    (503, {"code": 0, "message": "Service unavailable"}, UpstreamServerError),
])
def test_token_endpoint_errors(status: int, body: dict[str, Any], cls: type[Exception]) -> None:
    err = token_error("giga", status, orjson.dumps(body), None)
    assert type(err) is cls
    assert err.message == f"giga token endpoint answered HTTP {status}: {body['message']}"
    assert err.metadata["raw"] == body


# ---- configuration -----------------------------------------------------------------------

def _config(api_key: str = "a2V5", **options: Any) -> ProviderConfig:
    return ProviderConfig("giga", "gigachat", "", api_key, options=options)


@pytest.mark.parametrize(("config", "error"), [
    (_config(api_key=""), "authorization key"),
    (_config(scope="GIGACHAT_API_TEAM"), "scope must be one of"),
    (_config(auth_url="ngw.devices.sberbank.ru"), "auth_url must be an http"),
    (_config(update_interval=-1), "update_interval"),
    (_config(verify_ssl="no"), "verify_ssl has the wrong type"),
    (_config(ca_bundle="/ca.pem", verify_ssl=False), "contradict"),
    (_config(ca_bundle="/nonexistent/russian_trusted_root_ca.pem"), "cannot load"),
])
def test_bad_options_are_config_errors(config: ProviderConfig, error: str) -> None:
    with pytest.raises(ConfigError, match=error) as err:
        build(config, None)  # type: ignore[arg-type]
    assert "a2V5" not in str(err.value)
