"""The router's use cases: authenticate, plan, fail over, and account for one chat request."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass

from xrouter_router.domain import accounting
from xrouter_router.domain.catalog import Catalog
from xrouter_router.domain.errors import (
    AllAttemptsFailed,
    Attempt,
    UpstreamError,
    UpstreamTimeout,
    XRouterError,
)
from xrouter_router.domain.failover import Failover, close_stream
from xrouter_router.domain.observe import NullObserver, Observer
from xrouter_router.domain.ports import Authenticator, TokenCounter
from xrouter_router.domain.routing import Balancer, Candidate, Plan, embedding_plan, plan
from xrouter_router.domain.stats import InMemoryStats, StatsStore
from xrouter_router.domain.types import (
    ChatRequest,
    ChatResult,
    Delta,
    EmbeddingRequest,
    Embeddings,
    Served,
    StreamBatch,
    TokenCounts,
    Usage,
)

MIN_THROUGHPUT_WINDOW = 0.05


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One event of a served stream: `served` on the first, `end` on the last (possibly both)."""

    deltas: tuple[Delta, ...] = ()
    served: Served | None = None
    end: StreamEnd | None = None
    attempts: tuple[Attempt, ...] = ()


@dataclass(frozen=True, slots=True)
class StreamEnd:
    usage: Usage
    error: XRouterError | None = None


