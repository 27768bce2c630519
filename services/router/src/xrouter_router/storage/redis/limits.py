"""Rate limits shared by every router replica through Redis Cluster: one versioned Lua script
per call, whose keys share the account's id as {hash tag} (with its credit keys), so each
check-and-count is atomic."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from redis.asyncio.cluster import RedisCluster

from xrouter_router.domain.errors import InternalError, Unavailable
from xrouter_router.domain.keys import ApiKey, Limits
from xrouter_router.domain.limits import DAY, MINUTE, TokenAsk, limited, windows_of
from xrouter_router.domain.types import RateWindow
from xrouter_router.storage.redis.link import VERSION, Link, LinkCounters, RedisDown
from xrouter_router.storage.redis.stats import Script


def limits_lua(k: int, a: int) -> str:
    """The Lua function `limits()`: checks every limit, then counts the request and takes a
    concurrency slot; returns code (0 counted, 1-4 which limit ran out), requests this minute,
    requests today. KEYS[k+1..k+4]: requests this minute, requests today, tokens this minute,
    the concurrency slots (a sorted set of slot ids scored by their expiry in server
    milliseconds, so a crashed replica's slots lapse). ARGV[a+1..a+6]: rpm, rpd, tpm, concurrent
    ('' = unlimited), slot id, slot TTL in ms. Shared by ACQUIRE_SCRIPT and the credit script's
    admission (RedisMeter)."""
    return f"""local function limits()
  local rpm, rpd = tonumber(ARGV[{a + 1}]), tonumber(ARGV[{a + 2}])
  local tpm, conc = tonumber(ARGV[{a + 3}]), tonumber(ARGV[{a + 4}])
  local m, d = 0, 0
  if rpm then
    m = tonumber(redis.call('GET', KEYS[{k + 1}]) or '0')
    if m >= rpm then return 1, m, d end
  end
  if rpd then
    d = tonumber(redis.call('GET', KEYS[{k + 2}]) or '0')
    if d >= rpd then return 2, m, d end
  end
  if tpm and tonumber(redis.call('GET', KEYS[{k + 3}]) or '0') >= tpm then return 3, m, d end
  if conc then
    local t = redis.call('TIME')
    local now, ttl = t[1] * 1000 + math.floor(t[2] / 1000), tonumber(ARGV[{a + 6}])
    redis.call('ZREMRANGEBYSCORE', KEYS[{k + 4}], '-inf', string.format('%.0f', now))
    if redis.call('ZCARD', KEYS[{k + 4}]) >= conc then return 4, m, d end
    redis.call('ZADD', KEYS[{k + 4}], string.format('%.0f', now + ttl), ARGV[{a + 5}])
    redis.call('PEXPIRE', KEYS[{k + 4}], ARGV[{a + 6}])
  end
  if rpm then
    m = redis.call('INCR', KEYS[{k + 1}])
    if m == 1 then redis.call('EXPIRE', KEYS[{k + 1}], 120) end
  end
  if rpd then
    d = redis.call('INCR', KEYS[{k + 2}])
    if d == 1 then redis.call('EXPIRE', KEYS[{k + 2}], 90000) end
  end
  return 0, m, d
end
"""


# Replies {code, requests this minute, requests today}.
_ACQUIRE = f"""-- xrouter rate limits {VERSION}: acquire
{limits_lua(0, 0)}local code, m, d = limits()
return {{code, m, d}}
"""

_ADD_TOKENS = f"""-- xrouter rate limits {VERSION}: tokens
redis.call('INCRBY', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], 120)
return 1
"""

ACQUIRE_SCRIPT = Script(_ACQUIRE)
TOKENS_SCRIPT = Script(_ADD_TOKENS)


@dataclass(frozen=True, slots=True)
class WindowArgs:
    """One model's token windows in the credit script: its limits per minute and per day
    ('' = none), and the tokens to hold (a reservation) or to add (a settlement: the real
    tokens less the hold, negative for a model that did not serve)."""

    per_minute: str
    per_day: str
    tokens: int

    @classmethod
    def of(cls, ask: TokenAsk, tokens: int) -> WindowArgs:
        return cls(_opt(ask.per_minute), _opt(ask.per_day), tokens)


@dataclass(frozen=True, slots=True)
class LimitArgs:
    """limits_lua's ARGV from a+1, built here only: the key's limits ('' = unlimited), its
    concurrency slot and the slot's TTL in ms, then the tokens a settlement counts (the credit
    script's ARGV[20]); then, only when the key holds tokens in models' windows, how many
    models (ARGV[21]) and each one's WindowArgs (ARGV[22..24] the first, [25..27] the next...),
    whose keys are KEYS[8..9], [10..11]... (RedisMeter.model_keys)."""

    requests_per_minute: str = ""
    requests_per_day: str = ""
    tokens_per_minute: str = ""
    concurrent: str = ""
    slot: str = ""
    slot_ttl_ms: int | str = ""
    tokens: str = ""
    models: tuple[WindowArgs, ...] = ()

    def argv(self) -> list[str | int]:
        head: list[str | int] = [self.requests_per_minute, self.requests_per_day,
                                 self.tokens_per_minute, self.concurrent, self.slot,
                                 self.slot_ttl_ms, self.tokens]
        if not self.models:
            return head
        head.append(len(self.models))
        for model in self.models:
            head += [model.per_minute, model.per_day, model.tokens]
        return head


def new_slot(lim: Limits) -> str:
    """A concurrency slot's id, when the key has a concurrency limit."""
    return uuid.uuid4().hex if lim.concurrent is not None else ""


