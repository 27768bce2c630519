"""The one boundary where aiohttp's exceptions and upstream HTTP statuses become UpstreamErrors,
the pooled keep-alive client session every HTTP adapter shares, and the request plumbing the
adapters share: POST and check the status, read a body as it arrives."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, TypeVar

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
from xrouter_router.providers.sse import SSEDecoder, SSEEvent

_RAW_LIMIT = 2000

_T = TypeVar("_T")
StatusError = Callable[[str, int, bytes, str | None], UpstreamError]
"""What a non-200 answer means: (provider, status, body, Retry-After) -> the error to raise."""


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


def json_object(provider: str, data: Any) -> dict[str, Any]:
    """`data` if it is a JSON object, else the UpstreamBadResponse saying it is not."""
    if not isinstance(data, dict):
        raise not_json_object(provider)
    return data


def nested_object(value: Any) -> dict[str, Any]:
    """`value` if it is a JSON object; a TypeError, which the boundary reports as a body not in
    the provider's wire format, if not."""
    if not isinstance(value, dict):
        raise TypeError(f"expected a JSON object, got {type(value).__name__}")
    return value


def incomplete_stream(provider: str) -> UpstreamBadResponse:
    return UpstreamBadResponse(f"{provider} stream ended before it was complete", provider=provider)


class Upstream:
    """One provider's HTTP side, for its adapter to compose: the shared session, the headers
    every request carries, what a non-200 answer means, and the provider's name for errors."""

    __slots__ = ("_headers", "_session", "_status_error", "provider")

    def __init__(self, provider: str, session: aiohttp.ClientSession, headers: Mapping[str, str],
                 *, status_error: StatusError = error_for_status) -> None:
        self.provider = provider
        self._session = session
        self._headers = headers
        self._status_error = status_error

    @asynccontextmanager
    async def open(self, url: str, body: bytes, *, headers: Mapping[str, str] | None = None,
                   content_types: tuple[str, ...] = ()) -> AsyncIterator[aiohttp.ClientResponse]:
        """The 200 answer to POST `body` (with `headers` besides the usual ones), read inside
        the `async with`, which is inside the boundary: what goes wrong while reading and
        parsing becomes an UpstreamError too. Another status raises the status error; a content
        type outside `content_types` (when given) is an UpstreamBadResponse."""
        p = self.provider
        sent = {**self._headers, **headers} if headers else self._headers
        with upstream_errors(p):
            async with self._session.post(url, data=body, headers=sent) as resp:
                if resp.status != 200:
                    raw = await resp.read()
                    raise self._status_error(p, resp.status, raw, resp.headers.get("Retry-After"))
                if content_types and resp.content_type not in content_types:
                    raise UpstreamBadResponse(f"{p} answered a stream request with {resp.content_type}",
                                              provider=p, raw=raw_error(await resp.read()))
                yield resp

    async def post_json(self, url: str, body: bytes, parse: Callable[[Any], _T], *,
                        headers: Mapping[str, str] | None = None) -> _T:
        """POST `body` and `parse` the JSON of the 200 answer, inside the boundary."""
        async with self.open(url, body, headers=headers) as resp:
            return parse(orjson.loads(await resp.read()))


async def read_chunks(resp: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    """The body as it arrives: each chunk is all readany() had buffered, so what arrived
    together travels on together (that is where per-message overhead is saved). When the
    connection breaks mid-body, what came with the break is passed on before the
    ClientPayloadError is raised again, for the boundary to report."""
    while True:
        try:
            data = await resp.content.readany()
        except aiohttp.ClientPayloadError:
            leftover = _buffered_leftover(resp.content)
            if leftover:
                yield leftover
            raise
        if not data:
            return
        yield data


async def read_events(resp: aiohttp.ClientResponse, provider: str) -> AsyncIterator[list[SSEEvent]]:
    """The SSE events of each chunk that completes any. A body that ends inside an event is an
    incomplete stream."""
    decoder = SSEDecoder()
    async for data in read_chunks(resp):
        events = decoder.feed(data)
        if events:
            yield events
    if decoder.pending():
        raise incomplete_stream(provider)


def _buffered_leftover(reader: aiohttp.StreamReader) -> bytes:
    """Bytes aiohttp received but had not handed out when the payload failed (its reader
    raises before returning them). Reads a private attribute, so it degrades to nothing."""
    buffer = getattr(reader, "_buffer", None)
    try:
        return b"".join(bytes(chunk) for chunk in buffer) if buffer else b""
    except TypeError:
        return b""
