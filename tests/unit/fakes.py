"""In-memory ChatProvider fakes (one with embeddings) and a hand-driven clock for failover and
service tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from xrouter_router.domain.catalog import Deployment
from xrouter_router.domain.errors import UpstreamError
from xrouter_router.domain.types import (
    ChatRequest,
    Completion,
    EmbeddingRequest,
    Embeddings,
    Message,
    StreamBatch,
)

HELLO = Completion(Message(role="assistant", content="hello there"), "stop")
VECTORS = Embeddings(((0.5, -0.25), (1.0, 0.0)))


class Clock:
    """A monotonic clock that moves only when told to."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeProvider:
    """Answers `completion`, or raises `error`, after `delay` seconds of real time (and after
    advancing `clock` by `elapsed`); streams `batches` `gap` seconds apart, raising
    `stream_error` after them."""

    def __init__(
        self,
        name: str,
        *,
        completion: Completion = HELLO,
        error: UpstreamError | None = None,
        delay: float = 0.0,
        batches: Sequence[StreamBatch] = (),
        stream_error: UpstreamError | None = None,
        clock: Clock | None = None,
        elapsed: float = 0.0,
        gap: float = 0.0,
    ) -> None:
        self._name = name
        self._completion = completion
        self._error = error
        self._delay = delay
        self._batches = tuple(batches)
        self._stream_error = stream_error
        self._clock = clock
        self._elapsed = elapsed
        self._gap = gap
        self.calls: list[str] = []
        self.streams_closed = 0

    @property
    def name(self) -> str:
        return self._name

    async def _wait(self) -> None:
        if self._clock is not None:
            self._clock.now += self._elapsed
        if self._delay:
            await asyncio.sleep(self._delay)

    async def chat(self, request: ChatRequest, deployment: Deployment) -> Completion:
        self.calls.append(deployment.id)
        await self._wait()
        if self._error is not None:
            raise self._error
        return self._completion

    async def stream(self, request: ChatRequest, deployment: Deployment) -> AsyncIterator[StreamBatch]:
        self.calls.append(deployment.id)
        try:
            await self._wait()
            if self._error is not None:
                raise self._error
            for i, batch in enumerate(self._batches):
                if i and self._gap:
                    await asyncio.sleep(self._gap)
                yield batch
            if self._stream_error is not None:
                raise self._stream_error
        finally:
            self.streams_closed += 1

    async def close(self) -> None:
        return None


class FakeEmbedder(FakeProvider):
    """A FakeProvider that also offers embeddings: answers `embeddings`, or raises `error`."""

    def __init__(self, name: str, *, embeddings: Embeddings = VECTORS, error: UpstreamError | None = None,
                 clock: Clock | None = None, elapsed: float = 0.0,
                 batches: Sequence[StreamBatch] = ()) -> None:
        super().__init__(name, error=error, clock=clock, elapsed=elapsed, batches=batches)
        self._embeddings = embeddings

    async def embed(self, request: EmbeddingRequest, deployment: Deployment) -> Embeddings:
        self.calls.append(deployment.id)
        await self._wait()
        if self._error is not None:
            raise self._error
        return self._embeddings
