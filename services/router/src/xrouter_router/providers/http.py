"""The one boundary where the HTTP client's exceptions and upstream HTTP statuses become
UpstreamErrors, the pooled keep-alive client every HTTP adapter shares, and the request plumbing
the adapters share: POST and check the status, read a body as it arrives."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, TypeVar

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
from xrouter_router.providers.http1 import HttpClient, Response
from xrouter_router.providers.http1_wire import (
    BadResponse,
    BodyCut,
    ConnectFailed,
    ConnectTimeout,
    Disconnected,
)
from xrouter_router.providers.sse import SSEDecoder, SSEEvent

_RAW_LIMIT = 2000

_T = TypeVar("_T")
StatusError = Callable[[str, int, bytes, str | None], UpstreamError]
"""What a non-200 answer means: (provider, status, body, Retry-After) -> the error to raise."""


def new_session(*, connect_timeout: float, pool_size: int) -> HttpClient:
    """One pooled keep-alive client; per-attempt timeouts are enforced by the domain."""
    return HttpClient(connect_timeout=connect_timeout, pool_size=pool_size)


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
    """`with upstream_errors(name):` turns the HTTP client's and socket failures into
    UpstreamErrors."""

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
        if isinstance(exc, BodyCut):
            raise UpstreamBadResponse(f"{p} cut the response short", provider=p) from exc
        if isinstance(exc, ConnectTimeout):
            raise UpstreamTimeout(f"{p} timed out", provider=p) from exc
        if isinstance(exc, ConnectFailed | Disconnected | ConnectionError):
            reason = type(exc.__cause__ or exc).__name__
            raise UpstreamConnectError(f"could not reach {p}: {reason}", provider=p) from exc
        if isinstance(exc, BadResponse):
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

    def __init__(self, provider: str, session: HttpClient, headers: Mapping[str, str],
                 *, status_error: StatusError = error_for_status) -> None:
        self.provider = provider
        self._session = session
        self._headers = headers
        self._status_error = status_error

    @asynccontextmanager
    async def open(self, url: str, body: bytes, *, headers: Mapping[str, str] | None = None,
                   content_types: tuple[str, ...] = ()) -> AsyncIterator[Response]:
        """The 200 answer to POST `body` (with `headers` besides the usual ones), read inside
        the `async with`, which is inside the boundary: what goes wrong while reading and
        parsing becomes an UpstreamError too. Another status raises the status error; a content
        type outside `content_types` (when given) is an UpstreamBadResponse."""
        p = self.provider
        sent = {**self._headers, **headers} if headers else self._headers
        with upstream_errors(p):
            async with self._session.post(url, body, sent) as resp:
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


async def read_chunks(resp: Response) -> AsyncIterator[bytes]:
    """The body as it arrives: each chunk is all that had arrived, so what arrived together
    travels on together (that is where per-message overhead is saved). When the connection
    breaks mid-body, what came before the break is passed on before BodyCut is raised, for the
    boundary to report."""
    while data := await resp.readany():
        yield data


async def read_events(resp: Response, provider: str) -> AsyncIterator[list[SSEEvent]]:
    """The SSE events of each chunk that completes any. A body that ends inside an event is an
    incomplete stream."""
    decoder = SSEDecoder()
    async for data in read_chunks(resp):
        events = decoder.feed(data)
        if events:
            yield events
    if decoder.pending():
        raise incomplete_stream(provider)
