"""The YandexGPT adapter against its fake upstream, for what the shared scenario suite does not
cover: cumulative stream text turned into deltas (Cyrillic cut between reads), one batch per
read, final statuses, in-stream errors, completion options, Api-Key vs IAM auth, modelUri forms,
embeddings; and Yandex's OpenAI-compatible endpoint reached through the generic openai adapter."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from typing import Any

import pytest

from tests.fakes.openai_upstream import API_KEY as OPENAI_KEY
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.yandexgpt_upstream import (
    API_KEY,
    CYRILLIC,
    FOLDER,
    IAM_TOKEN,
    FakeYandexGPT,
    embedding_of,
)
from xrouter_common.env import ConfigError
from xrouter_router.domain.catalog import Deployment, Price
from xrouter_router.domain.errors import (
    UpstreamAuthError,
    UpstreamRateLimited,
    UpstreamRejected,
)
from xrouter_router.domain.ports import ChatProvider
from xrouter_router.domain.types import (
    ChatRequest,
    Delta,
    EmbeddingRequest,
    Message,
    ProviderPreferences,
    Sampling,
    StreamBatch,
    TokenCounts,
    ToolCall,
)
from xrouter_router.providers import openai, yandexgpt
from xrouter_router.providers.config import ProviderConfig
from xrouter_router.providers.http import new_session
from xrouter_router.providers.http1 import HttpClient
from xrouter_router.providers.yandexgpt import YandexGPTProvider, build_native


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeYandexGPT]:
    server = FakeYandexGPT().start()
    yield server
    server.stop()


@pytest.fixture
async def session() -> AsyncIterator[HttpClient]:
    s = new_session(connect_timeout=2.0, pool_size=8)
    yield s
    await s.close()


def _provider(fake: FakeYandexGPT, session: HttpClient, *, api_key: str = API_KEY,
              **options: Any) -> YandexGPTProvider:
    config = ProviderConfig("yandex", "yandexgpt", fake.base_url, api_key,
                            options={"folder_id": FOLDER, **options})
    return build_native(config, session)


def _deployment(upstream_model: str) -> Deployment:
    return Deployment(f"{upstream_model}@yandex", "yandex", upstream_model,
                      Price(Decimal(1), Decimal(2)), 8192, 1024, frozenset({"streaming"}))


def _request(text: str = "hello there", **kw: Any) -> ChatRequest:
    return ChatRequest("gen-ya", "m", (Message(role="user", content=text),), **kw)


async def _collect(stream: AsyncIterator[StreamBatch]) -> list[StreamBatch]:
    return [batch async for batch in stream]


# ---- cumulative stream -------------------------------------------------------------------

async def test_cumulative_cyrillic_stream_becomes_deltas(fake: FakeYandexGPT,
                                                         session: HttpClient) -> None:
    batches = await _collect(_provider(fake, session).stream(
        _request(), _deployment("yandexgpt-cyrillic:latest")))
    deltas = [d for b in batches for d in b.deltas]
    assert [d.content for d in deltas] == ["Привет", ", мир!", " Всё хорошо.", " Ёж 🦔"]
    assert "".join(d.content or "" for d in deltas) == CYRILLIC[-1]
    assert [d.role for d in deltas] == ["assistant", "", "", ""]
    assert [d.finish_reason for d in deltas] == ["", "", "", "stop"]
    assert [b.usage for b in batches][:-1] == [None, None, None]
    assert batches[-1].usage is not None and batches[-1].usage.completion == 4
    assert [b.done for b in batches] == [False, False, False, True]


async def test_whole_cyrillic_answer(fake: FakeYandexGPT, session: HttpClient) -> None:
    completion = await _provider(fake, session).chat(_request(),
                                                     _deployment("yandexgpt-cyrillic:latest"))
    assert completion.message.content == CYRILLIC[-1]
    assert completion.usage is not None and completion.usage.completion == 4


async def test_lines_buffered_together_are_one_batch(fake: FakeYandexGPT,
                                                     session: HttpClient) -> None:
    batches = await _collect(_provider(fake, session).stream(
        _request(), _deployment("yandexgpt-burst:latest")))
    (batch,) = batches
    assert batch.deltas == (Delta(role="assistant", content="echo: hello there",
                                  finish_reason="stop"),)
    assert batch.done is True and batch.usage is not None and batch.usage.completion == 3


async def test_a_final_line_without_its_newline_still_completes(
        fake: FakeYandexGPT, session: HttpClient) -> None:
    batches = await _collect(_provider(fake, session).stream(
        _request(), _deployment("yandexgpt-unterminated:latest")))
    assert "".join(d.content or "" for b in batches for d in b.deltas) == "echo: hello there"
    assert batches[-1].done is True and batches[-1].deltas[-1].finish_reason == "stop"


@pytest.mark.parametrize(("scenario", "finish"), [("length", "length"),
                                                  ("filter", "content_filter")])
async def test_final_statuses(fake: FakeYandexGPT, session: HttpClient,
                              scenario: str, finish: str) -> None:
    provider = _provider(fake, session)
    deployment = _deployment(f"yandexgpt-{scenario}:latest")
    completion = await provider.chat(_request(), deployment)
    assert (completion.message.content, completion.finish_reason) == ("echo: hello there", finish)
    batches = await _collect(provider.stream(_request(), deployment))
    assert [d.finish_reason for b in batches for d in b.deltas if d.finish_reason] == [finish]
    assert "".join(d.content or "" for b in batches for d in b.deltas) == "echo: hello there"


async def test_an_error_object_mid_stream(fake: FakeYandexGPT,
                                          session: HttpClient) -> None:
    got: list[StreamBatch] = []
    with pytest.raises(UpstreamRateLimited) as limited:
        async for batch in _provider(fake, session).stream(
                _request(), _deployment("yandexgpt-midstream-429:latest")):
            got.append(batch)
    assert got[0].deltas[0].content == "echo:"
    assert limited.value.message == "yandex answered HTTP 429: quota exceeded"


# ---- request options, auth, modelUri -----------------------------------------------------

async def test_temperature_is_clamped_and_max_tokens_sent_as_a_string(
        fake: FakeYandexGPT, session: HttpClient) -> None:
    request = _request(sampling=Sampling(temperature=1.7, max_tokens=100, top_p=0.5))
    completion = await _provider(fake, session).chat(request, _deployment("yandexgpt-echo:latest"))
    assert completion.message.content == "echo: hello there"
    assert fake.requests[-1]["completionOptions"] == {"stream": False, "temperature": 1.0,
                                                      "maxTokens": "100"}
    await _collect(_provider(fake, session).stream(request, _deployment("yandexgpt-echo:latest")))
    assert fake.requests[-1]["completionOptions"] == {"stream": True, "temperature": 1.0,
                                                      "maxTokens": "100"}


@pytest.mark.parametrize(("options", "key", "header"), [
    ({}, API_KEY, f"Api-Key {API_KEY}"),
    ({"auth": "api-key"}, API_KEY, f"Api-Key {API_KEY}"),
    ({"auth": "iam"}, IAM_TOKEN, f"Bearer {IAM_TOKEN}"),
])
async def test_api_key_and_iam_auth(fake: FakeYandexGPT, session: HttpClient,
                                    options: dict[str, str], key: str, header: str) -> None:
    provider = _provider(fake, session, api_key=key, **options)
    completion = await provider.chat(_request(), _deployment("yandexgpt-echo:latest"))
    assert completion.message.content == "echo: hello there"
    assert fake.headers[-1]["Authorization"] == header
    assert fake.headers[-1]["x-folder-id"] == FOLDER


async def test_an_api_key_sent_as_an_iam_token_is_refused(fake: FakeYandexGPT,
                                                          session: HttpClient) -> None:
    with pytest.raises(UpstreamAuthError) as refused:
        await _provider(fake, session, auth="iam").chat(_request(),
                                                        _deployment("yandexgpt-echo:latest"))
    assert refused.value.message == "yandex answered HTTP 401: The token is invalid"


async def test_a_refused_key_quoted_back_is_scrubbed(fake: FakeYandexGPT,
                                                     session: HttpClient) -> None:
    with pytest.raises(UpstreamAuthError) as refused:
        await _provider(fake, session, api_key="AQVN-leaky").chat(
            _request(), _deployment("yandexgpt-echo:latest"))
    assert refused.value.message == "yandex answered HTTP 401: Unknown api key '***'"
    assert "AQVN-leaky" not in json.dumps(refused.value.metadata)


async def test_a_folder_the_key_does_not_belong_to_is_rejected(
        fake: FakeYandexGPT, session: HttpClient) -> None:
    with pytest.raises(UpstreamRejected) as rejected:
        await _provider(fake, session, folder_id="b1gother").chat(
            _request(), _deployment("yandexgpt-echo:latest"))
    assert rejected.value.status == 400


@pytest.mark.parametrize(("upstream", "uri"), [
    ("yandexgpt-echo:latest", f"gpt://{FOLDER}/yandexgpt-echo/latest"),
    ("yandexgpt-echo:rc", f"gpt://{FOLDER}/yandexgpt-echo/rc"),
    ("yandexgpt-echo:deprecated", f"gpt://{FOLDER}/yandexgpt-echo/deprecated"),
    ("yandexgpt-echo/latest", f"gpt://{FOLDER}/yandexgpt-echo/latest"),
    ("yandexgpt-echo", f"gpt://{FOLDER}/yandexgpt-echo/latest"),
    (f"gpt://{FOLDER}/yandexgpt-echo/rc", f"gpt://{FOLDER}/yandexgpt-echo/rc"),
])
async def test_model_uri_forms(fake: FakeYandexGPT, session: HttpClient,
                               upstream: str, uri: str) -> None:
    completion = await _provider(fake, session).chat(_request(), _deployment(upstream))
    assert completion.message.content == "echo: hello there"
    assert fake.model_uris[-1] == uri


async def test_a_tool_result_without_a_function_name_is_rejected_upstream(
        fake: FakeYandexGPT, session: HttpClient) -> None:
    messages = (Message(role="user", content="weather?"),
                Message(role="tool", content="8°C", tool_call_id="call_unknown"))
    with pytest.raises(UpstreamRejected) as rejected:
        await _provider(fake, session).chat(ChatRequest("gen-ya", "m", messages),
                                            _deployment("yandexgpt-echo:latest"))
    assert rejected.value.message == (
        "yandex answered HTTP 400: functionResult must have a name and a string content")


async def test_a_tool_round_trip_is_sent_in_yandex_form(fake: FakeYandexGPT,
                                                        session: HttpClient) -> None:
    call = ToolCall(0, "call_1", "weatherTool", '{"city": "Москва"}')
    messages = (Message(role="user", content="weather?"),
                Message(role="assistant", tool_calls=(call,)),
                Message(role="tool", content="8°C", tool_call_id="call_1"),
                Message(role="user", content="спасибо"))
    reply = await _provider(fake, session).chat(ChatRequest("gen-ya", "m", messages),
                                                _deployment("yandexgpt-echo:latest"))
    assert reply.message.content == "echo: спасибо"
    assert fake.requests[-1]["messages"][1:3] == [
        {"role": "assistant", "toolCallList": {"toolCalls": [
            {"functionCall": {"name": "weatherTool", "arguments": {"city": "Москва"}}}]}},
        {"role": "user", "toolResultList": {"toolResults": [
            {"functionResult": {"name": "weatherTool", "content": "8°C"}}]}},
    ]


# ---- embeddings ----------------------------------------------------------------------------

TEXTS = ("Пушкин родился в Москве", "Ромашка — род цветковых растений", "когда день рождения?")


async def test_embeddings_for_three_inputs_in_order(fake: FakeYandexGPT,
                                                    session: HttpClient) -> None:
    fake.max_embeddings_in_flight = 0
    result = await _provider(fake, session).embed(EmbeddingRequest("m", TEXTS),
                                                  _deployment("text-search-doc"))
    assert result.vectors == tuple(tuple(embedding_of(t)) for t in TEXTS)
    assert result.usage == TokenCounts(prompt=sum(len(t.split()) + 1 for t in TEXTS))
    assert fake.model_uris[-3:] == [f"emb://{FOLDER}/text-search-doc/latest"] * 3
    assert sorted(fake.embedded[-3:]) == sorted(TEXTS)
    assert fake.max_embeddings_in_flight == 3  # one call per text, all at once


async def test_embedding_concurrency_is_bounded(fake: FakeYandexGPT,
                                                session: HttpClient) -> None:
    fake.max_embeddings_in_flight = 0
    provider = _provider(fake, session, embedding_concurrency=1)
    result = await provider.embed(EmbeddingRequest("m", TEXTS), _deployment("text-search-query"))
    assert result.vectors == tuple(tuple(embedding_of(t)) for t in TEXTS)
    assert fake.embedded[-3:] == list(TEXTS)
    assert fake.max_embeddings_in_flight == 1


async def test_an_embedding_error_maps_to_the_error_tree(fake: FakeYandexGPT,
                                                         session: HttpClient) -> None:
    with pytest.raises(UpstreamRateLimited) as limited:
        await _provider(fake, session).embed(EmbeddingRequest("m", TEXTS),
                                             _deployment("text-search-429"))
    assert limited.value.status == 429


# ---- the OpenAI-compatible endpoint through the generic openai adapter -------------------

async def test_openai_compatible_route_sends_the_folder_as_openai_project(
        session: HttpClient) -> None:
    upstream = FakeOpenAI().start()
    try:
        config = ProviderConfig("yandex-openai", "openai", upstream.base_url, OPENAI_KEY,
                                headers={"OpenAI-Project": "b1gfolder"})
        provider = openai.build(config, session)
        completion = await provider.chat(_request(), _deployment("gpt://b1gfolder/yandexgpt/latest"))
    finally:
        upstream.stop()
    assert completion.message.content == "echo: hello there"
    assert upstream.headers[-1]["OpenAI-Project"] == "b1gfolder"
    assert upstream.requests[-1]["model"] == "gpt://b1gfolder/yandexgpt/latest"


# ---- reasoning, data logging, the OpenAI-compatible endpoint as a deployment option --------

DENY = ProviderPreferences(data_collection="deny")


def _reasoning_deployment(upstream_model: str) -> Deployment:
    return Deployment(f"{upstream_model}@yandex", "yandex", upstream_model,
                      Price(Decimal(1), Decimal(2)), 8192, 1024, frozenset({"streaming"}),
                      parameters=frozenset({"max_tokens", "temperature", "reasoning"}))


@pytest.mark.parametrize(("reasoning", "mode", "tokens"), [
    (b'{"reasoning":{"effort":"high"}}', "ENABLED_HIDDEN", 5),
    (b'{"reasoning":{"effort":"none"}}', "DISABLED", 0)])
async def test_reasoning_becomes_reasoning_options_where_the_model_has_it(
        fake: FakeYandexGPT, session: HttpClient, reasoning: bytes, mode: str,
        tokens: int) -> None:
    provider = _provider(fake, session)
    whole = await provider.chat(_request(extra_json=reasoning), _reasoning_deployment("yandexgpt"))
    assert fake.requests[-1]["reasoningOptions"] == {"mode": mode}
    assert whole.usage is not None and whole.usage.reasoning == tokens
    await provider.chat(_request(extra_json=reasoning), _deployment("yandexgpt-lite"))
    assert "reasoningOptions" not in fake.requests[-1]


async def test_data_collection_deny_turns_yandex_logging_off(
        fake: FakeYandexGPT, session: HttpClient) -> None:
    provider = _provider(fake, session)
    await provider.chat(_request(), _deployment("yandexgpt"))
    assert "x-data-logging-enabled" not in fake.headers[-1]
    await provider.chat(_request(provider=DENY), _deployment("yandexgpt"))
    assert fake.headers[-1]["x-data-logging-enabled"] == "false"
    await _collect(provider.stream(_request(provider=DENY), _deployment("yandexgpt")))
    assert fake.headers[-1]["x-data-logging-enabled"] == "false"


def _openai_api(fake: FakeYandexGPT, session: HttpClient,
                **options: Any) -> ChatProvider:
    config = ProviderConfig("yandex", "yandexgpt", fake.base_url, API_KEY,
                            options={"folder_id": FOLDER, "api": "openai", **options})
    return yandexgpt.build(config, session)


async def test_the_openai_compatible_api_option(fake: FakeYandexGPT,
                                                session: HttpClient) -> None:
    provider = _openai_api(fake, session)
    whole = await provider.chat(_request(extra_json=b'{"reasoning":{"effort":"low"}}'),
                                _deployment("yandexgpt:rc"))
    assert (whole.message.content, whole.usage) == ("echo: hello there",
                                                    TokenCounts(prompt=7, completion=3))
    sent = fake.requests[-1]
    assert (sent["model"], sent["reasoning_effort"]) == (f"gpt://{FOLDER}/yandexgpt/rc", "low")
    assert fake.headers[-1]["OpenAI-Project"] == FOLDER
    assert fake.headers[-1]["Authorization"] == f"Api-Key {API_KEY}"
    assert "x-data-logging-enabled" not in fake.headers[-1]
    batches = await _collect(provider.stream(_request(provider=DENY), _deployment("yandexgpt")))
    assert "".join(d.content or "" for b in batches for d in b.deltas) == "echo: hello there"
    assert fake.headers[-1]["x-data-logging-enabled"] == "false"


def test_the_api_option_is_checked() -> None:
    with pytest.raises(ConfigError, match=r"providers\.yandex\.api"):
        yandexgpt.build(ProviderConfig("yandex", "yandexgpt", options={
            "folder_id": FOLDER, "api": "grpc"}), None)  # type: ignore[arg-type]
