"""Issue 4's end-to-end promises, with the official openai SDK against both services as
processes and the GigaChat and YandexGPT fakes speaking their own wire formats."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import httpx
import openai
import pytest
from openai import OpenAI
from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageParam

from tests.fakes import gigachat_upstream, yandexgpt_upstream
from tests.fakes.harness import ScenarioHarness
from tests.support import MASTER_KEY, Service, free_port, start_service, wait_http, wait_port
from xrouter_router.providers.config import ProviderConfig

pytestmark = pytest.mark.e2e
HI: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Привет"}]


def _provider_toml(config: ProviderConfig, key_env: str) -> str:
    lines = [f"[providers.{config.name}]", f'type = "{config.type}"',
             f'base_url = "{config.base_url}"', f'api_key_env = "{key_env}"']
    lines += [f"{k} = {json.dumps(v)}" for k, v in config.options.items()]
    return "\n".join(lines) + "\n"


def _model(model_id: str, *deployments: tuple[str, str, str]) -> str:
    out = f'\n[[models]]\nid = "{model_id}"\nname = "{model_id}"\n'
    for provider, upstream_model, price in deployments:
        out += (f'  [[models.deployments]]\n  provider = "{provider}"\n'
                f'  upstream_model = "{upstream_model}"\n'
                f'  price = {{ prompt = "{price}", completion = "{price}" }}\n')
    return out


@dataclass
class RuStack:
    client: OpenAI
    base: str
    giga: ScenarioHarness
    yandex: ScenarioHarness


@pytest.fixture(scope="module")
def ru(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RuStack]:
    giga, yandex = gigachat_upstream.harness(), yandexgpt_upstream.harness()
    giga.start()
    yandex.start()
    tmp = tmp_path_factory.mktemp("ru")
    g, y = giga.config().name, yandex.config().name
    catalog = _provider_toml(giga.config(), "GIGA_KEY") + _provider_toml(yandex.config(), "YA_KEY")
    catalog += _model("ru/pro", (g, giga.upstream_model("500"), "100"),
                      (y, yandex.upstream_model("echo"), "200"))
    catalog += _model("ru/both", (g, giga.upstream_model("echo"), "300"),
                      (y, yandex.upstream_model("echo"), "150"))
    catalog += _model("ru/broken", (g, giga.upstream_model("500"), "100"))
    catalog += _model("ru/yandex", (y, yandex.upstream_model("echo"), "150"))
    catalog += _model("ru/cut", (y, yandex.upstream_model("cut"), "150"))
    path = Path(tmp / "catalog.toml")
    path.write_text(catalog, encoding="utf-8")
    router_port, gw_port = free_port(), free_port()
    env = {"XROUTER_MASTER_KEY": MASTER_KEY, "XROUTER_CATALOG": str(path),
           "XROUTER_ROUTER_LISTEN": f"127.0.0.1:{router_port}", "XROUTER_ROUTER_METRICS_PORT": "0",
           "GIGA_KEY": giga.config().api_key, "YA_KEY": yandex.config().api_key}
    router = start_service("xrouter_router", env, tmp / "router.log")
    wait_port(router_port, service=router)
    gateway = start_service("xrouter_gateway", {"XROUTER_GATEWAY_PORT": str(gw_port),
                                                "XROUTER_ROUTER_TARGET": f"127.0.0.1:{router_port}"},
                            tmp / "gateway.log")
    base = f"http://127.0.0.1:{gw_port}"
    services: list[Service] = [router, gateway]
    try:
        wait_http(f"{base}/readyz", service=gateway)
        yield RuStack(OpenAI(base_url=base + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=20),
                      base, giga, yandex)
    finally:
        for s in services:
            s.kill(15)
        giga.stop()
        yandex.stop()


def _chat(ru: RuStack, **kw: Any) -> tuple[Any, str]:
    raw = ru.client.chat.completions.with_raw_response.create(messages=HI, **kw)
    return raw.parse(), raw.headers["x-xrouter-route"]


def test_gigachat_500_falls_over_to_yandexgpt_without_client_error(ru: RuStack) -> None:
    reply, route = _chat(ru, model="ru/pro")
    assert reply.choices[0].message.content == "echo: Привет"
    assert reply.provider == "fake-yandexgpt"
    assert route == ("ru/pro@fake-yandexgpt; attempts=ru/pro@fake-gigachat:server_error,"
                     "ru/pro@fake-yandexgpt:success")


def test_provider_order_only_ignore_and_sort(ru: RuStack) -> None:
    prefer_giga = {"provider": {"order": ["fake-gigachat"]}}
    _, route = _chat(ru, model="ru/both", extra_body=prefer_giga)
    assert route == "ru/both@fake-gigachat; attempts=ru/both@fake-gigachat:success"
    _, route = _chat(ru, model="ru/both", extra_body={"provider": {"ignore": ["fake-gigachat"]}})
    assert route.startswith("ru/both@fake-yandexgpt;")
    _, route = _chat(ru, model="ru/both", extra_body={"provider": {"sort": "price"}})
    assert route.startswith("ru/both@fake-yandexgpt;")  # 150 RUB/M against 300
    with pytest.raises(openai.InternalServerError) as failed:
        _chat(ru, model="ru/pro", extra_body={"provider": {"only": ["fake-gigachat"]}})
    assert failed.value.status_code == 502
    with pytest.raises(openai.BadRequestError) as bad:
        _chat(ru, model="ru/both", extra_body={"provider": {"sorting": "price"}})
    assert bad.value.status_code == 400


def test_models_fallback_bills_and_reports_the_model_used(ru: RuStack) -> None:
    reply, route = _chat(ru, model="ru/broken", extra_body={"models": ["ru/yandex"]})
    assert reply.model == "ru/yandex"
    assert route.startswith("ru/yandex@fake-yandexgpt;")


def test_a_stream_cut_after_some_tokens_ends_with_the_error_chunk(ru: RuStack) -> None:
    stream = ru.client.chat.completions.create(model="ru/cut", messages=HI, stream=True)
    text = ""
    with pytest.raises(openai.APIError) as cut:
        for chunk in cast(Iterator[ChatCompletionChunk], stream):
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
    assert text.startswith("echo:")
    assert cut.value.body == {"code": 502, "message": "fake-yandexgpt cut the response short",
                              "metadata": {"provider_name": "fake-yandexgpt",
                                           "reason": "bad_response"}}


def test_route_explain_matches_the_next_request(ru: RuStack) -> None:
    for _ in range(3):
        plan = httpx.post(f"{ru.base}/v1/route/explain", json={"model": "ru/both", "messages": HI},
                          headers={"Authorization": f"Bearer {MASTER_KEY}"}).json()["data"]
        _, route = _chat(ru, model="ru/both")
        assert route.split(";")[0] == plan["order"][0]
