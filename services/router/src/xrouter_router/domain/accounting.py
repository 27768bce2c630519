"""Token accounting: pricing by usage bucket, the byte bound of a text, the plausibility of a
provider's counts, and joining streamed deltas (content and reasoning by choice, tool calls by
index) into the whole answer."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_HALF_EVEN, Decimal

from xrouter_router.domain.catalog import Price
from xrouter_router.domain.types import Delta, Message, TokenCounts, ToolCall, Usage

_MILLION = Decimal(1_000_000)
# Costs are kept to 1e-8 RUB (a millionth of a kopeck): exact sums, no float drift.
COST_QUANTUM = Decimal("0.00000001")


def _prompt_side(tokens: TokenCounts, rate: Price) -> Decimal:
    """The exact cost of the prompt's buckets: plain prompt, cache reads, cache writes."""
    plain = max(tokens.prompt - tokens.cached - tokens.cache_write, 0)
    return (plain * rate.prompt + tokens.cached * rate.cache_read_rate
            + tokens.cache_write * rate.cache_write_rate) / _MILLION


def _completion_side(tokens: TokenCounts, rate: Price) -> Decimal:
    plain = max(tokens.completion - tokens.reasoning, 0)
    return (plain * rate.completion + tokens.reasoning * rate.reasoning_rate) / _MILLION


def price(tokens: TokenCounts, rate: Price) -> Decimal:
    """The generation's cost: each bucket at its own price, summed exactly, rounded once (half
    to even) to COST_QUANTUM."""
    cost = _prompt_side(tokens, rate) + _completion_side(tokens, rate)
    return cost.quantize(COST_QUANTUM, rounding=ROUND_HALF_EVEN)


def usage(tokens: TokenCounts, rate: Price) -> Usage:
    """The tokens priced, with the prompt side's share of the cost (for cost_details)."""
    prompt = _prompt_side(tokens, rate).quantize(COST_QUANTUM, rounding=ROUND_HALF_EVEN)
    return Usage(tokens, price(tokens, rate), prompt_cost=prompt)


# Chat templates add role markers: a few tokens per message on top of its text.
MESSAGE_OVERHEAD = 4
# Reported prompts may exceed ten times their byte bound by this much (providers add hidden
# framing: a tool-use system prompt, safety preambles) before they are called implausible.
PROMPT_SLACK = 256


def utf8_bound(text: str) -> int:
    """The text's UTF-8 length: an upper bound of its tokens in any script, as every token of a
    byte-level BPE (or of a SentencePiece vocabulary with byte fallback) is at least one byte."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


class Utf8BoundCounter:
    """A TokenCounter that never undercounts: the texts' UTF-8 bytes. For a service built
    without the bundled tokenizer (the composition root always passes it)."""

    async def count(self, texts: Sequence[str]) -> int:
        return sum(utf8_bound(t) for t in texts)


def implausible(tokens: TokenCounts, *, prompt_bound: int, max_completion: int) -> str:
    """Why a provider's reported counts cannot be true ("" when they can): a negative count,
    buckets larger than what holds them, more completion tokens than the deployment may
    generate, or a prompt past ten times its byte bound (plus PROMPT_SLACK)."""
    if min(tokens.prompt, tokens.completion, tokens.cached, tokens.cache_write,
           tokens.reasoning) < 0:
        return "negative count"
    if tokens.cached + tokens.cache_write > tokens.prompt:
        return "cache buckets exceed the prompt"
    if tokens.reasoning > tokens.completion:
        return "reasoning exceeds the completion"
    if tokens.completion > max_completion:
        return "completion beyond the deployment's max_completion_tokens"
    if tokens.prompt > 10 * prompt_bound + PROMPT_SLACK:
        return "prompt beyond ten times its byte bound"
    return ""


class StreamAccumulator:
    """Joins a stream's deltas into the final message of each choice."""

    def __init__(self) -> None:
        self._content: dict[int, list[str]] = {}
        self._reasoning: dict[int, list[str]] = {}
        self._calls: dict[int, dict[int, list[str]]] = {}
        self._call_ids: dict[tuple[int, int], tuple[str, str]] = {}
        self.finish_reason: dict[int, str] = {}
        # The UTF-8 bound of everything generated so far (content, reasoning, tool arguments):
        # what a stream's budget counts.
        self.bytes = 0

    def add(self, delta: Delta) -> None:
        if delta.content:
            self._content.setdefault(delta.index, []).append(delta.content)
            self.bytes += utf8_bound(delta.content)
        if delta.reasoning:
            self._reasoning.setdefault(delta.index, []).append(delta.reasoning)
            self.bytes += utf8_bound(delta.reasoning)
        for call in delta.tool_calls:
            self._add_call(delta.index, call)
            self.bytes += utf8_bound(call.arguments)
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
        """Everything generated, reasoning included: what a missing usage is estimated from."""
        texts = ["".join(parts) for parts in self._reasoning.values()]
        texts += ["".join(parts) for parts in self._content.values()]
        texts += ["".join(p) for calls in self._calls.values() for p in calls.values()]
        return "".join(texts)
