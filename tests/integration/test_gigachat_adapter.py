"""The GigaChat adapter against its fake, for what the shared scenario suite does not cover: the
OAuth token (one fetch shared by concurrent requests, refresh before expiry, one retry after a
401), function calls as GigaChat writes them, embeddings, and TLS with a private CA bundle."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import shutil
import ssl
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.gigachat_upstream import AUTH_KEY, WRONG_KEY, FakeGigaChat
from tests.fakes.harness import TOOL_ARGUMENTS
from xrouter_common.env import ConfigError
from xrouter_router.domain.catalog import Deployment, Price
from xrouter_router.domain.errors import (
    UpstreamAuthError,
    UpstreamConnectError,
    UpstreamUnavailable,
)
from xrouter_router.domain.types import ChatRequest, EmbeddingRequest, Message, Tool
from xrouter_router.providers.config import ProviderConfig
from xrouter_router.providers.gigachat import GigaChatProvider, build
from xrouter_router.providers.http import new_session
from xrouter_router.providers.http1 import HttpClient

WEATHER = Tool("get_weather", "Current weather in a city",
               b'{"type":"object","properties":{"city":{"type":"string"},'
               b'"unit":{"type":"string"}},"required":["city"]}')
WEATHER_PARAMETERS = {"type": "object", "properties": {"city": {"type": "string"},
                                                       "unit": {"type": "string"}},
                      "required": ["city"]}


@pytest.fixture
def fake() -> Iterator[FakeGigaChat]:
    upstream = FakeGigaChat(token_delay=0.05).start()
    yield upstream
    upstream.stop()


@pytest.fixture
async def session() -> AsyncIterator[HttpClient]:
    s = new_session(connect_timeout=2.0, pool_size=32)
    yield s
    await s.close()


@pytest.fixture
async def provider(fake: FakeGigaChat,
                   session: HttpClient) -> AsyncIterator[GigaChatProvider]:
    p = _build(fake, session)
    yield p
    await p.close()


def _build(fake: FakeGigaChat, session: HttpClient, key: str = AUTH_KEY,
           **options: Any) -> GigaChatProvider:
    config = ProviderConfig("giga", "gigachat", fake.base_url, key,
                            options={"auth_url": fake.auth_url, **options})
    return build(config, session)


def _deployment(upstream_model: str = "GigaChat") -> Deployment:
    return Deployment(f"{upstream_model}@giga", "giga", upstream_model,
                      Price(Decimal(1), Decimal(2)), 32000, 1024,
                      frozenset({"streaming", "tools", "embeddings"}))


def _request(text: str = "hello", **kw: Any) -> ChatRequest:
    return ChatRequest("gen-1", "m", (Message("system", "Be brief."), Message("user", text)), **kw)


# ---- the token ---------------------------------------------------------------------------

async def test_concurrent_requests_share_one_token(fake: FakeGigaChat,
                                                   provider: GigaChatProvider) -> None:
    answers = await asyncio.gather(*(provider.chat(_request(f"n{i}"), _deployment())
                                     for i in range(20)))
    assert sorted(a.message.content or "" for a in answers) == sorted(f"echo: n{i}"
                                                                     for i in range(20))
    assert fake.issued == 1
    assert len(fake.token_requests) == 1
    assert len(set(fake.bearer_tokens())) == 1 and len(fake.bearer_tokens()) == 20


async def test_the_token_request_is_gigachats_oauth_call(fake: FakeGigaChat,
                                                         session: HttpClient) -> None:
    for _ in range(2):
        p = _build(fake, session)
        await p.chat(_request(), _deployment())
        await p.close()
    first, second = fake.token_requests
    assert first["headers"]["Authorization"] == f"Basic {AUTH_KEY}"
    assert first["headers"]["Content-Type"] == "application/x-www-form-urlencoded"
    assert first["form"] == {"scope": "GIGACHAT_API_PERS"}
    rquids = [r["headers"]["RqUID"] for r in (first, second)]
    assert all(uuid.UUID(r).version == 4 for r in rquids) and rquids[0] != rquids[1]
    assert fake.headers[0]["X-Request-ID"] == "gen-1"


async def test_the_scope_option_is_sent(session: HttpClient) -> None:
    fake = FakeGigaChat(scopes=("GIGACHAT_API_B2B",)).start()
    try:
        default = _build(fake, session)
        with pytest.raises(UpstreamAuthError) as err:
            await default.chat(_request(), _deployment())
        assert err.value.status == 400
        assert err.value.message == ("giga token endpoint answered HTTP 400: "
                                     "scope from db not fully includes consumed scope")
        b2b = _build(fake, session, scope="GIGACHAT_API_B2B")
        assert (await b2b.chat(_request(), _deployment())).message.content == "echo: hello"
        assert [r["form"] for r in fake.token_requests] == [{"scope": "GIGACHAT_API_PERS"},
                                                            {"scope": "GIGACHAT_API_B2B"}]
        await default.close()
        await b2b.close()
    finally:
        fake.stop()


async def test_a_wrong_key_is_an_auth_error_that_never_shows_the_key(
        fake: FakeGigaChat, session: HttpClient) -> None:
    p = _build(fake, session, key=WRONG_KEY)
    with pytest.raises(UpstreamAuthError) as err:
        await p.chat(_request(), _deployment())
    assert err.value.status == 401
    assert err.value.message == "giga token endpoint answered HTTP 401: credentials doesn't match db data"
    assert err.value.metadata["raw"] == {"code": 6, "message": "credentials doesn't match db data"}
    assert WRONG_KEY not in repr((err.value.args, err.value.metadata))
    assert fake.requests == []
    await p.close()


async def test_the_token_is_refreshed_60_s_before_it_expires(
        fake: FakeGigaChat, provider: GigaChatProvider, session: HttpClient) -> None:
    fake.token_ttl = 70.0  # 10 s before the 60 s refresh margin: two calls in a row share it
    await provider.chat(_request(), _deployment())
    await provider.chat(_request(), _deployment())
    assert fake.issued == 1
    fake.token_ttl = 59.0  # inside the margin from the start: every call refreshes it
    inside = _build(fake, session)
    try:
        await inside.chat(_request(), _deployment())
        await inside.chat(_request(), _deployment())
    finally:
        await inside.close()
    assert fake.issued == 3
    tokens = fake.bearer_tokens()
    assert tokens[0] == tokens[1] != tokens[2] != tokens[3]


async def test_a_401_with_a_cached_token_refreshes_once_and_retries(
        fake: FakeGigaChat, provider: GigaChatProvider) -> None:
    await provider.chat(_request(), _deployment())
    fake.revoke_tokens()
    answers = await asyncio.gather(*(provider.chat(_request(f"n{i}"), _deployment())
                                     for i in range(5)))
    assert [a.message.content for a in answers] == [f"echo: n{i}" for i in range(5)]
    assert fake.issued == 2
    old, *rest = fake.bearer_tokens()
    assert rest.count(old) == 5 and len(set(rest) - {old}) == 1  # 5 refused, 5 retried


async def test_a_401_after_the_retry_is_an_auth_error(fake: FakeGigaChat,
                                                      provider: GigaChatProvider) -> None:
    with pytest.raises(UpstreamAuthError) as err:
        await provider.chat(_request(), _deployment("fake-401-always"))
    assert err.value.message == "giga answered HTTP 401: Unauthorized"
    assert err.value.metadata["raw"] == {"status": 401, "message": "Unauthorized"}
    assert fake.issued == 2
    assert len(fake.requests) == 2


async def test_a_stream_is_retried_after_a_401_too(fake: FakeGigaChat,
                                                   provider: GigaChatProvider) -> None:
    await provider.chat(_request(), _deployment())
    fake.revoke_tokens()
    batches = [b async for b in provider.stream(_request(), _deployment())]
    assert "".join(d.content or "" for b in batches for d in b.deltas) == "echo: hello"
    assert batches[-1].done and fake.issued == 2


async def test_an_unknown_model_is_unavailable(provider: GigaChatProvider) -> None:
    with pytest.raises(UpstreamUnavailable) as err:
        await provider.chat(_request(), _deployment("GigaChat-Ultra"))
    assert err.value.message == "giga answered HTTP 404: No such model"
    assert err.value.metadata["raw"] == {"status": 404, "message": "No such model"}


# ---- function calls ----------------------------------------------------------------------

async def test_function_call_round_trip_converts_arguments_both_ways(
        fake: FakeGigaChat, provider: GigaChatProvider) -> None:
    completion = await provider.chat(_request("weather?", tools=(WEATHER,)),
                                     _deployment("fake-tools"))
    sent = fake.requests[-1]
    assert sent["functions"] == [{"name": "get_weather", "description": "Current weather in a city",
                                  "parameters": WEATHER_PARAMETERS}]
    assert sent["function_call"] == "auto"
    (call,) = completion.message.tool_calls
    assert re.fullmatch(r"call_[0-9a-f]{24}", call.id)
    assert call.arguments == '{"city":"Moscow","unit":"celsius"}'
    assert completion.finish_reason == "tool_calls"

    follow = (*_request("weather?").messages,
              Message("assistant", None, tool_calls=(call,)),
              Message("tool", '{"temperature": -3}', tool_call_id=call.id),
              Message("user", "and tomorrow?"),
              Message("assistant", None, tool_calls=(call,)),
              Message("tool", "snow", tool_call_id=call.id),
              Message("user", "thanks"))
    reply = await provider.chat(ChatRequest("gen-2", "m", follow, tools=(WEATHER,),
                                            tool_choice_json=b'"none"'), _deployment())
    assert reply.message.content == "echo: thanks"
    sent = fake.requests[-1]
    assert sent["function_call"] == "none"
    assert sent["messages"][2:] == [
        {"role": "assistant", "content": "",
         "function_call": {"name": "get_weather", "arguments": TOOL_ARGUMENTS}},
        {"role": "function", "content": '{"temperature": -3}', "name": "get_weather"},
        {"role": "user", "content": "and tomorrow?"},
        {"role": "assistant", "content": "",
         "function_call": {"name": "get_weather", "arguments": TOOL_ARGUMENTS}},
        {"role": "function", "content": '"snow"', "name": "get_weather"},
        {"role": "user", "content": "thanks"},
    ]


async def test_a_forced_tool_choice_becomes_a_named_function_call(
        fake: FakeGigaChat, provider: GigaChatProvider) -> None:
    choice = b'{"type":"function","function":{"name":"get_weather"}}'
    batches = [b async for b in provider.stream(
        _request("weather?", tools=(WEATHER,), tool_choice_json=choice), _deployment("fake-tools"))]
    assert fake.requests[-1]["function_call"] == {"name": "get_weather"}
    assert fake.requests[-1]["stream"] is True
    calls = [c for b in batches for d in b.deltas for c in d.tool_calls]
    assert [json.loads(c.arguments) for c in calls] == [TOOL_ARGUMENTS]
    assert [b.usage is not None for b in batches].count(True) == 1


# ---- embeddings --------------------------------------------------------------------------

async def test_embeddings(fake: FakeGigaChat, provider: GigaChatProvider) -> None:
    result = await provider.embed(EmbeddingRequest("emb", ("a", "hello world")),
                                  _deployment("Embeddings"))
    assert fake.embedding_requests == [{"model": "Embeddings", "input": ["a", "hello world"]}]
    assert result.vectors == ((1.0, 0.0, 0.25), (11.0, 1.0, 0.25))
    assert result.usage is not None and result.usage.prompt == 1 + 3
    assert fake.issued == 1


# ---- TLS ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, standing in for the Russian Trusted Root CA."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "russian_trusted_root_ca.pem", folder / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


@pytest.fixture
def tls_fake(certificate: tuple[Path, Path]) -> Iterator[FakeGigaChat]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    upstream = FakeGigaChat(ssl_context=context).start()
    yield upstream
    upstream.stop()


async def test_a_ca_bundle_is_trusted(tls_fake: FakeGigaChat, certificate: tuple[Path, Path],
                                      session: HttpClient) -> None:
    assert tls_fake.base_url.startswith("https://")
    p = _build(tls_fake, session, ca_bundle=str(certificate[0]))
    assert (await p.chat(_request(), _deployment())).message.content == "echo: hello"
    own = p._session  # a session of the adapter's own, closed with it
    assert own is not session
    await p.close()
    assert own.closed and not session.closed


async def test_without_the_ca_bundle_the_server_is_not_trusted(
        tls_fake: FakeGigaChat, session: HttpClient) -> None:
    p = _build(tls_fake, session)
    with pytest.raises(UpstreamConnectError):
        await p.chat(_request(), _deployment())
    assert tls_fake.token_requests == []
    await p.close()


async def test_verify_ssl_false_is_explicit_and_logged_once(
        tls_fake: FakeGigaChat, session: HttpClient,
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="xrouter.router.gigachat"):
        p = _build(tls_fake, session, verify_ssl=False)
        assert (await p.chat(_request(), _deployment())).message.content == "echo: hello"
        await p.chat(_request(), _deployment())
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", "providers.giga: verify_ssl = false: GigaChat's TLS certificates are NOT verified")]
    await p.close()


async def test_a_file_that_is_not_pem_is_a_config_error(tmp_path: Path, fake: FakeGigaChat,
                                                        session: HttpClient) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    with pytest.raises(ConfigError, match="ca_bundle: cannot load"):
        _build(fake, session, ca_bundle=str(bad))