def _opt(value: int | None) -> str:
    return "" if value is None else str(value)


class RedisLimiter(LinkCounters):
    """The Limiter port over Redis Cluster: the same fixed windows (the minute, the UTC day),
    tokens per minute and concurrency as InProcessLimiter, exact across replicas.

    Keys are `xr:v2:rl:{<account id>}:<key id>:...`. A concurrency slot lapses `slot_ttl` seconds after it
    was taken, so a replica that dies mid-request frees its slots; a request running longer
    than that stops counting against the cap. When Redis fails, `fail_open` (the default)
    admits requests uncounted (acquire returns None); otherwise acquire raises Unavailable.
    `errors` counts Redis failures and `degraded` the answers given by that policy.
    """

    def __init__(self, client: RedisCluster, *, prefix: str = "xr", fail_open: bool = True,
                 slot_ttl: float = 900.0, timeout: float = 0.5, retry_after: float = 1.0) -> None:
        policy = "admitting requests uncounted" if fail_open else "refusing requests (503)"
        self._link = Link(client, "rate limits", policy, timeout=timeout,
                           retry_after=retry_after)
        self._prefix = f"{prefix}:{VERSION}:rl:"
        self._fail_open = fail_open
        self._slot_ms = max(1, round(slot_ttl * 1000))
        self._held: dict[str, list[str]] = {}  # slot ids this replica holds, per key id

    def keys(self, key: ApiKey, now: float) -> tuple[str, str, str, str]:
        """Requests this minute, requests today, tokens this minute, concurrency slots: under the
        account's hash tag, the slot of its credit keys (so RedisMeter runs both in one script)."""
        minute, day = windows_of(now)
        base = f"{self._prefix}{{{key.account_id}}}:{key.id}:"
        return f"{base}m:{minute}", f"{base}d:{day}", f"{base}t:{minute}", f"{base}c"

    def model_keys(self, key: ApiKey, models: Sequence[str], minute: int,
                   day: int) -> list[str]:
        """The key's tokens of each model in that minute and in that day (pairs, in order),
        under the account's hash tag too."""
        base = f"{self._prefix}{{{key.account_id}}}:{key.id}:"
        return [name for model in models
                for name in (f"{base}tm:{minute}:{model}", f"{base}td:{day}:{model}")]

    async def acquire(self, key: ApiKey, now: float) -> RateWindow | None:
        lim = key.limits
        if lim == Limits():
            return None
        slot = new_slot(lim)
        try:
            reply = await self._link.script(ACQUIRE_SCRIPT, self.keys(key, now),
                                            self.arguments(lim, slot).argv())
        except RedisDown:
            return self.degraded_acquire(key, slot)
        return self.counted(key, slot, [int(x) for x in reply], now)

    def arguments(self, lim: Limits, slot: str) -> LimitArgs:
        """The script's arguments for the key's limits (limits_lua's ARGV)."""
        return LimitArgs(_opt(lim.requests_per_minute), _opt(lim.requests_per_day),
                         _opt(lim.tokens_per_minute), _opt(lim.concurrent), slot, self._slot_ms)

    def degraded_acquire(self, key: ApiKey, slot: str) -> RateWindow | None:
        """Redis failed: admitted uncounted (failing open) or Unavailable."""
        self._link.degraded += 1
        if not self._fail_open:
            raise Unavailable("Rate limiting is unavailable; retry shortly",
                              retry_after=1.0) from None
        self.hold(key.id, slot)  # it may have been taken: release() removes it if so
        return None

    def counted(self, key: ApiKey, slot: str, reply: Sequence[int], now: float) -> RateWindow | None:
        """limits()'s answer (code, requests this minute, requests today): the window, or
        RateLimited."""
        code, in_minute, in_day = reply
        if code:
            raise _exceeded(code, key.limits, now)
        self.hold(key.id, slot)
        return _window(key.limits, in_minute, in_day, now)

    async def release(self, key: ApiKey) -> None:
        """Never raises: a slot Redis could not free lapses after slot_ttl."""
        slot = self.take(key.id)
        if not slot:
            return
        zset = self.keys(key, 0.0)[3]
        with contextlib.suppress(RedisDown):
            await self._link.call(lambda: self._link.client.zrem(zset, slot))

    async def add_tokens(self, key: ApiKey, tokens: int, now: float) -> None:
        """Never raises: tokens Redis could not count are not counted."""
        if key.limits.tokens_per_minute is None or tokens <= 0:
            return
        with contextlib.suppress(RedisDown):
            await self._link.script(TOKENS_SCRIPT, self.keys(key, now)[2:3], [tokens])

    def hold(self, key_id: str, slot: str) -> None:
        """Only once the script answered: a release() meanwhile must not take a slot id that
        Redis has not added yet."""
        if slot:
            self._held.setdefault(key_id, []).append(slot)

    def take(self, key_id: str) -> str:
        """A slot this replica holds for the key, forgotten here ('' when none)."""
        held = self._held.get(key_id)
        if not held:
            return ""
        slot = held.pop()
        if not held:
            del self._held[key_id]
        return slot


