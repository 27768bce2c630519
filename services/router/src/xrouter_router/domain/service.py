"""The router's use cases: authenticate, plan, fail over, and account for one chat request."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace

from xrouter_router.domain import accounting, fx
from xrouter_router.domain.billing import (
    IMAGE_TOKENS,
    Admission,
    Bill,
    Billing,
    Outcome,
    Unbilled,
    chat_bill,
    embedding_bill,
    prompt_bound,
)
from xrouter_router.domain.catalog import Catalog
from xrouter_router.domain.errors import (
    AllAttemptsFailed,
    Attempt,
    BudgetExhausted,
    InvalidRequest,
    UpstreamError,
    UpstreamTimeout,
    XRouterError,
)
from xrouter_router.domain.failover import Failover, OpenedStream, close_stream
from xrouter_router.domain.keys import ApiKey
from xrouter_router.domain.limits import Fitted, any_limits, fit
from xrouter_router.domain.observe import NullObserver, Observer
from xrouter_router.domain.pii.guard import Guarded, PiiGuard, sent
from xrouter_router.domain.pii.stream import DeltaRestorer
from xrouter_router.domain.ports import Authenticator, TokenCounter
from xrouter_router.domain.routing import Balancer, Candidate, Plan, embedding_plan, plan
from xrouter_router.domain.stats import InMemoryStats, StatsStore
from xrouter_router.domain.sticky import StickyRoutes, prefix_key
from xrouter_router.domain.structured import answer_check
from xrouter_router.domain.types import (
    ChatRequest,
    ChatResult,
    Delta,
    EmbeddingRequest,
    Embeddings,
    RateWindow,
    Served,
    StreamBatch,
    TokenCounts,
    Usage,
)

MIN_THROUGHPUT_WINDOW = 0.05
log = logging.getLogger("xrouter.router.usage")


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One event of a served stream: `served` on the first, `end` on the last (possibly both)."""

    deltas: tuple[Delta, ...] = ()
    served: Served | None = None
    end: StreamEnd | None = None
    attempts: tuple[Attempt, ...] = ()
    rate_limit: RateWindow | None = None


