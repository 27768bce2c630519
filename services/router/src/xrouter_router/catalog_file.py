"""Loads the catalog TOML file: provider definitions (credentials from environment variables
only) and models with their deployments. Every mistake is a ConfigError naming its place; an
unknown key anywhere is one too (a mistyped option must not be dropped without a word)."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from xrouter_common.env import ConfigError
from xrouter_router.domain import fx, residency
from xrouter_router.domain.catalog import (
    CAPABILITIES,
    NO_LIMITS,
    Catalog,
    Deployment,
    Model,
    ModelLimits,
    Price,
)
from xrouter_router.providers.config import ProviderConfig
from xrouter_router.providers.registry import MODULES, OPTIONS

_TOP = frozenset({"providers", "models"})
_PROVIDER = frozenset({"type", "api_key_env", "base_url", "headers", "jurisdiction",
                       "currency", "collects_data"})
_MODEL = frozenset({"id", "name", "description", "created", "aliases", "deployments",
                    "limits"})
_LIMITS = frozenset({"tokens_per_request", "tokens_per_minute", "tokens_per_day"})
_DEPLOYMENT = frozenset({"id", "provider", "upstream_model", "price", "context_length",
                         "max_completion_tokens", "capabilities", "weight", "parameters",
                         "collects_data", "currency"})
_PRICE = frozenset({"prompt", "completion", "cache_read", "cache_write", "reasoning"})


def _known(table: Mapping[str, Any], keys: frozenset[str], here: str) -> None:
    """A ConfigError naming the first key of `table` that is not one of `keys`."""
    for key in table:
        if key not in keys:
            raise ConfigError(f"{here}: unknown key {key!r} (known: {', '.join(sorted(keys))})")


@dataclass(frozen=True, slots=True)
class CatalogConfig:
    providers: tuple[ProviderConfig, ...]
    catalog: Catalog


def load(path: Path, env: Mapping[str, str] | None = None) -> CatalogConfig:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"catalog {path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"catalog {path}: invalid TOML: {exc}") from None
    return parse(data, os.environ if env is None else env, where=str(path))


def parse(data: Mapping[str, Any], env: Mapping[str, str], where: str = "catalog") -> CatalogConfig:
    _known(data, _TOP, f"{where}: top level")
    raw_providers = data.get("providers") or {}
    if not isinstance(raw_providers, dict) or not raw_providers:
        raise ConfigError(f"{where}: [providers] must define at least one provider")
    providers = tuple(_provider(name, spec, env, where) for name, spec in raw_providers.items())
    names = {p.name: _Origin(_jurisdiction(p.name, raw_providers[p.name], where),
                             _currency(raw_providers[p.name], f"{where}: providers.{p.name}",
                                       fx.RUB),
                             _bool(raw_providers[p.name].get("collects_data", False),
                                   f"{where}: providers.{p.name}.collects_data"))
             for p in providers}
    raw_models = data.get("models") or []
    if not isinstance(raw_models, list) or not raw_models:
        raise ConfigError(f"{where}: [[models]] must define at least one model")
    models = [_model(i, spec, names, where) for i, spec in enumerate(raw_models)]
    try:
        catalog = Catalog(models)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return CatalogConfig(providers, catalog)


def _provider(name: str, spec: Any, env: Mapping[str, str], where: str) -> ProviderConfig:
    here = f"{where}: providers.{name}"
    if not isinstance(spec, dict):
        raise ConfigError(f"{here} must be a table")
    kind = spec.get("type")
    if kind not in MODULES:
        raise ConfigError(f"{here}.type must be one of {sorted(MODULES)}, got {kind!r}")
    api_key = ""
    key_env = spec.get("api_key_env")
    if key_env:
        api_key = env.get(str(key_env), "")
        if not api_key:
            raise ConfigError(f"{here}: environment variable {key_env} is not set")
    if "api_key" in spec:
        raise ConfigError(f"{here}: put credentials in an environment variable (api_key_env)")
    _known(spec, _PROVIDER | OPTIONS[kind], here)
    base_url = str(spec.get("base_url", ""))
    if base_url and not base_url.startswith(("http://", "https://")):
        raise ConfigError(f"{here}.base_url must be an http(s) URL")
    headers = _table(spec.get("headers", {}), f"{here}.headers")
    options = {k: v for k, v in spec.items()
               if k not in _PROVIDER}
    return ProviderConfig(name, kind, base_url, api_key, {str(k): str(v) for k, v in headers.items()},
                          options)


def _jurisdiction(name: str, spec: Mapping[str, Any], where: str) -> str:
    """The provider's country: `jurisdiction` when set, else its type's default (Russian types
    "ru"), else "" (unknown: never counts as "ru")."""
    if "jurisdiction" not in spec:
        return residency.TYPE_JURISDICTIONS.get(str(spec.get("type")), "")
    try:
        return residency.jurisdiction(spec["jurisdiction"])
    except ValueError as exc:
        raise ConfigError(f"{where}: providers.{name}.jurisdiction {exc}") from None


@dataclass(frozen=True, slots=True)
class _Origin:
    """What a provider gives its deployments: its jurisdiction, its prices' currency, and
    whether it keeps or trains on data (each deployment may say otherwise)."""

    jurisdiction: str
    currency: str
    collects_data: bool = False


def _currency(spec: Mapping[str, Any], here: str, default: str) -> str:
    """The table's `currency` (ISO 4217, upper case), else `default`."""
    if "currency" not in spec:
        return default
    try:
        return fx.currency(spec["currency"])
    except ValueError as exc:
        raise ConfigError(f"{here}.currency {exc}") from None


