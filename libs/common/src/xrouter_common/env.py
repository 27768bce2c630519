"""Typed readers for XROUTER_* environment variables that fail with the variable's name."""

from __future__ import annotations

import os
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


def _get(env: Mapping[str, str] | None, name: str) -> str | None:
    value = (os.environ if env is None else env).get(name)
    return value if value not in (None, "") else None


def env_str(name: str, default: str, env: Mapping[str, str] | None = None) -> str:
    value = _get(env, name)
    return default if value is None else value


def env_int(name: str, default: int, env: Mapping[str, str] | None = None, *, minimum: int = 0) -> int:
    value = _get(env, name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {value!r}") from None
    if number < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {number}")
    return number


def env_float(name: str, default: float, env: Mapping[str, str] | None = None, *,
              minimum: float = 0.0) -> float:
    value = _get(env, name)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {value!r}") from None
    if number < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {number}")
    return number


def env_decimal(name: str, default: Decimal, env: Mapping[str, str] | None = None, *,
                minimum: Decimal = Decimal(0)) -> Decimal:
    """An exact decimal (money): no float on the way."""
    value = _get(env, name)
    if value is None:
        return default
    try:
        number = Decimal(value.strip())
    except InvalidOperation:
        raise ConfigError(f"{name} must be a decimal number, got {value!r}") from None
    if not number.is_finite() or number < minimum:
        raise ConfigError(f"{name} must be a finite number of at least {minimum}, got {value!r}")
    return number


def env_bool(name: str, default: bool, env: Mapping[str, str] | None = None) -> bool:
    value = _get(env, name)
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {value!r}")
