"""Ordered failover across a plan's candidates, before the first byte and never after.

Each attempt gets min(attempt timeout, time left before the caller's deadline). A retryable
UpstreamError moves on to the next candidate; anything else ends the request at once. A request
with a response_format has each answer checked (domain/structured.py) before it counts as one:
a streamed one is read whole first, so nothing of a non-conforming answer reaches the client.

No provider call goes out without a live admission (domain/billing.py): every entry point takes
the `Admission` the call is made under, and each attempt checks that it is still live, was
priced for the attempt's deployment and holds tokens in the windows of the deployment's model
(when it has token limits), so a caller cannot reach a provider around the money path.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

from xrouter_router.domain.billing import Admission
from xrouter_router.domain.errors import (
    AllAttemptsFailed,
    Attempt,
    DeadlineExceeded,
    InternalError,
    UpstreamBadResponse,
    UpstreamError,
    UpstreamTimeout,
    attempts_metadata,
)
from xrouter_router.domain.observe import NullObserver, NullTracer, Observer, SpanLike, Tracer
from xrouter_router.domain.pii.guard import Guarded, sent
from xrouter_router.domain.ports import ChatProvider, EmbeddingProvider
from xrouter_router.domain.routing import Candidate
from xrouter_router.domain.stats import StatsStore
from xrouter_router.domain.structured import AnswerCheck
from xrouter_router.domain.types import (
    ChatRequest,
    Completion,
    EmbeddingRequest,
    Embeddings,
    Message,
    StreamBatch,
)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class FailoverPolicy:
    attempt_timeout: float = 60.0
    max_attempts: int = 5


@dataclass(slots=True)
class OpenedStream:
    """A stream whose first batch has arrived: from here on there is no failover."""

    candidate: Candidate
    first: StreamBatch
    rest: AsyncIterator[StreamBatch]
    attempts: list[Attempt]
    # Read whole and checked before it opened: the rest comes from memory, at the client's pace.
    replayed: bool = False


class Failover:
    def __init__(
        self,
        providers: Mapping[str, ChatProvider],
        policy: FailoverPolicy,
        stats: StatsStore,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        observer: Observer | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self._providers = providers
        self._policy = policy
        self._stats = stats
        self._clock = clock
        self._wall = wall
        self._observer: Observer = observer or NullObserver()
        self._tracer: Tracer = tracer or NullTracer()

    def _timeout(self, deadline: float | None, attempts: Sequence[Attempt]) -> float:
        if deadline is None:
            return self._policy.attempt_timeout
        left = deadline - self._clock()
        if left <= 0:
            raise DeadlineExceeded("The request's deadline passed before a provider answered",
                                   metadata=attempts_metadata(attempts))
        return min(self._policy.attempt_timeout, left)

    async def _record(self, attempts: list[Attempt], cand: Candidate, started: float,
                      error: UpstreamError | None) -> None:
        elapsed = (self._clock() - started) * 1000
        ms = int(elapsed)
        dep = cand.deployment
        # A rejection of the request itself (not retryable) says nothing bad about the provider.
        now = self._wall()
        await self._stats.record(dep.id, dep.provider, ok=error is None or not error.retryable,
                                 latency_ms=elapsed if error is None else None, now=now)
        current = (await self._stats.snapshot((dep.id,))).get(dep.id)
        self._observer.attempt(dep, "success" if error is None else error.reason, elapsed / 1000,
                               current.health(now, self._stats.policy) if current else "healthy")
        if error is None:
            attempts.append(Attempt(cand.model.id, dep.provider, dep.id, "success", ms))
        else:
            attempts.append(Attempt(cand.model.id, dep.provider, dep.id, error.reason, ms,
                                    error.message, error.status))

    async def complete(
        self, held: Admission, plan: Sequence[Candidate], request: ChatRequest,
        deadline: float | None, check: AnswerCheck | None = None, *,
        caps: Mapping[str, int] | None = None, guarded: Guarded[ChatRequest] | None = None,
    ) -> tuple[Candidate, Completion, list[Attempt]]:
        """`caps`: the max_tokens to send each model named (limits.fit's, for a request that
        set none). `guarded`: the masked request, for the attempts its policy covers (the
        answer comes back masked: the caller restores it)."""
        async def call(provider: ChatProvider, cand: Candidate) -> Completion:
            completion = await provider.chat(capped(sent(request, guarded, cand), caps, cand),
                                             cand.deployment)
            if check is not None:
                check.check(provider.name, completion.message, completion.finish_reason)
            return completion

        return await self._run(held, plan, deadline, call, "did not answer")

    async def open_stream(
        self, held: Admission, plan: Sequence[Candidate], request: ChatRequest,
        deadline: float | None, check: AnswerCheck | None = None, *,
        caps: Mapping[str, int] | None = None, guarded: Guarded[ChatRequest] | None = None,
    ) -> OpenedStream:
        async def call(provider: ChatProvider,
                       cand: Candidate) -> tuple[StreamBatch, AsyncIterator[StreamBatch]]:
            stream = provider.stream(capped(sent(request, guarded, cand), caps, cand),
                                     cand.deployment)
            try:
                if check is not None:
                    return await _checked(provider.name, stream, check)
                return await anext(stream), stream
            except StopAsyncIteration:
                raise UpstreamBadResponse(f"{provider.name} ended the stream without data",
                                          provider=provider.name) from None
            except BaseException:
                await close_stream(stream)
                raise

        cand, (first, rest), attempts = await self._run(held, plan, deadline, call, "sent nothing")
        return OpenedStream(cand, first, rest, attempts, replayed=check is not None)

    async def embed(
        self, held: Admission, plan: Sequence[Candidate], request: EmbeddingRequest,
        deadline: float | None, guarded: Guarded[EmbeddingRequest] | None = None,
    ) -> tuple[Candidate, Embeddings, list[Attempt]]:
        async def call(provider: ChatProvider, cand: Candidate) -> Embeddings:
            if not isinstance(provider, EmbeddingProvider):
                raise UpstreamBadResponse(f"{provider.name} has no embeddings API",
                                          provider=provider.name)
            return await provider.embed(sent(request, guarded, cand), cand.deployment)

        return await self._run(held, plan, deadline, call, "did not answer")

    async def _run(
        self,
        held: Admission,
        plan: Sequence[Candidate],
        deadline: float | None,
        call: Callable[[ChatProvider, Candidate], Awaitable[T]],
        silence: str,
    ) -> tuple[Candidate, T, list[Attempt]]:
        """Try the candidates in order; the first success wins."""
        attempts: list[Attempt] = []
        last: UpstreamError | None = None
        for cand in plan[: self._policy.max_attempts]:
            if not held.permits(cand.deployment) or not held.admits(cand.model.id):
                raise InternalError(f"no live admission covers deployment {cand.deployment.id}")
            timeout = self._timeout(deadline, attempts)
            provider = self._providers[cand.deployment.provider]
            dep = cand.deployment
            with self._tracer.span("provider.attempt", {
                    "xrouter.model": cand.model.id, "xrouter.provider": dep.provider,
                    "xrouter.deployment": dep.id, "xrouter.upstream_model": dep.upstream_model,
            }) as span:
                started = self._clock()
                try:
                    async with asyncio.timeout(timeout):
                        result = await call(provider, cand)
                except TimeoutError:
                    last = UpstreamTimeout(f"{provider.name} {silence} within {timeout:.3g}s",
                                           provider=provider.name)
                except UpstreamError as exc:
                    last = exc
                else:
                    span.set_attribute("xrouter.outcome", "success")
                    _usage_attributes(span, result)
                    await self._record(attempts, cand, started, None)
                    return cand, result, attempts
                span.set_attribute("xrouter.outcome", last.reason)
                await self._record(attempts, cand, started, last)
            if not last.retryable:
                raise last
            if deadline is not None and self._clock() >= deadline:
                raise DeadlineExceeded("The request's deadline passed before a provider answered",
                                       metadata=attempts_metadata(attempts))
        raise AllAttemptsFailed(attempts, last)


def capped(request: ChatRequest, caps: Mapping[str, int] | None,
           cand: Candidate) -> ChatRequest:
    """The request as the candidate's model gets it: with the max_tokens its token limits
    leave, when there is a cap for it."""
    cap = caps.get(cand.model.id) if caps else None
    if cap is None:
        return request
    return replace(request, sampling=replace(request.sampling, max_tokens=cap))


async def _checked(provider: str, stream: AsyncIterator[StreamBatch],
                   check: AnswerCheck) -> tuple[StreamBatch, AsyncIterator[StreamBatch]]:
    """The whole stream read and checked (within the attempt's timeout, like a whole answer),
    then replayed: its first batch, and the rest from memory."""
    batches = [batch async for batch in stream]
    if not batches:
        raise UpstreamBadResponse(f"{provider} ended the stream without data", provider=provider)
    deltas = [d for b in batches for d in b.deltas if d.index == 0]
    content = "".join(d.content for d in deltas if d.content)
    calls = tuple(c for d in deltas for c in d.tool_calls)
    finish = next((d.finish_reason for d in reversed(deltas) if d.finish_reason), "")
    check.check(provider, Message(role="assistant", content=content, tool_calls=calls), finish)
    return batches[0], _replay(batches[1:])


async def _replay(batches: list[StreamBatch]) -> AsyncIterator[StreamBatch]:
    for batch in batches:
        yield batch


def _usage_attributes(span: SpanLike, result: object) -> None:
    usage = result.usage if isinstance(result, Completion) else None
    if usage is not None:
        span.set_attribute("xrouter.tokens.prompt", usage.prompt)
        span.set_attribute("xrouter.tokens.completion", usage.completion)


async def close_stream(stream: AsyncIterator[StreamBatch]) -> None:
    """Close a provider stream early, which closes its upstream connection."""
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()
