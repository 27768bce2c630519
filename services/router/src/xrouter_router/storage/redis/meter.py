"""The Meter port over Redis Cluster: a request's rate limits and its credit reservation in one
script call, its settlement, tokens and concurrency slot in another. The limiter's keys share
the account's hash tag with its credit keys, so the credit script runs the limits too
(redis_limits.limits_lua inside redis_credits' script)."""

from __future__ import annotations

from decimal import Decimal

from xrouter_router.domain.keys import ApiKey, Limits
from xrouter_router.domain.ports import Reservation
from xrouter_router.domain.types import RateWindow
from xrouter_router.storage.redis.credits import RedisCreditGuard
from xrouter_router.storage.redis.limits import LimitArgs, RedisLimiter, new_slot
from xrouter_router.storage.redis.link import RedisDown


class RedisMeter:
    """Each end of a generation in one round trip instead of three: what RedisLimiter and
    RedisCreditGuard do, with their keys, scripts' logic and degraded-mode policies (when Redis
    fails, the credit policy decides first, then the limits'), through the credit guard's
    connection."""

    def __init__(self, limiter: RedisLimiter, guard: RedisCreditGuard) -> None:
        self._limiter = limiter
        self._guard = guard

    async def admit(self, key: ApiKey, generation_id: str, amount: Decimal, *,
                    partial_from: Decimal | None, now: float) -> tuple[RateWindow | None,
                                                                       Reservation]:
        lim = key.limits
        if lim == Limits():
            return None, await self._guard.reserve(key, generation_id, amount,
                                                   partial_from=partial_from)
        slot = new_slot(lim)
        try:
            reply = await self._guard.ask_reserve(
                key, generation_id, amount, partial_from=partial_from,
                extra_keys=self._limiter.keys(key, now), limits=self._limiter.arguments(lim, slot))
        except RedisDown:
            reservation = self._guard.reserve_degraded(key, generation_id, amount)
            return self._limiter.degraded_acquire(key, slot), reservation
        if reply[0] == "limited":  # raises RateLimited
            self._limiter.counted(key, "", [int(x) for x in reply[1:4]], now)
        window = None
        if reply[0] == "ok":
            window = self._limiter.counted(key, slot, [0, int(reply[2]), int(reply[3])], now)
        return window, self._guard.granted(key, generation_id, amount, reply)

    async def extend(self, key: ApiKey, reservation: Reservation,
                     amount: Decimal) -> Reservation | None:
        return await self._guard.extend(key, reservation, amount)

    async def conclude(self, key: ApiKey, reservation: Reservation, cost: Decimal, tokens: int,
                       now: float) -> None:
        slot = self._limiter.take(key.id)
        counted = key.limits.tokens_per_minute is not None and tokens > 0
        if not slot and not counted:
            await self._guard.settle(reservation, cost)
            return
        # The settlement reads only the slot and the tokens of the limits' arguments.
        try:
            await self._guard.settle(reservation, cost, extra_keys=self._limiter.keys(key, now),
                                     limits=LimitArgs(slot=slot,
                                                      tokens=str(tokens) if counted else ""))
        except BaseException:
            # Interrupted: the slot may still be taken; concluding again frees it.
            self._limiter.hold(key.id, slot)
            raise
