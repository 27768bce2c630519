"""The narrow protocols the domain needs from the outside world, implemented by adapters."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol, runtime_checkable

from xrouter_router.domain.auth import Principal
from xrouter_router.domain.catalog import Deployment
from xrouter_router.domain.types import (
    ChatRequest,
    Completion,
    EmbeddingRequest,
    Embeddings,
    StreamBatch,
)


class ChatProvider(Protocol):
    """One configured upstream (an account at a provider). Errors raised are UpstreamError."""

    @property
    def name(self) -> str: ...

    async def chat(self, request: ChatRequest, deployment: Deployment) -> Completion:
        """One whole completion."""
        ...

    def stream(self, request: ChatRequest, deployment: Deployment) -> AsyncIterator[StreamBatch]:
        """The completion as batches of deltas; the last batch has done=True when the
        provider signalled the end. Closing the iterator early closes the upstream request."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class EmbeddingProvider(Protocol):
    """An optional capability of a provider adapter: text embeddings."""

    async def embed(self, request: EmbeddingRequest, deployment: Deployment) -> Embeddings: ...


class TokenCounter(Protocol):
    """Counts tokens locally, for providers that report no usage."""

    async def count(self, texts: Sequence[str]) -> int: ...


class Authenticator(Protocol):
    """Turns an API key into a principal, or raises Unauthenticated."""

    async def authenticate(self, api_key: str) -> Principal: ...

