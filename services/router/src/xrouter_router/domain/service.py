"""The router's use cases: authenticate, plan, fail over, and account for one chat request."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass

from xrouter_router.domain import accounting
from xrouter_router.domain.catalog import Catalog
from xrouter_router.domain.errors import UpstreamError, UpstreamTimeout, XRouterError
from xrouter_router.domain.failover import Failover, close_stream
from xrouter_router.domain.ports import Authenticator
from xrouter_router.domain.routing import Candidate, plan
from xrouter_router.domain.types import (
    ChatRequest,
    ChatResult,
    Delta,
    Served,
    StreamBatch,
    TokenCounts,
    Usage,
)


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One event of a served stream: `served` on the first, `end` on the last (possibly both)."""

    deltas: tuple[Delta, ...] = ()
    served: Served | None = None
    end: StreamEnd | None = None


@dataclass(frozen=True, slots=True)
class StreamEnd:
    usage: Usage
    error: XRouterError | None = None


class ChatService:
    def __init__(
        self, catalog: Catalog, failover: Failover, auth: Authenticator, idle_timeout: float
    ) -> None:
        self._catalog = catalog
        self._failover = failover
        self._auth = auth
        self._idle_timeout = idle_timeout

    @property
    def catalog(self) -> Catalog:
        return self._catalog

    async def chat(self, api_key: str, request: ChatRequest, deadline: float | None) -> ChatResult:
        await self._auth.authenticate(api_key)
        candidates = plan(self._catalog, request)
        cand, completion, _attempts = await self._failover.complete(candidates, request, deadline)
        tokens = completion.usage or _estimate(request, completion.message.text())
        return ChatResult(
            served=_served(cand),
            completion=completion,
            usage=Usage(tokens, accounting.price(tokens, cand.deployment.price)),
        )

    async def stream(
        self, api_key: str, request: ChatRequest, deadline: float | None
    ) -> AsyncGenerator[StreamEvent, None]:
        """Raises before the first event (nothing sent yet); after it, errors end the stream
        in-band in StreamEnd.error and usage is always reported."""
        await self._auth.authenticate(api_key)
        candidates = plan(self._catalog, request)
        opened = await self._failover.open_stream(candidates, request, deadline)
        acc = accounting.StreamAccumulator()
        usage: TokenCounts | None = None
        error: XRouterError | None = None
        batch: StreamBatch | None = opened.first
        served: Served | None = _served(opened.candidate)
        provider = opened.candidate.deployment.provider
        try:
            while batch is not None:
                for delta in batch.deltas:
                    acc.add(delta)
                usage = batch.usage or usage
                if batch.done:
                    break
                if batch.deltas:
                    yield StreamEvent(deltas=batch.deltas, served=served)
                    served = None
                batch = await _next(opened.rest, self._idle_timeout, provider)
        except UpstreamError as exc:
            error, batch = exc, None
        finally:
            await close_stream(opened.rest)
        tokens = usage or _estimate(request, acc.completion_text())
        end = StreamEnd(Usage(tokens, accounting.price(tokens, opened.candidate.deployment.price)),
                        error)
        last = batch.deltas if batch is not None else ()
        yield StreamEvent(deltas=last, served=served, end=end)


async def _next(stream: AsyncIterator[StreamBatch], idle: float, provider: str) -> StreamBatch | None:
    try:
        async with asyncio.timeout(idle):
            return await anext(stream)
    except StopAsyncIteration:
        return None
    except TimeoutError:
        raise UpstreamTimeout(f"{provider} sent nothing for {idle:g}s", provider=provider) from None


def _served(cand: Candidate) -> Served:
    return Served(cand.model.id, cand.deployment.provider, cand.deployment.id, int(time.time()))


def _estimate(request: ChatRequest, completion_text: str) -> TokenCounts:
    return TokenCounts(
        prompt=accounting.estimate_prompt(request.messages),
        completion=accounting.estimate_tokens(completion_text),
        estimated=True,
    )
