"""What the catalog file says about one provider: the adapter's whole configuration."""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from xrouter_common.env import ConfigError


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    """One configured upstream account. `api_key` was read from the environment variable
    `api_key_env` names; `options` holds every other key of the [providers.NAME] table."""

    name: str
    type: str
    base_url: str = ""
    api_key: str = field(default="", repr=False)
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    options: Mapping[str, Any] = field(default_factory=dict)

    def option(self, key: str, default: Any, kind: builtins.type | tuple[builtins.type, ...]) -> Any:
        """An option of the expected type, or a ConfigError naming it."""
        value = self.options.get(key, default)
        if not isinstance(value, kind) or (isinstance(value, bool) and kind in (int, float)):
            raise ConfigError(f"providers.{self.name}.{key} has the wrong type: {value!r}")
        return value

    def url(self, default: str) -> str:
        """The base URL, or the provider's public default, without a trailing slash."""
        base = self.base_url or default
        if not base.startswith(("http://", "https://")):
            raise ConfigError(f"providers.{self.name}.base_url must be an http(s) URL")
        return base.rstrip("/")