def _int(value: Any, here: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{here} must be an integer >= {minimum}, got {value!r}")
    return value


def _bool(value: Any, here: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{here} must be true or false, got {value!r}")
    return value


def _number(value: Any, here: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ConfigError(f"{here} must be a non-negative number, got {value!r}")
    return float(value)


def _strings(value: Any, here: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{here} must be a list of non-empty strings, got {value!r}")
    return tuple(value)


def _table(value: Any, here: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{here} must be a table, got {value!r}")
    return value


def _decimal(value: Any, here: str) -> Decimal:
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise ConfigError(f"{here} must be a decimal number, got {value!r}") from None
    if not number.is_finite() or number < 0:
        raise ConfigError(f"{here} must be a non-negative decimal, got {value!r}")
    return number


def _model(i: int, spec: Any, providers: Mapping[str, _Origin], where: str) -> Model:
    here = f"{where}: models[{i}]"
    if not isinstance(spec, dict) or not spec.get("id"):
        raise ConfigError(f"{here} must be a table with an id")
    model_id = str(spec["id"])
    _known(spec, _MODEL, here)
    deployments = spec.get("deployments") or []
    if not deployments:
        raise ConfigError(f"{here} ({model_id}) has no [[models.deployments]]")
    return Model(
        id=model_id,
        name=str(spec.get("name", model_id)),
        description=str(spec.get("description", "")),
        created=_int(spec.get("created", 0), f"{here}.created"),
        aliases=_strings(spec.get("aliases", []), f"{here}.aliases"),
        deployments=tuple(_deployment(f"{here}.deployments[{j}]", model_id, d, providers)
                          for j, d in enumerate(deployments)),
        limits=_limits(spec.get("limits", {}), f"{here}.limits"),
    )


def _limits(value: Any, here: str) -> ModelLimits:
    """The model's token limits, each optional (a positive integer); none: NO_LIMITS."""
    table = _table(value, here)
    _known(table, _LIMITS, here)
    if not table:
        return NO_LIMITS
    def optional(name: str) -> int | None:
        return None if name not in table else _int(table[name], f"{here}.{name}", 1)

    return ModelLimits(optional("tokens_per_request"), optional("tokens_per_minute"),
                       optional("tokens_per_day"))


def _price(table: dict[str, Any], here: str) -> Price:
    """prompt and completion (0 when left out); cache_read, cache_write and reasoning default to
    the prompt / completion price (None) when left out."""
    def optional(name: str) -> Decimal | None:
        return None if table.get(name) is None else _decimal(table[name], f"{here}.{name}")

    return Price(_decimal(table.get("prompt", 0), f"{here}.prompt"),
                 _decimal(table.get("completion", 0), f"{here}.completion"),
                 cache_read=optional("cache_read"), cache_write=optional("cache_write"),
                 reasoning=optional("reasoning"))


def _deployment(here: str, model_id: str, spec: Any,
                providers: Mapping[str, _Origin]) -> Deployment:
    if not isinstance(spec, dict):
        raise ConfigError(f"{here} must be a table")
    _known(spec, _DEPLOYMENT, here)
    provider = spec.get("provider")
    if provider not in providers:
        raise ConfigError(f"{here}.provider {provider!r} is not defined under [providers]")
    caps = frozenset(_strings(spec.get("capabilities", ["streaming"]), f"{here}.capabilities"))
    if not caps <= CAPABILITIES:
        raise ConfigError(f"{here}.capabilities: unknown {sorted(caps - CAPABILITIES)}")
    price = _table(spec.get("price", {}), f"{here}.price")
    _known(price, _PRICE, f"{here}.price")
    origin = providers[str(provider)]
    return Deployment(
        id=str(spec.get("id", f"{model_id}@{provider}")),
        provider=str(provider),
        upstream_model=str(spec.get("upstream_model", model_id)),
        price=_price(price, f"{here}.price"),
        context_length=_int(spec.get("context_length", 8192), f"{here}.context_length", 1),
        max_completion_tokens=_int(spec.get("max_completion_tokens", 4096),
                                   f"{here}.max_completion_tokens", 1),
        capabilities=caps,
        weight=_number(spec.get("weight", 1.0), f"{here}.weight"),
        parameters=frozenset(_strings(spec.get("parameters", []), f"{here}.parameters")),
        collects_data=_bool(spec.get("collects_data", origin.collects_data),
                            f"{here}.collects_data"),
        jurisdiction=origin.jurisdiction,
        currency=_currency(spec, here, origin.currency),
    )
