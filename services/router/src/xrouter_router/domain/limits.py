"""Rate-limit policy shared by every limiter (in-process and Redis Cluster): the windows' lengths
and the one wording of a refusal, so both limiters answer a client alike."""

from __future__ import annotations

import math

from xrouter_router.domain.errors import RateLimited

MINUTE = 60.0
DAY = 86400.0


def limited(what: str, limit: int, reset: float, now: float,
            retry_after: float | None = None) -> RateLimited:
    """The refusal of a limit `limit` that resets at `reset`: Retry-After is the wait until
    then (at least a second) unless the limiter knows better."""
    wait = retry_after if retry_after is not None else max(1.0, math.ceil(reset - now))
    return RateLimited(f"Rate limit exceeded: {what}", retry_after=wait,
                       metadata={"limit": limit, "remaining": 0, "reset": int(reset)})
