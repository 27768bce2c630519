"""The catalog file: a valid file becomes providers and a catalog; every mistake is a
ConfigError that names its place."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from xrouter_common.env import ConfigError
from xrouter_router.catalog_file import CatalogConfig, load, parse
from xrouter_router.domain.catalog import NO_LIMITS, Deployment, Model, ModelLimits, Price
from xrouter_router.providers import registry
from xrouter_router.providers.config import ProviderConfig
from xrouter_router.settings import DEFAULT_CATALOG

ENV = {"OAI_KEY": "sk-oai"}
VALID: dict[str, Any] = {
    "providers": {
        "demo": {"type": "demo", "word_delay": 0.0},
        "oai": {"type": "openai", "base_url": "https://api.openai.com/v1", "api_key_env": "OAI_KEY",
                "headers": {"X-Title": "xrouter", "X-Retries": 2}, "send_nonstandard_params": True},
    },
    "models": [
        {"id": "openai/gpt-4o", "name": "GPT-4o", "aliases": ["gpt-4o"], "description": "Omni",
         "created": 1715367049, "deployments": [
             {"provider": "oai", "upstream_model": "gpt-4o-2024-08-06", "context_length": 128000,
              "max_completion_tokens": 16384, "capabilities": ["tools", "json_mode", "vision"],
              "price": {"prompt": "150.5", "completion": 600}, "weight": 2},
         ]},
        {"id": "xrouter/demo", "deployments": [{"provider": "demo"}]},
    ],
}

GPT = Model(
    id="openai/gpt-4o", name="GPT-4o", description="Omni", created=1715367049, aliases=("gpt-4o",),
    deployments=(Deployment(
        id="openai/gpt-4o@oai", provider="oai", upstream_model="gpt-4o-2024-08-06",
        price=Price(Decimal("150.5"), Decimal(600)), context_length=128000,
        max_completion_tokens=16384, capabilities=frozenset({"tools", "json_mode", "vision"}),
        weight=2.0),),
)
DEMO = Model(
    id="xrouter/demo", name="xrouter/demo",
    deployments=(Deployment(
        id="xrouter/demo@demo", provider="demo", upstream_model="xrouter/demo", price=Price(),
        context_length=8192, max_completion_tokens=4096, capabilities=frozenset({"streaming"})),),
)


def test_a_valid_catalog() -> None:
    config = parse(VALID, ENV)
    assert config.providers == (
        ProviderConfig("demo", "demo", "", "", {}, {"word_delay": 0.0}),
        ProviderConfig("oai", "openai", "https://api.openai.com/v1", "sk-oai",
                       {"X-Title": "xrouter", "X-Retries": "2"}, {"send_nonstandard_params": True}),
    )
    assert config.catalog.models == (GPT, DEMO)
    assert config.catalog.resolve("gpt-4o") is config.catalog.resolve("openai/gpt-4o")


def test_the_api_key_stays_out_of_repr() -> None:
    assert "sk-oai" not in repr(parse(VALID, ENV).providers)


Mutation = Callable[[dict[str, Any]], None]


def _set(path: str, value: Any) -> Mutation:
    """A mutation setting the dotted `path` (integers index lists) to `value`."""
    def apply(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = data
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        node[int(last) if last.isdigit() else last] = value
    apply.__name__ = f"{path}={value!r}"
    return apply


def _delete(path: str) -> Mutation:
    def apply(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = data
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        del node[int(last) if last.isdigit() else last]
    apply.__name__ = f"del {path}"
    return apply


D0 = "models.0.deployments.0"


def test_model_limits_are_read_each_optional() -> None:
    data = copy.deepcopy(VALID)
    data["models"][0]["limits"] = {"tokens_per_request": 4000, "tokens_per_day": 1_000_000}
    data["models"][1]["limits"] = {}
    catalog = parse(data, ENV).catalog
    assert catalog.resolve("gpt-4o").limits == ModelLimits(4000, None, 1_000_000)
    assert catalog.resolve("xrouter/demo").limits is NO_LIMITS
    assert parse(VALID, ENV).catalog.resolve("gpt-4o").limits is NO_LIMITS


def test_bucket_prices_are_read_and_default_to_unset() -> None:
    data = copy.deepcopy(VALID)
    data["models"][0]["deployments"][0]["price"].update(
        {"cache_read": "75.25", "cache_write": 190, "reasoning": "1200"})
    deployment = parse(data, ENV).catalog.resolve("gpt-4o").deployments[0]
    assert deployment.price == Price(Decimal("150.5"), Decimal(600), cache_read=Decimal("75.25"),
                                     cache_write=Decimal(190), reasoning=Decimal(1200))
    unset = parse(VALID, ENV).catalog.resolve("gpt-4o").deployments[0].price
    assert (unset.cache_read, unset.cache_write, unset.reasoning) == (None, None, None)


@pytest.mark.parametrize(("mutate", "message"), [
    (_delete("providers"), "catalog: [providers] must define at least one provider"),
    (_set("providers", {}), "catalog: [providers] must define at least one provider"),
    (_set("providers", ["oai"]), "catalog: [providers] must define at least one provider"),
    (_set("providers.oai", "openai"), "catalog: providers.oai must be a table"),
    (_set("providers.oai.type", "claude"),
     "catalog: providers.oai.type must be one of ['anthropic', 'demo', 'gemini', 'gigachat', "
     "'openai', 'yandexgpt'], got 'claude'"),
    (_delete("providers.oai.type"),
     "catalog: providers.oai.type must be one of ['anthropic', 'demo', 'gemini', 'gigachat', "
     "'openai', 'yandexgpt'], got None"),
    (_set("providers.oai.api_key_env", "MISSING_KEY"),
     "catalog: providers.oai: environment variable MISSING_KEY is not set"),
    (_set("providers.oai.api_key_env", "EMPTY_KEY"),
     "catalog: providers.oai: environment variable EMPTY_KEY is not set"),
    (_set("providers.demo.api_key", "sk-inline"),
     "catalog: providers.demo: put credentials in an environment variable (api_key_env)"),
    (_set("providers.oai.base_url", "api.openai.com/v1"),
     "catalog: providers.oai.base_url must be an http(s) URL"),
    (_delete("models"), "catalog: [[models]] must define at least one model"),
    (_set("models", []), "catalog: [[models]] must define at least one model"),
    (_set("models.1", "xrouter/demo"), "catalog: models[1] must be a table with an id"),
    (_delete("models.1.id"), "catalog: models[1] must be a table with an id"),
    (_delete("models.1.deployments"), "catalog: models[1] (xrouter/demo) has no [[models.deployments]]"),
    (_set("models.1.deployments", []), "catalog: models[1] (xrouter/demo) has no [[models.deployments]]"),
    (_set(D0, "oai"), "catalog: models[0].deployments[0] must be a table"),
    (_set(f"{D0}.provider", "nope"),
     "catalog: models[0].deployments[0].provider 'nope' is not defined under [providers]"),
    (_delete(f"{D0}.provider"),
     "catalog: models[0].deployments[0].provider None is not defined under [providers]"),
    (_set(f"{D0}.capabilities", ["tools", "telepathy", "audio"]),
     "catalog: models[0].deployments[0].capabilities: unknown ['audio', 'telepathy']"),
    (_set(f"{D0}.price.prompt", "-1"),
     "catalog: models[0].deployments[0].price.prompt must be a non-negative decimal, got '-1'"),
    (_set(f"{D0}.price.completion", -0.5),
     "catalog: models[0].deployments[0].price.completion must be a non-negative decimal, got -0.5"),
    (_set(f"{D0}.price.completion", "cheap"),
     "catalog: models[0].deployments[0].price.completion must be a decimal number, got 'cheap'"),
    (_set(f"{D0}.price.prompt", "NaN"),
     "catalog: models[0].deployments[0].price.prompt must be a non-negative decimal, got 'NaN'"),
    (_set(f"{D0}.price.cache_write", "-2"),
     "catalog: models[0].deployments[0].price.cache_write must be a non-negative decimal, got '-2'"),
    (_set(f"{D0}.price.reasoning", "lots"),
     "catalog: models[0].deployments[0].price.reasoning must be a decimal number, got 'lots'"),
    (_set(f"{D0}.price.prompt", float("inf")),
     "catalog: models[0].deployments[0].price.prompt must be a non-negative decimal, got inf"),
    (_set("models.1.aliases", ["gpt-4o"]), "catalog: model id or alias 'gpt-4o' is defined twice"),
    (_set("models.1.id", "openai/gpt-4o"),
     "catalog: model id or alias 'openai/gpt-4o' is defined twice"),
    (_set("model", []), "catalog: top level: unknown key 'model' (known: models, providers)"),
    (_set("providers.oai.base_ulr", "http://x"),
     "catalog: providers.oai: unknown key 'base_ulr' (known: api_key_env, base_url, "
     "collects_data, currency, headers, jurisdiction, reasoning_format, "
     "send_nonstandard_params, type)"),
    (_set("providers.demo.word_delay_s", 1),
     "catalog: providers.demo: unknown key 'word_delay_s' (known: api_key_env, base_url, "
     "collects_data, currency, headers, jurisdiction, type, word_delay)"),
    (_set("models.1.alias", ["d"]),
     "catalog: models[1]: unknown key 'alias' (known: aliases, created, deployments, description, "
     "id, limits, name)"),
    (_set("models.0.limits", {"tokens_per_hour": 5}), "catalog: models[0].limits: unknown key "
     "'tokens_per_hour' (known: tokens_per_day, tokens_per_minute, tokens_per_request)"),
    (_set("models.0.limits", 4000), "catalog: models[0].limits must be a table, got 4000"),
    (_set("models.0.limits", {"tokens_per_minute": 0}),
     "catalog: models[0].limits.tokens_per_minute must be an integer >= 1, got 0"),
    (_set("models.0.limits", {"tokens_per_request": "4000"}),
     "catalog: models[0].limits.tokens_per_request must be an integer >= 1, got '4000'"),
    (_set(f"{D0}.context_window", 8), "catalog: models[0].deployments[0]: unknown key "
     "'context_window' (known: capabilities, collects_data, context_length, currency, id, "
     "max_completion_tokens, parameters, price, provider, upstream_model, weight)"),
    (_set(f"{D0}.currency", "US$"), "catalog: models[0].deployments[0].currency must be an ISO "
     "4217 currency code such as \"USD\", got 'US$'"),
    (_set("providers.oai.currency", 840), "catalog: providers.oai.currency must be an ISO 4217 "
     "currency code such as \"USD\", got 840"),
    (_set(f"{D0}.price.output", "1"), "catalog: models[0].deployments[0].price: unknown key "
     "'output' (known: cache_read, cache_write, completion, prompt, reasoning)"),
])
def test_config_errors_name_their_place(mutate: Mutation, message: str) -> None:
    data = copy.deepcopy(VALID)
    mutate(data)
    with pytest.raises(ConfigError) as info:
        parse(data, {**ENV, "EMPTY_KEY": ""})
    assert str(info.value) == message


@pytest.mark.parametrize(("mutate", "place"), [
    (_set("models.0.aliases", "gpt-4o"), "models[0].aliases"),
    (_set(f"{D0}.context_length", "128k"), "models[0].deployments[0].context_length"),
    (_set(f"{D0}.max_completion_tokens", "lots"), "models[0].deployments[0].max_completion_tokens"),
    (_set(f"{D0}.price", "150"), "models[0].deployments[0].price"),
    (_set("providers.oai.headers", "X-Title: xrouter"), "providers.oai.headers"),
])
def test_mistyped_values_are_config_errors_too(mutate: Mutation, place: str) -> None:
    data = copy.deepcopy(VALID)
    mutate(data)
    with pytest.raises(ConfigError) as info:
        parse(data, ENV)
    assert place in str(info.value)


VALID_TOML = """
[providers.oai]
type = "openai"
base_url = "http://127.0.0.1:9/v1"
api_key_env = "OAI_KEY"

