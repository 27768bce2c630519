"""Admission and accounting around one generation: rate limits and a concurrency slot, a
credit reservation of the worst-case cost (partial for streams, then topped up as tokens
arrive), settlement at the real cost, and the generation's ledger record, exactly once."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from xrouter_router.domain import accounting
from xrouter_router.domain.catalog import Deployment, Price
from xrouter_router.domain.errors import Attempt
from xrouter_router.domain.keys import ApiKey
from xrouter_router.domain.ledger import GenerationRecord
from xrouter_router.domain.ports import (
    CreditGuard,
    Limiter,
    Meter,
    Reservation,
    UsageLedger,
)
from xrouter_router.domain.types import ChatRequest, RateWindow, Served, TokenCounts, Usage

# Tokens a stream must be able to afford before it starts, and how many more each top-up buys.
MIN_STREAM_TOKENS = 16
TOP_UP_TOKENS = 256


@dataclass(slots=True)
class Admission:
    key: ApiKey
    generation_id: str
    window: RateWindow | None
    reservation: Reservation | None
    price: Price
    prompt_tokens: int
    started: float


def prompt_bound(request: ChatRequest) -> int:
    """An upper bound of the prompt's tokens for the reservation, from its UTF-8 length alone
    (no tokenizer on the hot path): a token is at least one byte in any script, where a
    character ratio undercounts Chinese, emoji or, at 4 characters a token, Russian. Role
    markers add MESSAGE_OVERHEAD a message; each image gets a fixed allowance."""
    size = accounting.utf8_bound
    total = sum(size(m.text()) + size(m.name)
                + sum(size(c.name) + size(c.arguments) for c in m.tool_calls)
                for m in request.messages)
    total += sum(size(t.name) + size(t.description) + len(t.parameters_json)
                 for t in request.tools)
    total += len(request.response_format_json) + len(request.tool_choice_json)
    images = sum(1 for m in request.messages for p in m.parts if p.type == "image_url")
    return total + accounting.MESSAGE_OVERHEAD * len(request.messages) + 1500 * images


def worst_price(deployments: Sequence[Deployment]) -> Price:
    """The dearest prompt-side and completion-side prices (any bucket) among the deployments
    that may serve: a reservation charges every token at them."""
    return Price(max(d.price.prompt_ceiling for d in deployments),
                 max(d.price.completion_ceiling for d in deployments))


def cost_of(prompt: int, completion: int, price: Price) -> Decimal:
    return accounting.price(TokenCounts(prompt=prompt, completion=completion), price)


class Billing:
    def __init__(self, limiter: Limiter, credits: CreditGuard, ledger: UsageLedger, *,
                 wall: Callable[[], float] = time.time, meter: Meter | None = None) -> None:
        self._limiter = limiter
        self._credits = credits
        self._ledger = ledger
        self._wall = wall
        self._meter = meter  # limits and credits in one call at each end, when the stores can

    async def admit(self, key: ApiKey, request: ChatRequest, deployments: Sequence[Deployment],
                    *, stream: bool) -> Admission:
        """Raises RateLimited or InsufficientCredits; on success the caller must finish()."""
        now = self._wall()
        price = worst_price(deployments)
        prompt = prompt_bound(request)
        if key.master:
            return Admission(key, request.generation_id, None, None, price, prompt, now)
        cap = max(d.max_completion_tokens for d in deployments)
        completion = min(request.sampling.max_tokens or cap, cap)
        amount = cost_of(prompt, completion, price)
        partial = cost_of(prompt, MIN_STREAM_TOKENS, price) if stream else None
        if self._meter is not None:
            window, reservation = await self._meter.admit(
                key, request.generation_id, amount, partial_from=partial, now=now)
            return Admission(key, request.generation_id, window, reservation, price, prompt, now)
        window = await self._limiter.acquire(key, now)
        try:
            reservation = await self._credits.reserve(key, request.generation_id, amount,
                                                      partial_from=partial)
        except BaseException:
            await self._limiter.release(key)
            raise
        return Admission(key, request.generation_id, window, reservation, price, prompt, now)

    async def afford(self, admission: Admission, completion_tokens: int) -> bool:
        """For streams: True while the tokens so far are paid for, topping the reservation up
        when they come close to it; False when the money has run out."""
        held = admission.reservation
        if held is None:
            return True
        spent = cost_of(admission.prompt_tokens, completion_tokens, admission.price)
        if spent + cost_of(0, TOP_UP_TOKENS // 4, admission.price) <= held.amount:
            return True
        grown = await self._credits.extend(admission.key, held,
                                           cost_of(0, TOP_UP_TOKENS, admission.price))
        if grown is not None:
            admission.reservation = grown
            return True
        return spent <= held.amount

    async def finish(self, admission: Admission, request: ChatRequest, *,
                     served: Served | None, usage: Usage | None, status: str,
                     finish_reason: str, attempts: Sequence[Attempt], streamed: bool,
                     latency_ms: int) -> None:
        """Write the ledger record, settle, count tokens, release the concurrency slot. The
        record comes first: in the cluster mode the charge travels with it (see
        RedisCreditGuard), and a generation that could not be recorded is not charged."""
        key = admission.key
        cost = usage.cost if usage is not None else Decimal(0)
        if admission.reservation is not None and cost > admission.reservation.amount \
                and status == "budget_exhausted":
            # The stream was cut when its reservation ran out: it cannot cost more than that.
            cost = admission.reservation.amount
        tokens = usage.tokens if usage is not None else None
        record = GenerationRecord(
            id=admission.generation_id, created_at=admission.started, key_id=key.id,
            account_id=key.account_id, model=served.model if served else request.model,
            provider=served.provider if served else "", streamed=streamed,
            prompt_tokens=tokens.prompt if tokens else 0,
            completion_tokens=tokens.completion if tokens else 0,
            cached_tokens=tokens.cached if tokens else 0,
            reasoning_tokens=tokens.reasoning if tokens else 0,
            cache_write_tokens=tokens.cache_write if tokens else 0,
            counts_native=bool(tokens and not tokens.estimated), cost=cost,
            latency_ms=latency_ms, generation_ms=int((self._wall() - admission.started) * 1000),
            finish_reason=finish_reason, status=status, attempts=tuple(attempts))
        try:
            await self._ledger.record(record)
        except BaseException:  # cancelled too: the slot and the reservation go back
            await self._conclude(admission, Decimal(0), 0)
            raise
        await self._conclude(admission, cost, tokens.total if tokens is not None else 0)

    async def _conclude(self, admission: Admission, cost: Decimal, tokens: int) -> None:
        """Settle, count the tokens, give the concurrency slot back (nothing for the master key)."""
        key = admission.key
        if key.master:
            return
        if self._meter is not None and admission.reservation is not None:
            await self._meter.conclude(key, admission.reservation, cost, tokens, self._wall())
            return
        try:
            if admission.reservation is not None:
                await self._credits.settle(admission.reservation, cost)
            if tokens > 0:
                await self._limiter.add_tokens(key, tokens, self._wall())
        finally:
            await self._limiter.release(key)
