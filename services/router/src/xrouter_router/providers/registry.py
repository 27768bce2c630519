"""Provider types the catalog may name, and the module that builds each one.

Every adapter module exposes `build(config: ProviderConfig, session) -> ChatProvider`; modules
are imported on first use, so a deployment pays only for the adapters it configures.
"""

from __future__ import annotations

import importlib

from xrouter_router.domain.ports import ChatProvider
from xrouter_router.providers.config import ProviderConfig
from xrouter_router.providers.http1 import HttpClient

MODULES: dict[str, str] = {
    "demo": "demo",
    "openai": "openai",
    "gigachat": "gigachat",
    "yandexgpt": "yandexgpt",
    "anthropic": "anthropic",
    "gemini": "gemini",
}

# The options each type reads from its [providers.NAME] table besides type, api_key_env,
# base_url and headers; any other key is a mistake the catalog loader refuses.
OPTIONS: dict[str, frozenset[str]] = {
    "demo": frozenset({"word_delay"}),
    "openai": frozenset({"send_nonstandard_params", "reasoning_format"}),
    "gigachat": frozenset({"scope", "auth_url", "update_interval", "ca_bundle", "verify_ssl"}),
    "yandexgpt": frozenset({"folder_id", "auth", "embedding_concurrency", "api"}),
    "anthropic": frozenset({"version", "default_max_tokens"}),
    "gemini": frozenset({"api_version", "thought_signature"}),
}


def build_provider(config: ProviderConfig, session: HttpClient) -> ChatProvider:
    module = importlib.import_module(f"xrouter_router.providers.{MODULES[config.type]}")
    provider: ChatProvider = module.build(config, session)
    return provider