def _exceeded(code: int, lim: Limits, now: float) -> Exception:
    """The RateLimited that InProcessLimiter raises for the same limit."""
    minute_end, day_end = (int(now // MINUTE) + 1) * MINUTE, (int(now // DAY) + 1) * DAY
    if code == 1 and lim.requests_per_minute is not None:
        return limited(f"{lim.requests_per_minute} requests per minute", lim.requests_per_minute,
                       minute_end, now)
    if code == 2 and lim.requests_per_day is not None:
        return limited(f"{lim.requests_per_day} requests per day", lim.requests_per_day,
                       day_end, now)
    if code == 3 and lim.tokens_per_minute is not None:
        return limited(f"{lim.tokens_per_minute} tokens per minute", lim.tokens_per_minute,
                       minute_end, now)
    if code == 4 and lim.concurrent is not None:
        return limited(f"{lim.concurrent} concurrent requests", lim.concurrent, now + 1, now,
                       retry_after=1.0)
    return InternalError(f"the rate-limit script answered code {code}")


def _window(lim: Limits, in_minute: int, in_day: int, now: float) -> RateWindow | None:
    """The tightest request window, as InProcessLimiter reports it."""
    windows = []
    if lim.requests_per_minute is not None:
        windows.append(RateWindow(lim.requests_per_minute, lim.requests_per_minute - in_minute,
                                  (int(now // MINUTE) + 1) * MINUTE))
    if lim.requests_per_day is not None:
        windows.append(RateWindow(lim.requests_per_day, lim.requests_per_day - in_day,
                                  (int(now // DAY) + 1) * DAY))
    return min(windows, key=lambda w: w.remaining) if windows else None