@dataclass(frozen=True, slots=True)
class _Admissible:
    """A request ready for admission: the key, the candidates that fit and their plan, the bill
    (its prompt bound covering the masked request too) and the masked request, if any."""

    key: ApiKey
    fitted: Fitted
    route: Plan
    bill: Bill
    guarded: Guarded[ChatRequest] | None


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
        billing: Billing | Unbilled | None = None,
        wall: Callable[[], float] = time.time,
        sticky: StickyRoutes | None = None,
        guard: PiiGuard | None = None,
        prices: fx.FxPrices | None = None,
    ) -> None:
        # The catalog priced in RUB at the rates in force (domain/fx.py): one snapshot a request.
        self._prices = prices or fx.FxPrices(catalog)
        self._failover = failover
        self._auth = auth
        self._idle_timeout = idle_timeout
        self._stats: StatsStore = stats or InMemoryStats()
        self._balancer = balancer or Balancer()
        self._counter: TokenCounter = counter or accounting.Utf8BoundCounter()
        self._observer: Observer = observer or NullObserver()
        self._billing: Billing | Unbilled = billing or Unbilled()
        self._wall = wall
        self._sticky = sticky if sticky is not None else StickyRoutes()
        self._guard = guard or PiiGuard()

    @property
    def catalog(self) -> Catalog:
        """The catalog as priced now (every price in RUB, unpriced deployments marked)."""
        return self._prices.catalog(self._wall())

    @property
    def stats(self) -> StatsStore:
        return self._stats

    async def route(self, request: ChatRequest, *, commit: bool, residency: str = "") -> Plan:
        """The attempt plan for a request under a key's residency policy (commit=False: explain
        it without moving the balancer, so the next real request takes the route shown). A
        prompt prefix served a moment ago goes back to the deployment that served it
        (domain/sticky.py)."""
        catalog = self.catalog
        ids = [d.id for name in (request.model, *request.fallback_models)
               for d in catalog.resolve(name).deployments] if _known(catalog, request) else []
        snapshot = await self._stats.snapshot(ids)
        now = self._wall()
        route = plan(catalog, request, snapshot, now=now, policy=self._stats.policy,
                     balancer=self._balancer, commit=commit, explain=not commit,
                     residency=residency)
        prefix = prefix_key(request) if self._sticky.enabled else None
        if prefix is None:
            return route
        if len(route.candidates) < 2:
            return replace(route, affinity=prefix)
        unhealthy = {i for i, s in snapshot.items() if s.health(now, self._stats.policy) != "healthy"}
        healthy = {c.deployment.id for c in route.candidates} - unhealthy
        preferred = self._sticky.prefer(prefix, route.candidates, healthy)
        if preferred == route.candidates:
            return replace(route, affinity=prefix)
        return replace(route, candidates=preferred, strategy="sticky", affinity=prefix)

    async def explain(self, api_key: str, request: ChatRequest, *, address: str = "") -> Plan:
        key = await self._auth.authenticate(api_key, address)
        return await self.route(request, commit=False, residency=key.residency_policy[0])

    async def _estimate(self, request: ChatRequest, completion_text: str) -> TokenCounts:
        prompt = await self._counter.count([m.text() for m in request.messages])
        return TokenCounts(
            prompt=prompt + accounting.MESSAGE_OVERHEAD * len(request.messages),
            completion=await self._counter.count([completion_text]),
            estimated=True,
        )

    def _vetted(self, reported: TokenCounts | None, cand: Candidate, *, bound: int,
                max_completion: int) -> TokenCounts | None:
        """The provider's counts when they can be true; None when there are none or when they
        cannot (a provider error: counted, logged, and the caller charges its estimate)."""
        if reported is None:
            return None
        flaw = accounting.implausible(reported, prompt_bound=bound, max_completion=max_completion)
        if not flaw:
            return reported
        provider = cand.deployment.provider
        log.warning("provider %s reported implausible usage (%s): %s; charging the estimate",
                    provider, flaw, reported)
        self._observer.implausible_usage(provider, flaw)
        return None

    async def _tokens(self, request: ChatRequest, held: Admission, cand: Candidate,
                      reported: TokenCounts | None, completion_text: str) -> TokenCounts:
        """The provider's counts when plausible against the admission's prompt bound (computed
        once, for the bill), else the estimate."""
        vetted = self._vetted(reported, cand, bound=held.prompt_tokens,
                              max_completion=cand.deployment.max_completion_tokens)
        return vetted or await self._estimate(request, completion_text)

    async def embed(self, api_key: str, request: EmbeddingRequest, deadline: float | None, *,
                    address: str = "") -> tuple[Served, Embeddings, Usage]:
        """Admitted, charged and recorded like chat: reserved from an upper bound of the input,
        charged by the provider's usage (estimated when it reports none)."""
        key = await self._auth.authenticate(api_key, address)
        catalog = self.catalog
        model = catalog.resolve(request.model)
        key.may_use(model.id)
        snapshot = await self._stats.snapshot(d.id for d in model.deployments)
        candidates = embedding_plan(catalog, request.model, snapshot, now=self._wall(),
                                    policy=self._stats.policy,
                                    residency=key.residency_policy[0])
        generation_id = request.generation_id or _generation_id()
        counted = await self._counter.count(request.inputs) if any_limits(candidates) else 0
        fitted = fit(candidates, counted, 0)
        guarded = await self._guard.prepare_embedding(key.pii_policy, request, fitted.candidates)
        # Reserved for the larger of the inputs and their masked form (placeholders may be longer).
        bill = embedding_bill(request, generation_id)
        if guarded is not None:
            bill = max(bill, embedding_bill(guarded.masked, generation_id),
                       key=lambda b: b.prompt_tokens)
        async with self._billing.admit(key, bill, [c.deployment for c in fitted.candidates],
                                       fitted.asks) as held:
            cand, result, attempts = await self._failover.embed(
                held, held.candidates(fitted.candidates), request, deadline, guarded)
            inputs = sent(request, guarded, cand).inputs
            bound = sum(accounting.utf8_bound(i) + accounting.MESSAGE_OVERHEAD for i in inputs)
            tokens = self._vetted(result.usage, cand, bound=bound, max_completion=0) or \
                TokenCounts(prompt=await self._counter.count(inputs), estimated=True)
            usage = held.priced(tokens, cand.deployment)
            served = _served(cand)
            await held.conclude(Outcome(served, usage, "success", "", tuple(attempts),
                                        _latency(attempts)))
        return served, result, usage

    def _failed(self, request: ChatRequest, error: XRouterError, *, streamed: bool) -> None:
        try:
            model = self.catalog.resolve(request.model).id
        except XRouterError:
            model = "unknown"
        attempts = len(error.attempts) if isinstance(error, AllAttemptsFailed) else 0
        self._observer.generation(model, "none", outcome=error.kind.value, streamed=streamed,
                                  attempts=attempts, usage=None)

    async def chat(self, api_key: str, request: ChatRequest, deadline: float | None, *,
                   address: str = "") -> ChatResult:
        """`address`: the client's, as the gateway saw it (empty: unknown)."""
        try:
            result = await self._chat(api_key, request, deadline, address)
        except XRouterError as exc:
            self._failed(request, exc, streamed=False)
            raise
        self._observer.generation(result.served.model, result.served.provider, outcome="success",
                                  streamed=False, attempts=len(result.attempts),
                                  usage=result.usage)
        return result

    async def _admitted_route(self, api_key: str, address: str, request: ChatRequest,
                              bill: Bill) -> _Admissible:
        """The key, the plan's candidates that fit their models' token limits, and the plan;
        every candidate the plan may try is one the key may use. The key's personal-data guard
        acts here, before admission: a blocked request reserves and records nothing."""
        key = await self._auth.authenticate(api_key, address)
        route = await self.route(request, commit=True, residency=key.residency_policy[0])
        for cand in route.candidates:
            key.may_use(cand.model.id)
        prompt = await self._limit_tokens(request) if any_limits(route.candidates) else 0
        fitted = fit(route.candidates, prompt, bill.completion_tokens)
        guarded = await self._guard.prepare(key.pii_policy, request, fitted.candidates)
        if guarded is not None:
            # Placeholders may be longer than the values they replace (a short name).
            bill = replace(bill, prompt_tokens=max(bill.prompt_tokens,
                                                   prompt_bound(guarded.masked)))
        return _Admissible(key, fitted, route, bill, guarded)

    async def conclude_orphan(self, api_key: str, request: ChatRequest, deployment_id: str,
                              relayed: str, finish_reason: str, *,
                              address: str = "") -> Usage | None:
        """Billing.conclude_orphan, the prompt and relayed text counted with our tokenizer."""
        key = await self._auth.authenticate(api_key, address)
        if not request.generation_id:
            raise InvalidRequest("The generation id is missing", param="generation_id")
        model, dep = self.catalog.serving((request.model, *request.fallback_models),
                                          deployment_id)
        key.may_use(model.id)
        if isinstance(self._billing, Unbilled):
            return None
        tokens = TokenCounts(await self._limit_tokens(request),
                             await self._counter.count([relayed]), estimated=True)
        usage = await self._billing.conclude_orphan(
            key, chat_bill(request, stream=True), _served(Candidate(model, dep)), dep, tokens,
            finish_reason=finish_reason)
        if usage is not None:
            self._observer.generation(model.id, dep.provider, outcome="router_lost",
                                      streamed=True, attempts=0, usage=usage)
        return usage

    async def _limit_tokens(self, request: ChatRequest) -> int:
        """The prompt's tokens as models' token limits count them: the bundled tokenizer's count
        of its texts and tool definitions (the reservation's UTF-8 byte bound would overcount
        English about fourfold and refuse requests that fit), plus each message's overhead
        and each image's allowance. Held against the windows, then settled to the real usage."""
        texts = [m.text() for m in request.messages]
        texts += [f"{t.name} {t.description} {t.parameters_json.decode(errors='replace')}"
                  for t in request.tools]
        images = sum(1 for m in request.messages for p in m.parts if p.type == "image_url")
        return (await self._counter.count(texts)
                + accounting.MESSAGE_OVERHEAD * len(request.messages) + IMAGE_TOKENS * images)

    async def _chat(self, api_key: str, request: ChatRequest, deadline: float | None,
                    address: str) -> ChatResult:
        ready = await self._admitted_route(api_key, address, request,
                                           chat_bill(request, stream=False))
        fitted, guarded = ready.fitted, ready.guarded
        check = answer_check(request)
        async with self._billing.admit(ready.key, ready.bill,
                                       [c.deployment for c in fitted.candidates],
                                       fitted.asks) as held:
            cand, completion, attempts = await self._failover.complete(
                held, held.candidates(fitted.candidates), request, deadline, check,
                caps=fitted.caps, guarded=guarded)
            self._sticky.remember(ready.route.affinity, cand.deployment.id)
            # Counted as the provider got it and wrote it; the client gets the values back.
            tokens = await self._tokens(sent(request, guarded, cand), held, cand,
                                        completion.usage, completion.message.text())
            if guarded is not None and guarded.masks(cand):
                completion = guarded.restore(completion)
            result = ChatResult(
                served=_served(cand),
                completion=completion,
                usage=held.priced(tokens, cand.deployment),
                attempts=tuple(attempts),
                rate_limit=held.window,
            )
            await held.conclude(Outcome(result.served, result.usage, "success",
                                        completion.finish_reason, result.attempts,
                                        _latency(attempts)))
        return result

    async def stream(
        self, api_key: str, request: ChatRequest, deadline: float | None, *, address: str = ""
    ) -> AsyncGenerator[StreamEvent, None]:
        """Raises before the first event (nothing sent yet); after it, errors end the stream
        in-band in StreamEnd.error and usage is always reported."""
        streaming = False
        try:
            check = answer_check(request)
            bill = chat_bill(request, stream=True, buffered=check is not None)
            ready = await self._admitted_route(api_key, address, request, bill)
            fitted, guarded = ready.fitted, ready.guarded
            async with self._billing.admit(ready.key, ready.bill,
                                           [c.deployment for c in fitted.candidates],
                                           fitted.asks) as held:
                opened = await self._failover.open_stream(
                    held, held.candidates(fitted.candidates), request, deadline, check,
                    caps=fitted.caps, guarded=guarded)
                streaming = True
                self._sticky.remember(ready.route.affinity, opened.candidate.deployment.id)
                relay = self._relay(request, opened, held, guarded)
                try:
                    async for event in relay:
                        yield event
                finally:
                    await relay.aclose()  # closing early must close the upstream stream now
        except XRouterError as exc:
            if not streaming:
                self._failed(request, exc, streamed=True)
            raise

    async def _conclude_cancelled(self, request: ChatRequest, opened: OpenedStream,
                                  held: Admission, acc: accounting.StreamAccumulator,
                                  usage: TokenCounts | None) -> None:
        tokens = await self._tokens(request, held, opened.candidate, usage,
                                    acc.completion_text())
        priced = held.priced(tokens, opened.candidate.deployment)
        if held.reservation is not None:
            priced = priced.capped(held.reservation.amount)
        cand = opened.candidate
        self._observer.generation(cand.model.id, cand.deployment.provider, outcome="cancelled",
                                  streamed=True, attempts=len(opened.attempts), usage=priced)
        await held.conclude(Outcome(_served(cand), priced, "cancelled", "cancelled",
                                    tuple(opened.attempts), _latency(opened.attempts)))

    async def _conclude(self, request: ChatRequest, opened: OpenedStream,
                        held: Admission, acc: accounting.StreamAccumulator, *,
                        usage: TokenCounts | None, error: XRouterError | None, spread: bool,
                        elapsed: float) -> StreamEnd:
        """Usage, statistics, metrics and billing of a stream that ended (not cancelled)."""
        tokens = await self._tokens(request, held, opened.candidate, usage,
                                    acc.completion_text())
        cand = opened.candidate
        # Throughput needs tokens spread over time: an answer that came in one read says nothing.
        if error is None and tokens.completion and spread:
            await self._stats.record_throughput(cand.deployment.id, tokens.completion / elapsed)
        priced = held.priced(tokens, cand.deployment)
        if isinstance(error, BudgetExhausted) and held.reservation is not None:
            # Cut when the money ran out: it costs at most what was reserved.
            priced = priced.capped(held.reservation.amount)
        end = StreamEnd(priced, error)
        status = "success" if error is None else (
            "budget_exhausted" if isinstance(error, BudgetExhausted) else "stream_error")
        self._observer.generation(cand.model.id, cand.deployment.provider, outcome=status,
                                  streamed=True, attempts=len(opened.attempts), usage=end.usage)
        await held.conclude(Outcome(
            _served(cand), end.usage, status,
            next(iter(acc.finish_reason.values()), "length" if error else ""),
            tuple(opened.attempts), _latency(opened.attempts)))
        return end

    async def _relay(self, request: ChatRequest, opened: OpenedStream, held: Admission,
                     guarded: Guarded[ChatRequest] | None) -> AsyncGenerator[StreamEvent, None]:
        """Pass the opened stream on (the personal data restored in a masked attempt's);
        account for it as the provider sent it; end it in-band on errors or when the money runs
        out; always end with usage."""
        request = sent(request, guarded, opened.candidate)
        restorer = (DeltaRestorer(guarded.masking.mapping)
                    if guarded is not None and guarded.masks(opened.candidate) else None)
        started = time.monotonic()
        batches = 0
        acc = accounting.StreamAccumulator()
        usage: TokenCounts | None = None
        error: XRouterError | None = None
        batch: StreamBatch | None = opened.first
        served: Served | None = _served(opened.candidate)
        attempts: tuple[Attempt, ...] = tuple(opened.attempts)
        window = held.window
        dep = opened.candidate.deployment
        try:
            while batch is not None:
                for delta in batch.deltas:
                    acc.add(delta)
                usage = batch.usage or usage
                if batch.done and served is None and batches:
                    break  # a later read's last deltas travel with the end: one event fewer
                if batch.deltas:
                    out = batch.deltas if restorer is None else restorer.feed(batch.deltas)
                    yield StreamEvent(deltas=out, served=served, attempts=attempts,
                                      rate_limit=window)
                    served, attempts, window = None, (), None
                if batch.done:
                    # An answer that came in one read: its deltas went out above, so that its
                    # first token does not wait for the conclusion (the record's commit).
                    batch = None
                    break
                if not await held.extend(acc.bytes):
                    error = BudgetExhausted()
                    batch = StreamBatch((Delta(finish_reason="length"),))
                    break
                batches += 0 if batch.head else 1  # reads after the first
                batch = await _next(opened.rest, self._idle_timeout, dep.provider)
        except UpstreamError as exc:
            error, batch = exc, None
            # A stream that breaks after its first byte is the deployment's failure too.
            await self._stats.record(dep.id, dep.provider, ok=not exc.retryable, latency_ms=None,
                                     now=self._wall())
        except (GeneratorExit, asyncio.CancelledError):
            # The client went away: close upstream, then bill what was generated so far.
            await close_stream(opened.rest)
            await self._conclude_cancelled(request, opened, held, acc, usage)
            raise
        finally:
            await close_stream(opened.rest)
        # A replayed stream's pace is the client's, not the provider's: no throughput from it.
        spread = (batches > 0 and not opened.replayed
                  and time.monotonic() - started >= MIN_THROUGHPUT_WINDOW)
        end = await self._conclude(request, opened, held, acc, usage=usage, error=error,
                                   spread=spread, elapsed=time.monotonic() - started)
        last = batch.deltas if batch is not None else ()
        if restorer is not None:
            last = restorer.finish(last)
        yield StreamEvent(deltas=last, served=served, end=end, attempts=attempts,
                          rate_limit=window)


def _known(catalog: Catalog, request: ChatRequest) -> bool:
    try:
        for name in (request.model, *request.fallback_models):
            catalog.resolve(name)
    except XRouterError:
        return False
    return True


async def _next(stream: AsyncIterator[StreamBatch], idle: float, provider: str) -> StreamBatch | None:
    try:
        async with asyncio.timeout(idle):
            return await anext(stream)
    except StopAsyncIteration:
        return None
    except TimeoutError:
        raise UpstreamTimeout(f"{provider} sent nothing for {idle:g}s", provider=provider) from None


def _served(cand: Candidate) -> Served:
    return Served(cand.model.id, cand.deployment.provider, cand.deployment.id, int(time.time()),
                  cand.deployment.jurisdiction)


def _latency(attempts: Sequence[Attempt]) -> int:
    return attempts[-1].latency_ms if attempts else 0


def _generation_id() -> str:
    return "gen-" + os.urandom(12).hex()


