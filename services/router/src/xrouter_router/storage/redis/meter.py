"""The Meter port over Redis Cluster: a request's rate limits, its hold in the models' token
windows and its credit reservation in one script call, its settlement, tokens, hold and
concurrency slot in another. The limiter's keys share the account's hash tag with its credit
keys, so the credit script runs the limits too (redis_limits.limits_lua inside redis_credits'
script)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from decimal import Decimal

from xrouter_router.domain.keys import ApiKey, Limits
from xrouter_router.domain.limits import TokenAsk, TokenHold, token_refusal, windows_of
from xrouter_router.domain.ports import Reservation
from xrouter_router.domain.types import RateWindow
from xrouter_router.storage.redis.credits import RedisCreditGuard
from xrouter_router.storage.redis.limits import LimitArgs, RedisLimiter, WindowArgs, new_slot
from xrouter_router.storage.redis.link import RedisDown


class RedisMeter:
    """Each end of a generation in one round trip instead of three: what RedisLimiter and
    RedisCreditGuard do, with their keys, scripts' logic and degraded-mode policies (when Redis
    fails, the credit policy decides first, then the limits'; the models' windows go uncounted
    with the limits), through the credit guard's connection."""

    def __init__(self, limiter: RedisLimiter, guard: RedisCreditGuard) -> None:
        self._limiter = limiter
        self._guard = guard

    async def admit(self, key: ApiKey, generation_id: str, amount: Decimal, *,
                    partial_from: Decimal | None, now: float,
                    tokens: Sequence[TokenAsk] = ()) -> tuple[RateWindow | None, Reservation,
                                                              TokenHold | None]:
        lim = key.limits
        if lim == Limits() and not tokens:
            return None, await self._guard.reserve(key, generation_id, amount,
                                                   partial_from=partial_from), None
        slot = new_slot(lim)
        minute, day = windows_of(now)
        args = self._limiter.arguments(lim, slot)
        if tokens:
            args = replace(args, models=tuple(WindowArgs.of(ask, ask.tokens) for ask in tokens))
        try:
            reply = await self._guard.ask_reserve(
                key, generation_id, amount, partial_from=partial_from,
                extra_keys=self._keys(key, now, tokens, minute, day), limits=args)
        except RedisDown:
            reservation = self._guard.reserve_degraded(key, generation_id, amount)
            return self._limiter.degraded_acquire(key, slot), reservation, None
        if reply[0] == "limited" and reply[1] == "5":  # no model had room: name the first's
            raise token_refusal(tokens[0], "minute" if reply[4][0] == "m" else "day",
                                int(reply[5]), now)
        if reply[0] == "limited":  # raises RateLimited
            self._limiter.counted(key, "", [int(x) for x in reply[1:4]], now)
        window, hold = None, None
        if reply[0] == "ok":
            window = self._limiter.counted(key, slot, [0, int(reply[2]), int(reply[3])], now)
            if tokens:
                hold = TokenHold(tuple(ask for ask, fits in zip(tokens, reply[4], strict=True)
                                       if fits == "1"), minute, day)
        return window, self._guard.granted(key, generation_id, amount, reply), hold

    async def extend(self, key: ApiKey, reservation: Reservation,
                     amount: Decimal) -> Reservation | None:
        return await self._guard.extend(key, reservation, amount)

    async def charge(self, reservation: Reservation, cost: Decimal) -> None:
        await self._guard.settle(reservation, cost)

    async def conclude(self, key: ApiKey, reservation: Reservation, cost: Decimal, tokens: int,
                       now: float, *, hold: TokenHold | None = None, served: str = "") -> None:
        slot = self._limiter.take(key.id)
        counted = key.limits.tokens_per_minute is not None and tokens > 0
        if not slot and not counted and hold is None:
            await self._guard.settle(reservation, cost)
            return
        # The settlement reads only the slot, the tokens and the models' windows of the limits'
        # arguments; the windows are those of the admission's minute and day.
        models: tuple[WindowArgs, ...] = ()
        extra = list(self._limiter.keys(key, now))
        if hold is not None:
            models = tuple(WindowArgs.of(ask, change)
                           for ask, change in zip(hold.asks, hold.settled(served, tokens),
                                                  strict=True))
            extra += self._limiter.model_keys(key, [ask.model for ask in hold.asks],
                                              hold.minute, hold.day)
        try:
            await self._guard.settle(reservation, cost, extra_keys=extra, limits=LimitArgs(
                slot=slot, tokens=str(tokens) if counted else "", models=models))
        except BaseException:
            # Interrupted: the slot may still be taken; concluding again frees it.
            self._limiter.hold(key.id, slot)
            raise

    def _keys(self, key: ApiKey, now: float, tokens: Sequence[TokenAsk], minute: int,
              day: int) -> list[str]:
        keys = list(self._limiter.keys(key, now))
        if tokens:
            keys += self._limiter.model_keys(key, [ask.model for ask in tokens], minute, day)
        return keys