[[models]]
id = "m"
  [[models.deployments]]
  provider = "oai"
  price = { prompt = "0.5", completion = "1.5" }
"""


def test_load_reads_a_toml_file(tmp_path: Path) -> None:
    path = tmp_path / "catalog.toml"
    path.write_text(VALID_TOML, encoding="utf-8")
    config = load(path, ENV)
    assert config.providers == (ProviderConfig("oai", "openai", "http://127.0.0.1:9/v1", "sk-oai"),)
    (deployment,) = config.catalog.resolve("m").deployments
    assert deployment.price == Price(Decimal("0.5"), Decimal("1.5"))


def test_load_names_the_file_in_config_errors(tmp_path: Path) -> None:
    path = tmp_path / "catalog.toml"
    path.write_text(VALID_TOML, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load(path, {})
    assert str(info.value) == f"{path}: providers.oai: environment variable OAI_KEY is not set"


def test_load_names_the_file_table_and_key_of_an_unknown_key(tmp_path: Path) -> None:
    path = tmp_path / "catalog.toml"
    path.write_text(VALID_TOML.replace('  provider = "oai"', '  provider = "oai"\n  wieght = 2'),
                    encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load(path, ENV)
    assert str(info.value).startswith(
        f"{path}: models[0].deployments[0]: unknown key 'wieght' (known: ")


def test_each_adapter_reads_exactly_the_options_the_loader_accepts() -> None:
    package = Path(registry.__file__).parent
    for kind, module in registry.MODULES.items():
        source = package / f"{module}.py"
        files = [source] if source.exists() else sorted((package / module).glob("*.py"))
        read = {m for f in files
                for m in re.findall(r'config\.option\(\s*"([a-z_]+)"', f.read_text("utf-8"))}
        assert read == registry.OPTIONS[kind], kind


def test_load_refuses_invalid_toml(tmp_path: Path) -> None:
    path = tmp_path / "catalog.toml"
    path.write_text('[providers.oai\ntype = "openai"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load(path, ENV)
    assert str(info.value).startswith(f"catalog {path}: invalid TOML: ")
    assert "line 1" in str(info.value)


def test_load_of_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(ConfigError) as info:
        load(path, ENV)
    assert str(info.value) == f"catalog {path}: cannot read: No such file or directory"


def test_the_default_catalog_is_the_demo_model_alone() -> None:
    config = load(DEFAULT_CATALOG, {})
    assert config == CatalogConfig(
        (ProviderConfig("demo", "demo", options={"word_delay": 0.02}),), config.catalog)
    (demo,) = config.catalog.models
    assert (demo.id, demo.aliases, demo.price, demo.capabilities) == (
        "xrouter/demo", ("demo",), Price(), frozenset({"streaming", "tools", "json_mode"}))


def test_a_provider_without_base_url_uses_its_public_default() -> None:
    data = copy.deepcopy(VALID)
    del data["providers"]["oai"]["base_url"]
    config = parse(data, ENV)
    oai = next(p for p in config.providers if p.name == "oai")
    assert oai.base_url == ""
    assert oai.url("https://api.openai.com/v1") == "https://api.openai.com/v1"
