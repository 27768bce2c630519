"""The YandexGPT adapter's pure parts: modelUri, request bodies, parsing responses, cumulative
stream messages, error bodies, embeddings and configuration (no network)."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import orjson
import pytest

from tests.unit.builders import deployment, request
from xrouter_common.env import ConfigError
from xrouter_router.domain.errors import (
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
    StreamBatch,
    TokenCounts,
    Tool,
    ToolCall,
)
from xrouter_router.providers.config import ProviderConfig
from xrouter_router.providers.yandexgpt import (
    CumulativeStream,
    YandexGPTProvider,
    build,
    build_native,
    error_from_body,
    messages_json,
    model_uri,
    parse_completion,
    parse_embedding,
    parse_usage,
)

FOLDER = "b1gfolder"
DEP = replace(deployment("m", "ya"), upstream_model="yandexgpt-lite:latest")
CALL_ID = re.compile(r"call_[0-9a-f]{24}")
WEATHER = Tool("get_weather", "Current weather", b'{"type":"object","properties":{}}')


def _provider(api_key: str = "AQVN-secret") -> YandexGPTProvider:
    return YandexGPTProvider("ya", base_url="https://llm.example/", folder_id=FOLDER,
                             api_key=api_key, session=None)  # type: ignore[arg-type]


def _body(stream: bool = False, **kwargs: Any) -> dict[str, Any]:
    return orjson.loads(_provider().body(request("m", **kwargs), DEP, stream=stream))  # type: ignore[no-any-return]


def _line(text: str | None = None, status: str = "ALTERNATIVE_STATUS_PARTIAL",
          usage: dict[str, Any] | None = None, calls: list[dict[str, Any]] | None = None) -> bytes:
    message: dict[str, Any] = {"role": "assistant"}
    if text is not None:
        message["text"] = text
    if calls is not None:
        message["toolCallList"] = {"toolCalls": calls}
    result: dict[str, Any] = {"alternatives": [{"message": message, "status": status}]}
    if usage is not None:
        result["usage"] = usage
    result["modelVersion"] = "23.10.2024"
    return orjson.dumps({"result": result})


USAGE = {"inputTextTokens": "67", "completionTokens": "50", "totalTokens": "117"}
WEATHER_CALL = {"functionCall": {"name": "weatherTool", "arguments": {"city": "Санкт-Петербург"}}}


# ---- modelUri ------------------------------------------------------------------------------

@pytest.mark.parametrize(("upstream", "uri"), [
    ("yandexgpt-lite:latest", "gpt://b1gfolder/yandexgpt-lite/latest"),
    ("yandexgpt:rc", "gpt://b1gfolder/yandexgpt/rc"),
    ("yandexgpt-32k:deprecated", "gpt://b1gfolder/yandexgpt-32k/deprecated"),
    ("yandexgpt/latest", "gpt://b1gfolder/yandexgpt/latest"),
    ("yandexgpt-lite/rc", "gpt://b1gfolder/yandexgpt-lite/rc"),
    ("yandexgpt", "gpt://b1gfolder/yandexgpt/latest"),
    ("gpt://b1gother/yandexgpt/rc", "gpt://b1gother/yandexgpt/rc"),
    ("ds://b1gfolder/bt1tuned", "ds://b1gfolder/bt1tuned"),
])
def test_model_uri_forms(upstream: str, uri: str) -> None:
    assert model_uri("gpt", FOLDER, upstream) == uri


def test_embedding_model_uri() -> None:
    assert model_uri("emb", FOLDER, "text-search-doc") == "emb://b1gfolder/text-search-doc/latest"
    assert model_uri("emb", FOLDER, "text-search-query:latest") == \
        "emb://b1gfolder/text-search-query/latest"


# ---- request body --------------------------------------------------------------------------

def test_minimal_body() -> None:
    assert _provider().body(request("m"), DEP, stream=False) == (
        b'{"modelUri":"gpt://b1gfolder/yandexgpt-lite/latest","completionOptions":{"stream":false},'
        b'"messages":[{"role":"user","text":"hello"}]}')


def test_stream_flag() -> None:
    assert _body(stream=True)["completionOptions"] == {"stream": True}


@pytest.mark.parametrize(("given", "sent"), [(1.7, 1.0), (2.0, 1.0), (-0.5, 0.0), (0.6, 0.6),
                                             (0.0, 0.0), (1.0, 1.0)])
def test_temperature_is_clamped_to_0_1(given: float, sent: float) -> None:
    body = _body(sampling=Sampling(temperature=given))
    assert body["completionOptions"] == {"stream": False, "temperature": sent}


def test_max_tokens_is_a_string_and_unsupported_sampling_is_dropped() -> None:
    sampling = Sampling(max_tokens=2000, top_p=0.9, top_k=5, frequency_penalty=0.1,
                        presence_penalty=0.2, repetition_penalty=1.1, seed=7, stop=("\n",))
    body = _body(sampling=sampling, tool_choice_json=b'"auto"', extra_json=b'{"foo":1}', user="u")
    assert body == {"modelUri": "gpt://b1gfolder/yandexgpt-lite/latest",
                    "completionOptions": {"stream": False, "maxTokens": "2000"},
                    "messages": [{"role": "user", "text": "hello"}]}


def test_tools_are_function_definitions() -> None:
    bare = Tool("now")
    assert _body(tools=(WEATHER, bare))["tools"] == [
        {"function": {"name": "get_weather", "description": "Current weather",
                      "parameters": {"type": "object", "properties": {}}}},
        {"function": {"name": "now"}},
    ]


def test_messages_text_roles_and_content_parts() -> None:
    messages = (
        Message(role="developer", content="Be brief."),
        Message(role="system", content="Ты умный ассистент"),
        Message(role="user", parts=(ContentPart(type="text", text="Что "),
                                    ContentPart(type="image_url", image_url="https://x/a.png"),
                                    ContentPart(type="text", text="на картинке?"))),
        Message(role="assistant", content="Кошка."),
    )
    assert messages_json(messages) == [
        {"role": "system", "text": "Be brief."},
        {"role": "system", "text": "Ты умный ассистент"},
        {"role": "user", "text": "Что на картинке?"},
        {"role": "assistant", "text": "Кошка."},
    ]


def test_tool_calls_and_grouped_tool_results() -> None:
    calls = (ToolCall(0, "call_a", "get_weather", '{"city": "Москва"}'),
             ToolCall(1, "call_b", "now", ""))
    messages = (
        Message(role="user", content="weather?"),
        Message(role="assistant", content=None, tool_calls=calls),
        Message(role="tool", content='{"temperature": -3}', tool_call_id="call_a", name="get_weather"),
        Message(role="tool", content="12:00", tool_call_id="call_b"),  # name found by call id
        Message(role="user", content="thanks"),
    )
    assert messages_json(messages) == [
        {"role": "user", "text": "weather?"},
        {"role": "assistant", "toolCallList": {"toolCalls": [
            {"functionCall": {"name": "get_weather", "arguments": {"city": "Москва"}}},
            {"functionCall": {"name": "now", "arguments": {}}},
        ]}},
        {"role": "user", "toolResultList": {"toolResults": [
            {"functionResult": {"name": "get_weather", "content": '{"temperature": -3}'}},
            {"functionResult": {"name": "now", "content": "12:00"}},
        ]}},
        {"role": "user", "text": "thanks"},
    ]


def test_assistant_text_beside_tool_calls_becomes_its_own_message() -> None:
    msg = Message(role="assistant", content="Let me check.",
                  tool_calls=(ToolCall(0, "c", "now", "{}"),))
    assert messages_json((msg,)) == [
        {"role": "assistant", "text": "Let me check."},
        {"role": "assistant", "toolCallList": {"toolCalls": [
            {"functionCall": {"name": "now", "arguments": {}}}]}},
    ]


def _reject_arguments(arguments: str) -> UpstreamRejected:
    msg = Message(role="assistant", tool_calls=(ToolCall(0, "c", "now", arguments),))
    with pytest.raises(UpstreamRejected) as rejected:
        _provider().body(request("m", messages=(msg,)), DEP, stream=False)
    assert rejected.value.retryable is False
    return rejected.value


@pytest.mark.parametrize("arguments", ['["a"]', '"text"', "3"])
def test_tool_call_arguments_that_are_not_an_object_are_rejected(arguments: str) -> None:
    assert _reject_arguments(arguments).message == (
        "ya cannot send this request: tool call arguments must be a JSON object")


def test_tool_call_arguments_that_are_not_json_are_rejected() -> None:
    assert _reject_arguments("{not json").message.startswith("ya cannot send this request: ")


# ---- whole responses -----------------------------------------------------------------------

def test_parse_completion_of_the_spec_example() -> None:
    data = orjson.loads(_line("Ламинат подходит.", "ALTERNATIVE_STATUS_TRUNCATED_FINAL", USAGE))
    assert parse_completion("ya", data) == Completion(
        Message(role="assistant", content="Ламинат подходит."), "length",
        TokenCounts(prompt=67, completion=50))


@pytest.mark.parametrize(("status", "finish"), [
    ("ALTERNATIVE_STATUS_FINAL", "stop"),
    ("ALTERNATIVE_STATUS_TRUNCATED_FINAL", "length"),
    ("ALTERNATIVE_STATUS_CONTENT_FILTER", "content_filter"),
    ("ALTERNATIVE_STATUS_UNSPECIFIED", "stop"),
])
def test_statuses_map_to_finish_reasons(status: str, finish: str) -> None:
    assert parse_completion("ya", orjson.loads(_line("x", status))).finish_reason == finish


def test_parse_completion_with_tool_calls() -> None:
    usage = {**USAGE, "completionTokensDetails": {"reasoningTokens": "3"}}
    data = orjson.loads(_line(None, "ALTERNATIVE_STATUS_TOOL_CALLS", usage, [WEATHER_CALL]))
    completion = parse_completion("ya", data)
    assert completion.finish_reason == "tool_calls"
    assert completion.message.content is None
    (call,) = completion.message.tool_calls
    assert CALL_ID.fullmatch(call.id)
    assert (call.index, call.name) == (0, "weatherTool")
    assert orjson.loads(call.arguments) == {"city": "Санкт-Петербург"}
    assert completion.usage == TokenCounts(prompt=67, completion=50, reasoning=3)


def test_parse_completion_unwrapped_and_without_usage() -> None:
    data = orjson.loads(_line("hi", "ALTERNATIVE_STATUS_FINAL"))["result"]
    assert parse_completion("ya", data) == Completion(Message(role="assistant", content="hi"),
                                                      "stop", None)


@pytest.mark.parametrize("data", [{"result": {"alternatives": []}}, {"result": {}}, {"foo": 1}])
def test_a_response_without_alternatives_is_a_bad_response(data: dict[str, Any]) -> None:
    with pytest.raises(UpstreamBadResponse):
        parse_completion("ya", data)


def test_a_response_that_is_not_an_object_is_a_bad_response() -> None:
    with pytest.raises(UpstreamBadResponse):
        parse_completion("ya", [1, 2])


def test_parse_usage_counts_arrive_as_strings() -> None:
    assert parse_usage(USAGE) == TokenCounts(prompt=67, completion=50)
    assert parse_usage({}) == TokenCounts()


# ---- cumulative stream ---------------------------------------------------------------------

def test_cumulative_messages_become_deltas() -> None:
    state = CumulativeStream("ya")
    assert state.feed([_line("При"), _line("Привет")]) == StreamBatch(
        (Delta(role="assistant", content="Привет"),))
    assert state.feed([_line("Привет, мир")]) == StreamBatch((Delta(content=", мир"),))
    final = state.feed([_line("Привет, мир!", "ALTERNATIVE_STATUS_FINAL", USAGE)])
    assert final == StreamBatch((Delta(content="!", finish_reason="stop"),),
                                TokenCounts(prompt=67, completion=50), done=True)
    assert state.finished is True


def test_usage_of_partial_messages_is_not_reported() -> None:
    state = CumulativeStream("ya")
    assert state.feed([_line("a", usage=USAGE), b"", _line("ab", usage=USAGE)]) == StreamBatch(
        (Delta(role="assistant", content="ab"),))


def test_a_message_with_nothing_new_gives_an_empty_batch() -> None:
    state = CumulativeStream("ya")
    state.feed([_line("abc")])
    assert state.feed([_line("abc"), b"  "]) == StreamBatch()


def test_a_final_message_repeating_the_text_only_finishes() -> None:
    state = CumulativeStream("ya")
    state.feed([_line("abc")])
    assert state.feed([_line("abc", "ALTERNATIVE_STATUS_CONTENT_FILTER")]) == StreamBatch(
        (Delta(finish_reason="content_filter"),), done=True)


def test_a_revised_prefix_only_shows_past_what_was_sent() -> None:
    state = CumulativeStream("ya")
    state.feed([_line("Hello wrld")])
    assert state.feed([_line("Hello world!")]) == StreamBatch((Delta(content="d!"),))


def test_lines_after_the_final_one_are_ignored() -> None:
    state = CumulativeStream("ya")
    batch = state.feed([_line("a", "ALTERNATIVE_STATUS_TRUNCATED_FINAL"), _line("ab")])
    assert batch == StreamBatch((Delta(role="assistant", content="a", finish_reason="length"),),
                                done=True)


def test_streamed_tool_calls_are_sent_once_with_ids() -> None:
    state = CumulativeStream("ya")
    batch = state.feed([_line(None, "ALTERNATIVE_STATUS_TOOL_CALLS", USAGE, [WEATHER_CALL])])
    (delta,) = batch.deltas
    assert (delta.role, delta.content, delta.finish_reason) == ("assistant", None, "tool_calls")
    (call,) = delta.tool_calls
    assert CALL_ID.fullmatch(call.id) and call.name == "weatherTool"
    assert batch.done and batch.usage == TokenCounts(prompt=67, completion=50)


def test_a_call_list_repeated_in_later_messages_is_not_sent_again() -> None:
    state = CumulativeStream("ya")
    first = state.feed([_line(None, calls=[WEATHER_CALL])])
    again = state.feed([_line(None, "ALTERNATIVE_STATUS_TOOL_CALLS", calls=[WEATHER_CALL])])
    assert len(first.deltas[0].tool_calls) == 1
    assert again == StreamBatch((Delta(finish_reason="tool_calls"),), done=True)


def test_an_error_object_mid_stream_raises_by_its_http_code() -> None:
    error = {"error": {"grpcCode": 8, "httpCode": 429, "message": "quota exceeded",
                       "httpStatus": "Too Many Requests", "details": []}}
    with pytest.raises(UpstreamRateLimited) as limited:
        CumulativeStream("ya").feed([_line("a"), orjson.dumps(error)])
    assert limited.value.message == "ya answered HTTP 429: quota exceeded"
    assert limited.value.metadata["raw"] == error


def test_an_error_object_without_a_code_is_a_server_error() -> None:
    with pytest.raises(UpstreamServerError):
        CumulativeStream("ya").feed([b'{"error": "boom"}'])


# ---- errors --------------------------------------------------------------------------------

def test_grpc_gateway_error_body() -> None:
    body = {"error": {"grpcCode": 16, "httpCode": 401, "message": "Unknown api key",
                      "httpStatus": "Unauthorized", "details": []}}
    err = error_from_body("ya", 401, orjson.dumps(body), None)
    assert isinstance(err, UpstreamAuthError)
    assert (err.message, err.status, err.metadata["raw"]) == (
        "ya answered HTTP 401: Unknown api key", 401, body)


def test_unary_error_body_and_retry_after() -> None:
    body = {"code": 8, "message": "quota exceeded", "details": []}
    err = error_from_body("ya", 429, orjson.dumps(body), "3")
    assert isinstance(err, UpstreamRateLimited)
    assert (err.message, err.retry_after) == ("ya answered HTTP 429: quota exceeded", 3.0)


def test_an_error_body_that_is_not_json() -> None:
    err = error_from_body("ya", 502, b"<html>bad gateway</html>", None)
    assert isinstance(err, UpstreamServerError)
    assert (err.message, err.metadata["raw"]) == ("ya answered HTTP 502", "<html>bad gateway</html>")


def test_the_credential_is_scrubbed_from_error_bodies() -> None:
    body = orjson.dumps({"error": {"httpCode": 401, "message": "Unknown api key 'AQVN-secret'"}})
    err = _provider()._error(401, body, None)
    assert "AQVN-secret" not in err.message and "AQVN-secret" not in str(err.metadata)
    assert err.message == "ya answered HTTP 401: Unknown api key '***'"


# ---- embeddings ----------------------------------------------------------------------------

def test_parse_embedding() -> None:
    data = {"embedding": [0.5, -1, "0.25"], "numTokens": "6", "modelVersion": "06.12.2023"}
    assert parse_embedding("ya", data) == ((0.5, -1.0, 0.25), 6)
    assert parse_embedding("ya", {"embedding": []}) == ((), None)


@pytest.mark.parametrize("data", [{"numTokens": "6"}, {"embedding": "x"}, [0.1]])
def test_an_embedding_response_without_a_vector_is_a_bad_response(data: Any) -> None:
    with pytest.raises(UpstreamBadResponse):
        parse_embedding("ya", data)


# ---- configuration -------------------------------------------------------------------------

def _config(**options: Any) -> ProviderConfig:
    return ProviderConfig("yandex", "yandexgpt", api_key="AQVN-key",
                          headers={"x-data-logging-enabled": "false"}, options=options)


def test_folder_id_is_required() -> None:
    with pytest.raises(ConfigError, match=r"providers\.yandex\.folder_id"):
        build(_config(), None)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"providers\.yandex\.folder_id"):
        build(_config(folder_id=""), None)  # type: ignore[arg-type]


@pytest.mark.parametrize("options", [{"auth": "oauth"}, {"auth": 1}, {"embedding_concurrency": 0}])
def test_bad_options_are_config_errors(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match=r"providers\.yandex\."):
        build(_config(folder_id=FOLDER, **options), None)  # type: ignore[arg-type]


@pytest.mark.parametrize(("auth", "header"), [({}, "Api-Key AQVN-key"),
                                              ({"auth": "api-key"}, "Api-Key AQVN-key"),
                                              ({"auth": "iam"}, "Bearer AQVN-key")])
def test_build_headers_and_default_url(auth: dict[str, str], header: str) -> None:
    provider = build_native(_config(folder_id=FOLDER, **auth), None)  # type: ignore[arg-type]
    assert provider.name == "yandex"
    assert provider._headers == {"Content-Type": "application/json", "x-folder-id": FOLDER,
                                 "x-data-logging-enabled": "false", "Authorization": header}
    assert provider._completion_url == "https://llm.api.cloud.yandex.net/foundationModels/v1/completion"
    assert provider._embedding_url == \
        "https://llm.api.cloud.yandex.net/foundationModels/v1/textEmbedding"
