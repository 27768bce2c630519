"""Structured outputs end to end: gateway -> router -> the fake upstreams in their own wire formats.
OpenAI-compatible passes response_format on, Gemini gets responseJsonSchema, YandexGPT
jsonSchema, GigaChat a forced function and Anthropic a forced tool whose call comes back as the
answer's text; a
non-conforming answer fails over to the next deployment before anything is sent (whole and
streamed), costs the client nothing, and when every answer is non-conforming the client gets the
documented 502."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.fakes import anthropic_upstream, gemini_upstream, gigachat_upstream, yandexgpt_upstream
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.gemini_upstream import FakeGemini
from tests.fakes.gigachat_upstream import FakeGigaChat
from tests.fakes.harness import TOOL_ARGUMENTS, WEATHER_SCHEMA
from tests.fakes.openai_upstream import TOOL_ARGS, FakeOpenAI
from tests.fakes.yandexgpt_upstream import FakeYandexGPT
from tests.integration.conftest import AUTH, content_of, events
from tests.support import (
    gateway_settings,
    gross,
    router_settings,
    running_gateway,
    running_router,
)

FORMAT = {"type": "json_schema", "json_schema": {"name": "weather", "strict": True,
                                                  "schema": WEATHER_SCHEMA}}
ASK = [{"role": "user", "content": "Weather in Moscow?"}]
ANSWER = orjson.dumps(TOOL_ARGUMENTS).decode()  # what the emulations and Yandex answer


@dataclass
class Fakes:
    openai: FakeOpenAI
    giga: FakeGigaChat
    claude: FakeAnthropic
    yandex: FakeYandexGPT
    gemini: FakeGemini


@dataclass
class Rig:
    url: str
    http: httpx.AsyncClient
    fakes: Fakes

    async def chat(self, model: str, **extra: Any) -> httpx.Response:
        return await self.http.post(f"{self.url}/v1/chat/completions", headers=AUTH, json={
            "model": model, "messages": ASK, "response_format": FORMAT, **extra})

    async def stream(self, model: str, **extra: Any) -> tuple[httpx.Response, list[str]]:
        lines: list[str] = []
        async with self.http.stream("POST", f"{self.url}/v1/chat/completions", headers=AUTH, json={
                "model": model, "messages": ASK, "response_format": FORMAT, "stream": True,
                **extra}) as resp:
            if resp.status_code != 200:
                await resp.aread()
                return resp, []
            lines = [line async for line in resp.aiter_lines() if line]
        return resp, lines


@pytest.fixture(scope="module")
def fakes() -> Iterator[Fakes]:
    servers = Fakes(FakeOpenAI().start(), FakeGigaChat().start(), FakeAnthropic().start(),
                    FakeYandexGPT().start(), FakeGemini().start())
    yield servers
    for server in (servers.openai, servers.giga, servers.claude, servers.yandex, servers.gemini):
        server.stop()


def _model(mid: str, *deps: tuple[str, str]) -> str:
    out = f'\n[[models]]\nid = "{mid}"\nname = "{mid}"\n'
    for provider, upstream in deps:
        out += (f'  [[models.deployments]]\n  provider = "{provider}"\n'
                f'  upstream_model = "{upstream}"\n  capabilities = ["streaming", "json_mode"]\n'
                f'  price = {{ prompt = "100", completion = "200" }}\n  context_length = 16000\n')
    return out


def _catalog(directory: Path, fakes: Fakes) -> Path:
    text = "".join(f'[providers.{name}]\ntype = "openai"\nbase_url = "{fakes.openai.base_url}"\n'
                   'api_key_env = "FAKE_UPSTREAM_KEY"\n' for name in ("fake", "fake2"))
    text += f"""
[providers.giga]
type = "gigachat"
base_url = "{fakes.giga.base_url}"
auth_url = "{fakes.giga.auth_url}"
api_key_env = "FAKE_GIGA_KEY"

[providers.claude]
type = "anthropic"
base_url = "{fakes.claude.base_url}"
api_key_env = "FAKE_ANTHROPIC_KEY"

[providers.yandex]
type = "yandexgpt"
base_url = "{fakes.yandex.base_url}"
folder_id = "{yandexgpt_upstream.FOLDER}"
api_key_env = "FAKE_YANDEX_KEY"

