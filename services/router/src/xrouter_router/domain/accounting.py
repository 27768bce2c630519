"""Token accounting: pricing, local estimates when a provider reports nothing, and joining
streamed deltas (content by choice, tool calls by index) into the whole answer."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from decimal import ROUND_HALF_EVEN, Decimal

from xrouter_router.domain.catalog import Price
from xrouter_router.domain.types import Delta, Message, TokenCounts, ToolCall

_MILLION = Decimal(1_000_000)
# Costs are kept to 1e-8 RUB (a millionth of a kopeck): exact sums, no float drift.
COST_QUANTUM = Decimal("0.00000001")


def price(tokens: TokenCounts, rate: Price) -> Decimal:
    cost = (tokens.prompt * rate.prompt + tokens.completion * rate.completion) / _MILLION
    return cost.quantize(COST_QUANTUM, rounding=ROUND_HALF_EVEN)


class RatioCounter:
    """The fallback TokenCounter: about 4 characters per token (no data needed)."""

    async def count(self, texts: Sequence[str]) -> int:
        return sum(estimate_tokens(t) for t in texts)


# Chat templates add role markers: a few tokens per message on top of its text.
MESSAGE_OVERHEAD = 4


def estimate_tokens(text: str) -> int:
    """A provider-neutral estimate (about 4 characters per token, at least 1 for any text)."""
    return math.ceil(len(text) / 4) if text else 0


def estimate_prompt(messages: Iterable[Message]) -> int:
    # 4 tokens of framing per message, as chat templates add role markers.
    return sum(4 + estimate_tokens(m.text()) for m in messages)


class StreamAccumulator:
    """Joins a stream's deltas into the final message of each choice."""

    def __init__(self) -> None:
        self._content: dict[int, list[str]] = {}
        self._calls: dict[int, dict[int, list[str]]] = {}
        self._call_ids: dict[tuple[int, int], tuple[str, str]] = {}
        self.finish_reason: dict[int, str] = {}

    def add(self, delta: Delta) -> None:
        if delta.content:
            self._content.setdefault(delta.index, []).append(delta.content)
        for call in delta.tool_calls:
            self._add_call(delta.index, call)
        if delta.finish_reason:
            self.finish_reason[delta.index] = delta.finish_reason

    def _add_call(self, choice: int, call: ToolCall) -> None:
        parts = self._calls.setdefault(choice, {}).setdefault(call.index, [])
        parts.append(call.arguments)
        key = (choice, call.index)
        old_id, old_name = self._call_ids.get(key, ("", ""))
        self._call_ids[key] = (call.id or old_id, call.name or old_name)

    def message(self, choice: int = 0) -> Message:
        content = "".join(self._content.get(choice, ()))
        calls = tuple(
            ToolCall(index=i, id=self._call_ids[(choice, i)][0],
                     name=self._call_ids[(choice, i)][1], arguments="".join(parts))
            for i, parts in sorted(self._calls.get(choice, {}).items())
        )
        return Message(role="assistant", content=content or (None if calls else ""),
                       tool_calls=calls)

    def completion_text(self) -> str:
        texts = ["".join(parts) for parts in self._content.values()]
        texts += ["".join(p) for calls in self._calls.values() for p in calls.values()]
        return "".join(texts)
