"""The one boundary where aiohttp's exceptions and upstream HTTP statuses become UpstreamErrors,
plus the pooled keep-alive client session every HTTP adapter shares."""

from __future__ import annotations

import math
from types import TracebackType
from typing import Any

import aiohttp
import orjson

from xrouter_router.domain.errors import (
    UpstreamAuthError,
    UpstreamBadResponse,
    UpstreamConnectError,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamServerError,
    UpstreamTimeout,
    UpstreamUnavailable,
)

_RAW_LIMIT = 2000


def new_session(*, connect_timeout: float, pool_size: int) -> aiohttp.ClientSession:
    """One pooled keep-alive session; per-attempt timeouts are enforced by the domain."""
    connector = aiohttp.TCPConnector(limit=pool_size, ttl_dns_cache=60, enable_cleanup_closed=True)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout)
    return aiohttp.ClientSession(
        connector=connector, timeout=timeout, json_serialize=lambda o: orjson.dumps(o).decode(),
        auto_decompress=True, raise_for_status=False,
    )


def raw_error(body: bytes) -> Any:
    """The provider's error body for error.metadata.raw: JSON when it is JSON, else short text."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return body[:_RAW_LIMIT].decode("utf-8", "replace")


def error_for_status(provider: str, status: int, body: bytes, retry_after: str | None,
                     message: str = "") -> UpstreamError:
    raw = raw_error(body)
    text = message or f"{provider} answered HTTP {status}"
    seconds = _seconds(retry_after)
    cls: type[UpstreamError]
    if status in (401, 403):
        cls = UpstreamAuthError
    elif status in (402, 404):
        # Our account at the provider is out of money, or the configured model is gone there:
        # a deployment problem, so another deployment may serve the request.
        cls = UpstreamUnavailable
    elif status == 429:
        cls = UpstreamRateLimited
    elif status in (408, 504):
        cls = UpstreamTimeout
    elif status >= 500:
        cls = UpstreamServerError
    else:
        cls = UpstreamRejected
    return cls(text, provider=provider, status=status, raw=raw, retry_after=seconds)


_MAX_RETRY_AFTER = 3600.0


def _seconds(value: str | None) -> float:
    try:
        seconds = float(value) if value else 0.0
    except ValueError:
        return 0.0
    return min(max(seconds, 0.0), _MAX_RETRY_AFTER) if math.isfinite(seconds) else 0.0


class upstream_errors:  # noqa: N801 - used as a context manager, reads like a statement
    """`with upstream_errors(name):` turns aiohttp/socket failures into UpstreamErrors."""

    __slots__ = ("_provider",)

    def __init__(self, provider: str) -> None:
        self._provider = provider

    def __enter__(self) -> None:
        return None

    def __exit__(self, et: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc is None or isinstance(exc, UpstreamError):
            return
        p = self._provider
        if isinstance(exc, aiohttp.ClientPayloadError):
            raise UpstreamBadResponse(f"{p} cut the response short", provider=p) from exc
        if isinstance(exc, aiohttp.ServerTimeoutError | aiohttp.ConnectionTimeoutError):
            raise UpstreamTimeout(f"{p} timed out", provider=p) from exc
        if isinstance(exc, aiohttp.ClientConnectionError | ConnectionError):
            raise UpstreamConnectError(f"could not reach {p}: {type(exc).__name__}",
                                       provider=p) from exc
        if isinstance(exc, aiohttp.ClientResponseError | aiohttp.InvalidURL):
            raise UpstreamBadResponse(f"{p} sent an invalid HTTP response", provider=p) from exc
        if isinstance(exc, orjson.JSONDecodeError | KeyError | TypeError | ValueError
                      | AttributeError):
            raise UpstreamBadResponse(f"{p} sent a body that is not its wire format",
                                      provider=p) from exc


def not_json_object(provider: str) -> UpstreamBadResponse:
    return UpstreamBadResponse(f"{provider} sent a body that is not a JSON object", provider=provider)