[providers.gemini]
type = "gemini"
base_url = "{fakes.gemini.base_url}"
api_key_env = "FAKE_GEMINI_KEY"
"""
    text += _model("test/json", ("fake", "fake-json"))
    text += _model("test/json-failover", ("fake", "fake-json-bad"), ("fake2", "fake-json"))
    text += _model("test/json-all-bad", ("fake", "fake-json-bad"), ("fake2", "fake-json-bad"))
    text += _model("test/giga", ("giga", "fake-json"))
    text += _model("test/claude", ("claude", "claude-fake-json"))
    text += _model("test/yandex", ("yandex", "yandexgpt-json:latest"))
    text += _model("test/across", ("gemini", "gemini-fake-json-bad"),
                   ("yandex", "yandexgpt-json-bad:latest"), ("giga", "fake-json-bad"),
                   ("claude", "claude-fake-json"))
    path = directory / "catalog.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
async def rig(tmp_path: Path, fakes: Fakes, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Rig]:
    monkeypatch.setenv("FAKE_GIGA_KEY", gigachat_upstream.AUTH_KEY)
    monkeypatch.setenv("FAKE_ANTHROPIC_KEY", anthropic_upstream.API_KEY)
    monkeypatch.setenv("FAKE_YANDEX_KEY", yandexgpt_upstream.API_KEY)
    monkeypatch.setenv("FAKE_GEMINI_KEY", gemini_upstream.API_KEY)
    for fake in (fakes.openai, fakes.giga, fakes.claude, fakes.yandex, fakes.gemini):
        fake.requests.clear()
    settings = router_settings(_catalog(tmp_path, fakes))
    async with running_router(settings) as router:
        # No keep-alive or commit before the answer is checked, however slow the machine.
        gateway = gateway_settings(f"127.0.0.1:{router.server.port}", sse_commit_after=60.0)
        async with running_gateway(gateway) as url, httpx.AsyncClient(timeout=30.0) as http:
            yield Rig(url, http, fakes)


def _message(resp: httpx.Response) -> dict[str, Any]:
    assert resp.status_code == 200, resp.text
    return resp.json()["choices"][0]["message"]  # type: ignore[no-any-return]


# ---- each wire format ---------------------------------------------------------------------------

async def test_gigachat_round_trip_through_a_forced_function(rig: Rig) -> None:
    resp = await rig.chat("test/giga")
    assert _message(resp) == {"role": "assistant", "content": ANSWER}
    assert resp.json()["choices"][0]["finish_reason"] == "stop"
    sent = rig.fakes.giga.requests[-1]
    assert sent["functions"] == [{"name": "weather", "parameters": WEATHER_SCHEMA,
                                  "description": "Answer with the response, as this "
                                                 "function's arguments."}]
    assert sent["function_call"] == {"name": "weather"}
    resp, lines = await rig.stream("test/giga")
    assert content_of(lines) == ANSWER
    assert [c["finish_reason"] for e in events(lines) for c in e["choices"]
            if c.get("finish_reason")] == ["stop"]
    assert not any("tool_calls" in c["delta"] for e in events(lines) for c in e["choices"])


async def test_anthropic_round_trip_through_a_forced_tool(rig: Rig) -> None:
    resp = await rig.chat("test/claude")
    assert _message(resp) == {"role": "assistant", "content": ANSWER}
    assert resp.json()["choices"][0]["finish_reason"] == "stop"
    sent = rig.fakes.claude.requests[-1]
    assert [t["name"] for t in sent["tools"]] == ["weather"]
    assert sent["tools"][0]["input_schema"] == WEATHER_SCHEMA
    assert sent["tool_choice"] == {"type": "tool", "name": "weather"}
    assert "output_config" not in sent
    resp, lines = await rig.stream("test/claude")
    assert content_of(lines) == ANSWER
    assert not any("tool_calls" in c["delta"] for e in events(lines) for c in e["choices"])


async def test_yandexgpt_gets_its_native_json_schema(rig: Rig) -> None:
    assert _message(await rig.chat("test/yandex")) == {"role": "assistant", "content": ANSWER}
    assert rig.fakes.yandex.requests[-1]["jsonSchema"] == {"schema": WEATHER_SCHEMA}
    _, lines = await rig.stream("test/yandex")
    assert content_of(lines) == ANSWER


async def test_json_object_through_the_emulation(rig: Rig) -> None:
    resp = await rig.chat("test/claude", response_format={"type": "json_object"})
    assert _message(resp)["content"] == ANSWER
    assert rig.fakes.claude.requests[-1]["tools"][0]["input_schema"] == {"type": "object"}


# ---- failover ----------------------------------------------------------------------------------

ORDER = {"provider": {"order": ["fake", "fake2"]}}


async def test_a_non_conforming_answer_fails_over_and_is_not_charged(rig: Rig) -> None:
    resp = await rig.chat("test/json-failover", **ORDER)
    assert _message(resp)["content"] == TOOL_ARGS
    body = resp.json()
    assert body["provider"] == "fake2"
    assert rig.fakes.openai.models_called() == ["fake-json-bad", "fake-json"]
    assert [r["response_format"] for r in rig.fakes.openai.requests] == [FORMAT, FORMAT]
    assert resp.headers["x-xrouter-route"].startswith("test/json-failover@fake2; attempts=")
    stats = (await rig.http.get(f"{rig.url}/v1/generation", params={"id": body["id"]},
                                headers=AUTH)).json()["data"]
    assert [a["outcome"] for a in stats["attempts"]] == ["non_conforming", "success"]
    # Charged once, for the answer the client got: the discarded attempt costs it nothing.
    usage = body["usage"]
    expected = gross((Decimal(usage["prompt_tokens"]) * 100
                      + Decimal(usage["completion_tokens"]) * 200) / 1_000_000)
    assert Decimal(str(stats["total_cost"])) == Decimal(str(usage["cost"])) == expected


async def test_a_non_conforming_stream_sends_nothing_and_fails_over(rig: Rig) -> None:
    resp, lines = await rig.stream("test/json-failover", **ORDER)
    assert resp.status_code == 200
    assert content_of(lines) == TOOL_ARGS  # nothing of fake-json-bad's '{"city": 7}'
    assert {e["provider"] for e in events(lines) if "provider" in e} == {"fake2"}
    assert rig.fakes.openai.models_called() == ["fake-json-bad", "fake-json"]


async def test_failover_across_wire_formats(rig: Rig) -> None:
    """Gemini (responseJsonSchema), YandexGPT and GigaChat answer outside the schema; Anthropic's
    forced tool answers within it."""
    order = {"provider": {"order": ["gemini", "yandex", "giga", "claude"]}}
    resp = await rig.chat("test/across", **order)
    assert _message(resp)["content"] == ANSWER and resp.json()["provider"] == "claude"
    config = rig.fakes.gemini.requests[-1]["generationConfig"]
    assert (config["responseMimeType"], config["responseJsonSchema"]) == ("application/json",
                                                                          WEATHER_SCHEMA)
    stats = (await rig.http.get(f"{rig.url}/v1/generation", params={"id": resp.json()["id"]},
                                headers=AUTH)).json()["data"]
    assert [(a["provider_name"], a["outcome"]) for a in stats["attempts"]] == [
        ("gemini", "non_conforming"), ("yandex", "non_conforming"), ("giga", "non_conforming"),
        ("claude", "success")]
    _, lines = await rig.stream("test/across", **order)
    assert content_of(lines) == ANSWER


def _assert_all_failed(resp: httpx.Response) -> None:
    assert resp.status_code == 502
    err = resp.json()["error"]
    assert (err["code"], err["type"]) == (502, "upstream_error")
    assert err["message"].startswith("All providers failed: fake2 answered JSON outside the "
                                     "response_format's schema")
    assert [(a["provider_name"], a["reason"]) for a in err["metadata"]["attempts"]] == [
        ("fake", "non_conforming"), ("fake2", "non_conforming")]


async def test_every_answer_non_conforming_is_the_documented_502(rig: Rig) -> None:
    _assert_all_failed(await rig.chat("test/json-all-bad", **ORDER))
    resp, lines = await rig.stream("test/json-all-bad", **ORDER)
    assert lines == []
    _assert_all_failed(resp)


async def test_a_broken_schema_is_a_400_without_failover(rig: Rig) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "w", "schema": {"type": 5}}}
    resp = await rig.chat("test/json-failover", response_format=fmt, **ORDER)
    assert resp.status_code == 400
    err = resp.json()["error"]
    assert (err["param"], err["message"]) == ("response_format.json_schema.schema",
                                              "response_format.json_schema.schema cannot be "
                                              "applied: TypeError")
    assert rig.fakes.openai.models_called() == ["fake-json-bad"]  # noticed on the first answer


async def test_responses_text_format_is_checked_the_same_way(rig: Rig) -> None:
    resp = await rig.http.post(f"{rig.url}/v1/responses", headers=AUTH, json={
        "model": "test/json-failover", "input": "Weather in Moscow?", **ORDER,
        "text": {"format": {"type": "json_schema", "name": "weather", "schema": WEATHER_SCHEMA}}})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert [p["text"] for item in body["output"] for p in item["content"]] == [TOOL_ARGS]
    assert rig.fakes.openai.models_called() == ["fake-json-bad", "fake-json"]


async def test_a_checked_stream_reserves_its_whole_worst_case_first(rig: Rig) -> None:
    """The provider writes a checked stream whole before the client sees any of it, so, as for
    a whole answer, all of its worst case must fit at the start: 0.05 RUB starts a plain stream
    of up to 1000 tokens at 200 RUB per million (0.2 RUB), not a checked one."""
    topped = await rig.http.post(f"{rig.url}/v1/credits", headers=AUTH,
                                 json={"account_id": "acct-s", "amount": "0.05"})
    assert topped.status_code == 200, topped.text
    made = await rig.http.post(f"{rig.url}/v1/keys", headers=AUTH,
                               json={"account_id": "acct-s", "tier": "pro"})
    assert made.status_code == 201, made.text
    key = {"Authorization": f"Bearer {made.json()['key']}"}
    body = {"model": "test/json", "messages": ASK, "stream": True, "max_tokens": 1000}
    async with rig.http.stream("POST", f"{rig.url}/v1/chat/completions", headers=key,
                               json=body) as plain:
        await plain.aread()
    assert plain.status_code == 200
    checked = await rig.http.post(f"{rig.url}/v1/chat/completions", headers=key,
                                  json={**body, "response_format": FORMAT})
    assert checked.status_code == 402
    assert checked.json()["error"]["metadata"]["limit_source"] == "account"
    assert rig.fakes.openai.models_called() == ["fake-json"]  # the plain one only
