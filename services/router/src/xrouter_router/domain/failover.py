"""Ordered failover across a plan's candidates, before the first byte and never after.

Each attempt gets min(attempt timeout, time left before the caller's deadline). A retryable
UpstreamError moves on to the next candidate; anything else ends the request at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass

from xrouter_router.domain.errors import (
    AllAttemptsFailed,
    Attempt,
    DeadlineExceeded,
    UpstreamBadResponse,
    UpstreamError,
    UpstreamTimeout,
)
from xrouter_router.domain.health import ProviderHealth
from xrouter_router.domain.ports import ChatProvider
from xrouter_router.domain.routing import Candidate
from xrouter_router.domain.types import ChatRequest, Completion, StreamBatch


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


class Failover:
    def __init__(
        self,
        providers: Mapping[str, ChatProvider],
        policy: FailoverPolicy,
        health: ProviderHealth,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._providers = providers
        self._policy = policy
        self._health = health
        self._clock = clock

    def _timeout(self, deadline: float | None) -> float:
        if deadline is None:
            return self._policy.attempt_timeout
        left = deadline - self._clock()
        if left <= 0:
            raise DeadlineExceeded("The request's deadline passed before a provider answered")
        return min(self._policy.attempt_timeout, left)

    def _record(self, attempts: list[Attempt], cand: Candidate, started: float,
                error: UpstreamError | None) -> None:
        ms = int((self._clock() - started) * 1000)
        dep = cand.deployment
        # A rejection of the request itself (not retryable) says nothing bad about the provider.
        self._health.record(dep.provider, error is None or not error.retryable)
        if error is None:
            attempts.append(Attempt(cand.model.id, dep.provider, dep.id, "success", ms))
        else:
            attempts.append(Attempt(cand.model.id, dep.provider, dep.id, error.reason, ms,
                                    error.message, error.status))

    async def complete(
        self, plan: Sequence[Candidate], request: ChatRequest, deadline: float | None
    ) -> tuple[Candidate, Completion, list[Attempt]]:
        attempts: list[Attempt] = []
        last: UpstreamError | None = None
        for cand in plan[: self._policy.max_attempts]:
            timeout = self._timeout(deadline)
            provider = self._providers[cand.deployment.provider]
            started = self._clock()
            try:
                async with asyncio.timeout(timeout):
                    completion = await provider.chat(request, cand.deployment)
            except TimeoutError:
                last = UpstreamTimeout(f"{provider.name} did not answer within {timeout:g}s",
                                       provider=provider.name)
            except UpstreamError as exc:
                last = exc
            else:
                self._record(attempts, cand, started, None)
                return cand, completion, attempts
            self._record(attempts, cand, started, last)
            if not last.retryable:
                raise last
        raise AllAttemptsFailed(attempts, last)

    async def open_stream(
        self, plan: Sequence[Candidate], request: ChatRequest, deadline: float | None
    ) -> OpenedStream:
        attempts: list[Attempt] = []
        last: UpstreamError | None = None
        for cand in plan[: self._policy.max_attempts]:
            timeout = self._timeout(deadline)
            provider = self._providers[cand.deployment.provider]
            stream = provider.stream(request, cand.deployment)
            started = self._clock()
            try:
                async with asyncio.timeout(timeout):
                    first = await anext(stream)
            except TimeoutError:
                last = UpstreamTimeout(f"{provider.name} sent nothing within {timeout:g}s",
                                       provider=provider.name)
            except StopAsyncIteration:
                last = UpstreamBadResponse(f"{provider.name} ended the stream without data",
                                           provider=provider.name)
            except UpstreamError as exc:
                last = exc
            else:
                self._record(attempts, cand, started, None)
                return OpenedStream(cand, first, stream, attempts)
            await close_stream(stream)
            self._record(attempts, cand, started, last)
            if not last.retryable:
                raise last
        raise AllAttemptsFailed(attempts, last)


async def close_stream(stream: AsyncIterator[StreamBatch]) -> None:
    """Close a provider stream early, which closes its upstream connection."""
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()
