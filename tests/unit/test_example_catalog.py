"""config/catalog.example.toml stays loadable, builds every provider, and keeps the origin's
model aliases (gigachat-pro, yandexgpt:latest, yandexgpt-lite:rc, ...)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.builders import request
from xrouter_common.env import ConfigError
from xrouter_router.catalog_file import load
from xrouter_router.domain.catalog import NO_LIMITS, ModelLimits
from xrouter_router.domain.errors import NoProvider
from xrouter_router.domain.routing import plan
from xrouter_router.domain.types import ProviderPreferences

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "catalog.example.toml"
ENV = {"GIGACHAT_AUTH_KEY": "a2V5", "YANDEX_API_KEY": "y", "OPENAI_API_KEY": "o",
       "ANTHROPIC_API_KEY": "a", "GEMINI_API_KEY": "g"}


def test_the_example_catalog_loads_with_the_origin_aliases() -> None:
    config = load(EXAMPLE, ENV)
    assert [p.type for p in config.providers] == ["gigachat", "yandexgpt", "openai", "anthropic",
                                                  "gemini"]
    catalog = config.catalog
    for alias, model_id in [("gigachat-pro", "gigachat/GigaChat-2-Pro"),
                            ("gigachat-max", "gigachat/GigaChat-2-Max"),
                            ("gigachat", "gigachat/GigaChat-2"),
                            ("yandexgpt:latest", "yandexgpt/yandexgpt:latest"),
                            ("yandexgpt:rc", "yandexgpt/yandexgpt:rc"),
                            ("yandexgpt:deprecated", "yandexgpt/yandexgpt:deprecated"),
                            ("yandexgpt-lite:latest", "yandexgpt/yandexgpt-lite:latest"),
                            ("yandexgpt-lite:rc", "yandexgpt/yandexgpt-lite:rc"),
                            ("yandexgpt-32k:latest", "yandexgpt/yandexgpt-32k:latest")]:
        assert catalog.resolve(alias).id == model_id
    pro = catalog.resolve("gigachat-pro")
    assert [d.provider for d in pro.deployments] == ["gigachat", "yandexgpt"]


def test_the_example_catalog_names_every_credential_variable() -> None:
    for name in ENV:
        with pytest.raises(ConfigError, match=name):
            load(EXAMPLE, {k: v for k, v in ENV.items() if k != name})


def test_the_example_catalog_has_the_current_generations() -> None:
    catalog = load(EXAMPLE, ENV).catalog
    names = {alias: catalog.resolve(alias).name for alias in (
        "gigachat-2-lite", "gigachat-2-pro", "gigachat-2-max", "yandexgpt-5-lite",
        "yandexgpt-5-pro", "yandexgpt-5.1-pro")}
    assert names == {"gigachat-2-lite": "GigaChat 2 Lite", "gigachat-2-pro": "GigaChat 2 Pro",
                     "gigachat-2-max": "GigaChat 2 Max", "yandexgpt-5-lite": "YandexGPT 5 Lite",
                     "yandexgpt-5-pro": "YandexGPT 5 Pro", "yandexgpt-5.1-pro": "YandexGPT 5.1 Pro"}
    # Yandex's reasoning option is sent only where the catalog says the model has it.
    assert "reasoning" in catalog.resolve("yandexgpt-5.1-pro").deployments[0].parameters
    assert "reasoning" not in catalog.resolve("yandexgpt-5-lite").deployments[0].parameters


def test_the_example_catalog_has_the_origins_model_limits() -> None:
    catalog = load(EXAMPLE, ENV).catalog
    limits = {alias: catalog.resolve(alias).limits for alias in (
        "gigachat-pro", "gigachat-basic", "yandexgpt:latest", "yandexgpt-lite:latest")}
    assert limits == {"gigachat-pro": ModelLimits(4000, 100_000, 1_000_000),
                      "gigachat-basic": ModelLimits(2000, 20_000, 200_000),
                      "yandexgpt:latest": ModelLimits(4000, 100_000, 1_000_000),
                      "yandexgpt-lite:latest": ModelLimits(2000, 50_000, 500_000)}
    assert catalog.resolve("gigachat-max").limits is NO_LIMITS


def test_structured_outputs_route_to_every_deployment_that_honours_them() -> None:
    """GigaChat (forced function), Anthropic (forced tool) and the 5th-generation YandexGPT
    models (jsonSchema) honour response_format: even under require_parameters a json_schema
    request may go to each of them; a model without the field is skipped, with the reason."""
    catalog = load(EXAMPLE, ENV).catalog
    fmt = b'{"type":"json_schema","json_schema":{"name":"w","schema":{"type":"object"}}}'
    strict = ProviderPreferences(require_parameters=True)
    for alias in ("gigachat-2-pro", "yandexgpt-5-pro", "yandexgpt-5.1-pro", "yandexgpt-5-lite",
                  "claude-sonnet-4", "gpt-4o-mini", "gemini-2.5-flash"):
        model = catalog.resolve(alias)
        route = plan(catalog, request(alias, response_format_json=fmt, provider=strict))
        assert {c.deployment.id for c in route.candidates} == {d.id for d in model.deployments}
    with pytest.raises(NoProvider) as caught:
        plan(catalog, request("yandexgpt-32k", response_format_json=fmt, provider=strict))
    assert caught.value.metadata["reasons"] == {
        "yandexgpt/yandexgpt-32k:latest@yandexgpt": "does not support json_mode"}
