"""The built-in demo model: deterministic answers, streamed word by word, no account needed.

It lets `make run` answer out of the box and gives tests a provider with known output.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from xrouter_router.domain import accounting
from xrouter_router.domain.catalog import Deployment
from xrouter_router.domain.types import (
    ChatRequest,
    Completion,
    Delta,
    Message,
    StreamBatch,
    TokenCounts,
)
from xrouter_router.providers.config import ProviderConfig

_QUOTE_LIMIT = 200


def reply_words(request: ChatRequest) -> list[str]:
    """The demo's answer, as words: a greeting that quotes the last user message."""
    said = next((m.text() for m in reversed(request.messages) if m.role == "user"), "")
    said = " ".join(said.split())
    if len(said) > _QUOTE_LIMIT:
        said = said[:_QUOTE_LIMIT] + "..."
    text = f"Hello from the XRouter demo model! You said: \u00ab{said}\u00bb"
    return text.split(" ")


class DemoProvider:
    def __init__(self, name: str, *, word_delay: float = 0.02) -> None:
        self._name = name
        self._delay = word_delay

    @property
    def name(self) -> str:
        return self._name

    async def close(self) -> None:
        return None

    def _plan(self, request: ChatRequest) -> tuple[list[str], str, TokenCounts]:
        words = reply_words(request)
        finish = "stop"
        limit = request.sampling.max_tokens
        if limit is not None and len(words) > limit:
            words, finish = words[:limit], "length"
        # The demo's "tokenizer" counts words, as its answer is counted.
        prompt = sum(accounting.MESSAGE_OVERHEAD + len(m.text().split()) for m in request.messages)
        usage = TokenCounts(prompt=prompt, completion=len(words))
        return words, finish, usage

    async def chat(self, request: ChatRequest, deployment: Deployment) -> Completion:
        words, finish, usage = self._plan(request)
        return Completion(Message(role="assistant", content=" ".join(words)), finish, usage)

    async def stream(self, request: ChatRequest, deployment: Deployment) -> AsyncIterator[StreamBatch]:
        words, finish, usage = self._plan(request)
        for i, word in enumerate(words):
            if i:
                await asyncio.sleep(self._delay)
            text = word if i == 0 else " " + word
            yield StreamBatch((Delta(role="assistant" if i == 0 else "", content=text),))
        yield StreamBatch((Delta(finish_reason=finish),), usage, done=True)


def build(config: ProviderConfig, session: object) -> DemoProvider:
    return DemoProvider(config.name, word_delay=float(config.option("word_delay", 0.02, (int, float))))
