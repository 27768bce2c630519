"""Admission policy shared by every limiter and credit guard (in-process and Redis Cluster): the
windows' lengths and the one wording of each refusal, so every adapter answers a client alike;
and the models' token limits (catalog.ModelLimits): which candidates a request fits, what it
asks each model's windows to hold, and what it gives back when it ends."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType
from typing import NamedTuple

from xrouter_router.domain.catalog import NO_LIMITS, Model
from xrouter_router.domain.errors import InsufficientCredits, InvalidRequest, RateLimited
from xrouter_router.domain.routing import Candidate

MINUTE = 60.0
DAY = 86400.0


def limited(what: str, limit: int, reset: float, now: float,
            retry_after: float | None = None) -> RateLimited:
    """The refusal of a limit `limit` that resets at `reset`: Retry-After is the wait until
    then (at least a second) unless the limiter knows better."""
    wait = retry_after if retry_after is not None else max(1.0, math.ceil(reset - now))
    return RateLimited(f"Rate limit exceeded: {what}", retry_after=wait,
                       metadata={"limit": limit, "remaining": 0, "reset": int(reset)})


def spendable(for_account: Decimal, for_key: Decimal | None) -> Decimal:
    """What a reservation may take: the account's free balance, or less under a key's limit."""
    return for_account if for_key is None else min(for_account, for_key)


def unaffordable(required: Decimal, for_account: Decimal,
                 for_key: Decimal | None) -> InsufficientCredits:
    """The refusal of a reservation of `required` that does not fit what is free, naming the
    tighter of the two bounds (the key's credit limit or the account's balance)."""
    source = "key" if for_key is not None and for_key < for_account else "account"
    return InsufficientCredits(
        "Insufficient credits: the request's worst-case cost does not fit the "
        + ("key's credit limit" if source == "key" else "account balance"),
        metadata={"limit_source": source, "required": str(required),
                  "available": str(max(spendable(for_account, for_key), Decimal(0)))})


@dataclass(frozen=True, slots=True)
class TokenAsk:
    """What a request asks one candidate model's windows (the API key's tokens of that model
    this minute and today) to hold until it ends: its upper bound of tokens."""

    model: str
    per_minute: int | None
    per_day: int | None
    tokens: int


@dataclass(frozen=True, slots=True)
class TokenHold:
    """What an admission holds: the asks of the candidate models that had room (the others are
    skipped), in the windows of the minute and the day it was admitted in."""

    asks: tuple[TokenAsk, ...]
    minute: int
    day: int

    def admits(self, model_id: str) -> bool:
        return any(ask.model == model_id for ask in self.asks)

    def settled(self, served: str, tokens: int) -> tuple[int, ...]:
        """What each held window changes by when the generation ends: the model that served
        keeps its real tokens, every other gives its hold back."""
        return tuple((tokens if ask.model == served else 0) - ask.tokens for ask in self.asks)


def windows_of(now: float) -> tuple[int, int]:
    """The minute and the UTC day `now` falls in (the limiters' fixed windows)."""
    return int(now // MINUTE), int(now // DAY)


def token_refusal(ask: TokenAsk, per: str, used: int, now: float) -> RateLimited:
    """The 429 of a model whose window (per = "minute" or "day") cannot hold the request."""
    minute, day = windows_of(now)
    limit = (ask.per_minute if per == "minute" else ask.per_day) or 0
    reset = (minute + 1) * MINUTE if per == "minute" else (day + 1) * DAY
    refusal = limited(f"{limit} tokens per {per} of model {ask.model}", limit, reset, now)
    refusal.metadata.update(model=ask.model, remaining=max(0, limit - used),
                            requested=ask.tokens)
    return refusal


class Fitted(NamedTuple):
    """The candidates a request fits by their models' limits, the max_tokens to send each
    model (those whose limits cut the completion of a request that set none) and the asks of
    the models with windows (empty when no candidate has limits: nothing more on the hot
    path). A tuple: built per request, cheaply."""

    candidates: tuple[Candidate, ...]
    caps: Mapping[str, int]
    asks: tuple[TokenAsk, ...]


_NO_CAPS: Mapping[str, int] = MappingProxyType({})


def any_limits(candidates: Sequence[Candidate]) -> bool:
    """Whether any candidate's model has token limits (then the request's tokens are counted)."""
    return any(cand.model.limits is not NO_LIMITS for cand in candidates)


def fit(candidates: Sequence[Candidate], prompt: int, max_tokens: int | None) -> Fitted:
    """Drop the candidates whose model cannot take the request at all: `prompt`, the prompt's
    tokens as the bundled tokenizer counts them, plus the completion (`max_tokens`; else the
    deployments' cap, cut to what the model's smallest limit leaves) past the model's tokens
    per request, minute or day.
    Raises InvalidRequest (400) naming the first model's limit when no candidate is left."""
    for cand in candidates:
        if cand.model.limits is not NO_LIMITS:
            break
    else:
        return Fitted(tuple(candidates), _NO_CAPS, ())
    caps: dict[str, int] = {}
    asks: dict[str, TokenAsk] = {}
    refused: dict[str, InvalidRequest] = {}
    models = {c.model.id: c.model for c in candidates}
    for model in models.values():
        completion, cut, why = _completion(model, prompt, max_tokens)
        if why is not None:
            refused[model.id] = why
            continue
        if cut:
            caps[model.id] = completion
        lim = model.limits
        if lim.windowed:
            asks[model.id] = TokenAsk(model.id, lim.tokens_per_minute, lim.tokens_per_day,
                                      prompt + completion)
    kept = tuple(c for c in candidates if c.model.id not in refused)
    if not kept:
        raise refused[candidates[0].model.id]
    return Fitted(kept, caps, tuple(asks.values()))


def _completion(model: Model, prompt: int, max_tokens: int | None
                ) -> tuple[int, bool, InvalidRequest | None]:
    """The completion tokens the request may generate on the model, whether that cuts the
    deployments' cap (then it is sent as max_tokens), or why the request cannot go."""
    lim = model.limits
    named = [(name, limit) for name, limit in (
        ("tokens_per_request", lim.tokens_per_request),
        ("tokens_per_minute", lim.tokens_per_minute),
        ("tokens_per_day", lim.tokens_per_day)) if limit is not None]
    if not named:
        return 0, False, None
    if max_tokens is not None:
        for name, limit in named:
            if prompt + max_tokens > limit:
                return 0, False, _too_big(model.id, name, limit, prompt, max_tokens)
        return max_tokens, False, None
    cap = max(d.max_completion_tokens for d in model.deployments)
    name, ceiling = min(named, key=lambda pair: pair[1])
    if ceiling - prompt < 1:
        return 0, False, _too_big(model.id, name, ceiling, prompt, None)
    return min(cap, ceiling - prompt), ceiling - prompt < cap, None


def _too_big(model: str, name: str, limit: int, prompt: int,
             max_tokens: int | None) -> InvalidRequest:
    asked = f" plus max_tokens {max_tokens}" if max_tokens is not None else \
        ", which leaves no room for a completion"
    return InvalidRequest(
        f"The request does not fit the {name} of model {model!r} ({limit}): its prompt counts "
        f"as {prompt} tokens{asked}",
        param="max_tokens" if max_tokens is not None else "messages",
        metadata={"model": model, "limit": name, name: limit, "prompt_tokens": prompt,
                  "max_tokens": max_tokens})