class ChatService:
    def __init__(
        self,
        catalog: Catalog,
        failover: Failover,
        auth: Authenticator,
        *,
        idle_timeout: float,
        stats: StatsStore | None = None,
        balancer: Balancer | None = None,
        counter: TokenCounter | None = None,
        observer: Observer | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._catalog = catalog
        self._failover = failover
        self._auth = auth
        self._idle_timeout = idle_timeout
        self._stats: StatsStore = stats or InMemoryStats()
        self._balancer = balancer or Balancer()
        self._counter: TokenCounter = counter or accounting.RatioCounter()
        self._observer: Observer = observer or NullObserver()
        self._wall = wall

    @property
    def catalog(self) -> Catalog:
        return self._catalog

    @property
    def stats(self) -> StatsStore:
        return self._stats

    async def route(self, request: ChatRequest, *, commit: bool) -> Plan:
        """The attempt plan for a request (commit=False: explain it without moving the
        balancer, so the next real request takes the route shown)."""
        ids = [d.id for name in (request.model, *request.fallback_models)
               for d in self._catalog.resolve(name).deployments] if self._known(request) else []
        snapshot = await self._stats.snapshot(ids)
        return plan(self._catalog, request, snapshot, now=self._wall(), policy=self._stats.policy,
                    balancer=self._balancer, commit=commit, explain=not commit)

    def _known(self, request: ChatRequest) -> bool:
        try:
            for name in (request.model, *request.fallback_models):
                self._catalog.resolve(name)
        except XRouterError:
            return False
        return True

    async def explain(self, api_key: str, request: ChatRequest) -> Plan:
        await self._auth.authenticate(api_key)
        return await self.route(request, commit=False)

    async def _estimate(self, request: ChatRequest, completion_text: str) -> TokenCounts:
        prompt = await self._counter.count([m.text() for m in request.messages])
        return TokenCounts(
            prompt=prompt + accounting.MESSAGE_OVERHEAD * len(request.messages),
            completion=await self._counter.count([completion_text]),
            estimated=True,
        )

    async def embed(self, api_key: str, request: EmbeddingRequest,
                    deadline: float | None) -> tuple[Served, Embeddings, Usage]:
        await self._auth.authenticate(api_key)
        model = self._catalog.resolve(request.model)
        snapshot = await self._stats.snapshot(d.id for d in model.deployments)
        candidates = embedding_plan(self._catalog, request.model, snapshot, now=self._wall(),
                                    policy=self._stats.policy)
        cand, result, _attempts = await self._failover.embed(candidates, request, deadline)
        tokens = result.usage or TokenCounts(prompt=await self._counter.count(request.inputs),
                                             estimated=True)
        return (_served(cand), result,
                Usage(tokens, accounting.price(tokens, cand.deployment.price)))

    def _failed(self, request: ChatRequest, error: XRouterError, *, streamed: bool) -> None:
        try:
            model = self._catalog.resolve(request.model).id
        except XRouterError:
            model = "unknown"
        attempts = len(error.attempts) if isinstance(error, AllAttemptsFailed) else 0
        self._observer.generation(model, "none", outcome=error.kind.value, streamed=streamed,
                                  attempts=attempts, usage=None)

    async def chat(self, api_key: str, request: ChatRequest, deadline: float | None) -> ChatResult:
        try:
            result = await self._chat(api_key, request, deadline)
        except XRouterError as exc:
            self._failed(request, exc, streamed=False)
            raise
        self._observer.generation(result.served.model, result.served.provider, outcome="success",
                                  streamed=False, attempts=len(result.attempts),
                                  usage=result.usage)
        return result

    async def _chat(self, api_key: str, request: ChatRequest, deadline: float | None) -> ChatResult:
        await self._auth.authenticate(api_key)
        route = await self.route(request, commit=True)
        cand, completion, attempts = await self._failover.complete(route.candidates, request,
                                                                   deadline)
        tokens = completion.usage or await self._estimate(request, completion.message.text())
        return ChatResult(
            served=_served(cand),
            completion=completion,
            usage=Usage(tokens, accounting.price(tokens, cand.deployment.price)),
            attempts=tuple(attempts),
        )

    async def stream(
        self, api_key: str, request: ChatRequest, deadline: float | None
    ) -> AsyncGenerator[StreamEvent, None]:
        """Raises before the first event (nothing sent yet); after it, errors end the stream
        in-band in StreamEnd.error and usage is always reported."""
        try:
            await self._auth.authenticate(api_key)
            route = await self.route(request, commit=True)
            opened = await self._failover.open_stream(route.candidates, request, deadline)
        except XRouterError as exc:
            self._failed(request, exc, streamed=True)
            raise
        started = time.monotonic()
        batches = 0
        acc = accounting.StreamAccumulator()
        usage: TokenCounts | None = None
        error: XRouterError | None = None
        batch: StreamBatch | None = opened.first
        served: Served | None = _served(opened.candidate)
        attempts: tuple[Attempt, ...] = tuple(opened.attempts)
        provider = opened.candidate.deployment.provider
        try:
            while batch is not None:
                for delta in batch.deltas:
                    acc.add(delta)
                usage = batch.usage or usage
                if batch.done:
                    break
                if batch.deltas:
                    yield StreamEvent(deltas=batch.deltas, served=served,
                                      attempts=attempts)
                    served, attempts = None, ()
                batch = await _next(opened.rest, self._idle_timeout, provider)
                batches += 1
        except UpstreamError as exc:
            error, batch = exc, None
            # A stream that breaks after its first byte is the deployment's failure too.
            dep = opened.candidate.deployment
            await self._stats.record(dep.id, dep.provider, ok=not exc.retryable, latency_ms=None,
                                     now=self._wall())
        finally:
            await close_stream(opened.rest)
        tokens = usage or await self._estimate(request, acc.completion_text())
        elapsed = time.monotonic() - started
        # Throughput needs tokens spread over time: an answer that came in one read says nothing.
        if error is None and tokens.completion and batches and elapsed >= MIN_THROUGHPUT_WINDOW:
            await self._stats.record_throughput(opened.candidate.deployment.id,
                                                tokens.completion / elapsed)
        end = StreamEnd(Usage(tokens, accounting.price(tokens, opened.candidate.deployment.price)),
                        error)
        served_by = opened.candidate
        self._observer.generation(served_by.model.id, served_by.deployment.provider,
                                  outcome="success" if error is None else "stream_error",
                                  streamed=True, attempts=len(opened.attempts), usage=end.usage)
        last = batch.deltas if batch is not None else ()
        yield StreamEvent(deltas=last, served=served, end=end, attempts=attempts)


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


