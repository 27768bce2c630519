"""Admission policy shared by every limiter and credit guard (in-process and Redis Cluster): the
windows' lengths and the one wording of each refusal, so every adapter answers a client alike."""

from __future__ import annotations

import math
from decimal import Decimal

from xrouter_router.domain.errors import InsufficientCredits, RateLimited

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
