"""Rate limits, credit reservations and key revocations shared by every router replica through
Redis Cluster: one versioned Lua script per call, whose keys share one {hash tag} (the API key's
id for limits, the account's id for credits), so each check-and-count is atomic on one node."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, TypeVar

from redis.asyncio.client import PubSub
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoScriptError

from xrouter_router.domain.errors import InsufficientCredits, InternalError, NotFound, Unavailable
from xrouter_router.domain.keys import ApiKey, Limits
from xrouter_router.domain.ports import AccountStore, Reservation
from xrouter_router.domain.types import RateWindow
from xrouter_router.storage.memory import DAY, MINUTE
from xrouter_router.storage.memory import _limited as limited  # one wording for both limiters
from xrouter_router.storage.redis_stats import Script

log = logging.getLogger(__name__)
T = TypeVar("T")

# Part of every key and script: bump it with any change of a script or of the key layout, so
# that replicas of two releases never apply two versions to the same data.
VERSION = "v1"
WARN_EVERY = 60.0
INFLIGHT = 32  # commands of one component at once: well inside the client's 100 per node
REVOKED_CHANNEL = f"xr:{VERSION}:keys:revoked"
_NEVER = float("-inf")

# KEYS: requests this minute, requests today, tokens this minute, the concurrency slots (a sorted
# set of slot ids scored by their expiry in server milliseconds, so a crashed replica's slots
# lapse). ARGV: rpm, rpd, tpm, concurrent ('' = unlimited), slot id, slot TTL in ms.
# Replies {code, requests this minute, requests today}: code 0 counted, 1-4 which limit ran out.
_ACQUIRE = f"""-- xrouter rate limits {VERSION}: acquire
local rpm, rpd, tpm, conc = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local m, d = 0, 0
if rpm then
  m = tonumber(redis.call('GET', KEYS[1]) or '0')
  if m >= rpm then return {{1, m, d}} end
end
if rpd then
  d = tonumber(redis.call('GET', KEYS[2]) or '0')
  if d >= rpd then return {{2, m, d}} end
end
if tpm and tonumber(redis.call('GET', KEYS[3]) or '0') >= tpm then return {{3, m, d}} end
if conc then
  local t = redis.call('TIME')
  local now, ttl = t[1] * 1000 + math.floor(t[2] / 1000), tonumber(ARGV[6])
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', string.format('%.0f', now))
  if redis.call('ZCARD', KEYS[4]) >= conc then return {{4, m, d}} end
  redis.call('ZADD', KEYS[4], string.format('%.0f', now + ttl), ARGV[5])
  redis.call('PEXPIRE', KEYS[4], ARGV[6])
end
if rpm then
  m = redis.call('INCR', KEYS[1])
  if m == 1 then redis.call('EXPIRE', KEYS[1], 120) end
end
if rpd then
  d = redis.call('INCR', KEYS[2])
  if d == 1 then redis.call('EXPIRE', KEYS[2], 90000) end
end
return {{0, m, d}}
"""

_ADD_TOKENS = f"""-- xrouter rate limits {VERSION}: tokens
redis.call('INCRBY', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], 120)
return 1
"""

# KEYS: the account's hash (balance and spent snapshots with the server time they were taken,
# reserved sums, the cumulative 'charged' counter), its reservations (generation id ->
# "<units> <key id>") and their expiries (a sorted set, server seconds). Money is in integer
# units of 1e-8 RUB; Lua's doubles keep them exact up to 2^53 units (about 90 million RUB).
# ARGV: mode, key id, generation id, amount, partial_from, credit limit ('' = none), held
# (extend: the reservation's amount, re-reserved if it lapsed), snapshot TTL, reservation TTL,
# keys' TTL, then the snapshot read from the AccountStore: 'charged' as it was before the
# read, balance, spent ('' = none given).
# A snapshot taken while settlements ran subtracts every charge settled meanwhile, which some
# already include: the balance it installs may be low for a moment, never high.
_CREDITS = f"""-- xrouter credits {VERSION}
local acct, gens, exps = KEYS[1], KEYS[2], KEYS[3]
local mode, key, gen = ARGV[1], ARGV[2], ARGV[3]
local amount, partial, limit = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local snapshot_ttl, reservation_ttl = tonumber(ARGV[8]), tonumber(ARGV[9])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local function int(x) return string.format('%.0f', x) end
local function field(name) return tonumber(redis.call('HGET', acct, name)) end
local function add(of_key, units)
  redis.call('HINCRBY', acct, 'reserved', int(units))
  if redis.call('HINCRBY', acct, 'reserved:' .. of_key, int(units)) == 0 then
    redis.call('HDEL', acct, 'reserved:' .. of_key)
  end
end
local function drop(g)
  local entry = redis.call('HGET', gens, g)
  redis.call('ZREM', exps, g)
  if not entry then return nil end
  local sep = string.find(entry, ' ', 1, true)
  local units = tonumber(string.sub(entry, 1, sep - 1))
  add(string.sub(entry, sep + 1), -units)
  redis.call('HDEL', gens, g)
  return units
end
local function hold(units)
  redis.call('HSET', gens, gen, int(units) .. ' ' .. key)
  redis.call('ZADD', exps, string.format('%.6f', now + reservation_ttl), gen)
end
local function expire_all()
  for _, k in ipairs(KEYS) do redis.call('EXPIRE', k, ARGV[10]) end
end
for _, g in ipairs(redis.call('ZRANGEBYSCORE', exps, '-inf', string.format('%.6f', now), 'LIMIT', 0, 64)) do
  drop(g)
end
if mode == 'settle' then
  drop(gen)
  if amount > 0 then
    redis.call('HINCRBY', acct, 'charged', int(amount))
    if field('balance') then redis.call('HINCRBY', acct, 'balance', int(-amount)) end
    if field('spent:' .. key) then redis.call('HINCRBY', acct, 'spent:' .. key, int(amount)) end
  end
  expire_all()
  return {{'ok', '0'}}
end
local function fresh(name)
  local at = field(name .. '_at')
  if at == nil or now - at >= snapshot_ttl then return nil end
  return field(name)
end
local balance, spent = fresh('balance'), limit and fresh('spent:' .. key)
local charged = field('charged') or 0
if ARGV[11] ~= '' then
  local before = tonumber(ARGV[11])
  local since = charged >= before and charged - before or charged
  local at = string.format('%.6f', now)
  if balance == nil then
    balance = tonumber(ARGV[12]) - since
    redis.call('HSET', acct, 'balance', int(balance), 'balance_at', at)
  end
  if limit and spent == nil and ARGV[13] ~= '' then
    spent = tonumber(ARGV[13]) + since
    redis.call('HSET', acct, 'spent:' .. key, int(spent), 'spent:' .. key .. '_at', at)
  end
end
if balance == nil or (limit and spent == nil) then return {{'miss', int(charged)}} end
local existing = nil
if mode == 'reserve' then
  drop(gen)  -- a repeated reserve replaces the generation's reservation
else
  existing = tonumber((redis.call('HGET', gens, gen) or ' '):match('^(%d+) '))
end
local for_account = balance - (field('reserved') or 0)
local for_key = limit and limit - spent - (field('reserved:' .. key) or 0)
local available = for_account
if for_key and for_key < available then available = for_key end
local granted
if mode == 'extend' then
  local need = amount
  if existing == nil then need = amount + tonumber(ARGV[7]) end  -- it lapsed: hold it again
  if available < need then return {{'no', int(for_account), for_key and int(for_key) or ''}} end
  add(key, need)
  hold((existing or 0) + need)
  expire_all()
  return {{'ok', int(need)}}
end
if available >= amount then granted = amount
elseif partial and available >= partial then granted = available
else return {{'no', int(for_account), for_key and int(for_key) or ''}} end
add(key, granted)
hold(granted)
expire_all()
return {{'ok', int(granted)}}
"""

ACQUIRE_SCRIPT = Script(_ACQUIRE)
TOKENS_SCRIPT = Script(_ADD_TOKENS)
CREDITS_SCRIPT = Script(_CREDITS)


class RedisDown(Exception):
    """Redis did not answer (in time): the caller applies its degraded-mode policy."""


class _Link:
    """One client's calls, each bounded by `timeout`. A failure is counted, logged at most once a
    minute, and leaves Redis alone for `retry_after` seconds, so that a hung cluster costs the
    request path one timeout, not one per request. At most `inflight` commands are on their
    way at once (the cluster client refuses, rather than queues, a command beyond its pool of
    connections per node); the others queue within their timeout. Scripts lost by a node (a
    promoted replica, a restarted node: script caches are not replicated) are loaded again
    with EVAL."""

    def __init__(self, client: RedisCluster, what: str, degraded: str, *, timeout: float,
                 retry_after: float, inflight: int = INFLIGHT) -> None:
        self.client = client
        self._slots = asyncio.Semaphore(inflight)
        self._init_lock = asyncio.Lock()
        self._ready = False
        self._what = what
        self._degraded = degraded
        self._timeout = timeout
        self._retry_after = retry_after
        self._down_until = _NEVER
        self._warned = _NEVER
        self._failing = False
        self.errors = 0
        self.degraded = 0

    async def script(self, script: Script, keys: Sequence[str], args: Sequence[str | int]) -> Any:
        async def run() -> Any:
            try:
                return await self.client.evalsha(script.sha, len(keys), *keys, *args)
            except NoScriptError:
                return await self.client.eval(script.text, len(keys), *keys, *args)
        return await self.call(run)

    async def call(self, command: Callable[[], Awaitable[T]]) -> T:
        """The command's reply, or RedisDown (lower-layer errors are translated here only)."""
        try:
            async with asyncio.timeout(self._timeout), self._slots:
                if time.monotonic() < self._down_until:
                    raise RedisDown(f"{self._what}: Redis marked unavailable")
                if not self._ready:
                    await self._initialize()
                reply = await command()
        except RedisDown:
            raise
        except Exception as exc:  # whatever fails inside the client is Redis failing
            # (redis-py 8.1 even raises AttributeError from connections that a topology refresh
            # closed under a concurrent command): the policy answers, never a 500.
            self.failed(exc)
            raise RedisDown(f"{self._what}: {type(exc).__name__}: {exc}") from exc
        if self._failing:
            self._failing = False
            log.info("%s: Redis reachable again after %d errors", self._what, self.errors)
        return reply

    async def _initialize(self) -> None:
        """Learn the cluster's topology once, before commands run concurrently: redis-py's
        cluster client races its own first refresh with concurrent first commands."""
        async with self._init_lock:
            if not self._ready:
                await self.client.initialize()
                self._ready = True

    def failed(self, exc: BaseException) -> None:
        self.errors += 1
        now = time.monotonic()
        self._down_until = now + self._retry_after
        if now - self._warned >= WARN_EVERY:
            self._warned = now
            self._failing = True
            log.warning("%s: Redis unavailable (%s: %s); %s; %d errors so far", self._what,
                        type(exc).__name__, str(exc)[:200], self._degraded, self.errors)


def _opt(value: int | None) -> str:
    return "" if value is None else str(value)


def _units(amount: Decimal) -> int:
    """RUB as Redis keeps them: integer units of 1e-8 RUB (rounded as the stores round)."""
    return int(amount.scaleb(8).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _rub(units: int) -> Decimal:
    return Decimal(units).scaleb(-8)


class RedisLimiter:
    """The Limiter port over Redis Cluster: the same fixed windows (the minute, the UTC day),
    tokens per minute and concurrency as InProcessLimiter, exact across replicas.

    Keys are `xr:v1:rl:{<key id>}:...`. A concurrency slot lapses `slot_ttl` seconds after it
    was taken, so a replica that dies mid-request frees its slots; a request running longer
    than that stops counting against the cap. When Redis fails, `fail_open` (the default)
    admits requests uncounted (acquire returns None); otherwise acquire raises Unavailable.
    `errors` counts Redis failures and `degraded` the answers given by that policy.
    """

    def __init__(self, client: RedisCluster, *, prefix: str = "xr", fail_open: bool = True,
                 slot_ttl: float = 900.0, timeout: float = 0.5, retry_after: float = 1.0) -> None:
        policy = "admitting requests uncounted" if fail_open else "refusing requests (503)"
        self._link = _Link(client, "rate limits", policy, timeout=timeout,
                           retry_after=retry_after)
        self._prefix = f"{prefix}:{VERSION}:rl:"
        self._fail_open = fail_open
        self._slot_ms = max(1, round(slot_ttl * 1000))
        self._held: dict[str, list[str]] = {}  # slot ids this replica holds, per key id

    @property
    def errors(self) -> int:
        return self._link.errors

    @property
    def degraded(self) -> int:
        return self._link.degraded

    def keys(self, key_id: str, now: float) -> tuple[str, str, str, str]:
        """Requests this minute, requests today, tokens this minute, concurrency slots."""
        minute, day = int(now // MINUTE), int(now // DAY)
        base = f"{self._prefix}{{{key_id}}}:"
        return f"{base}m:{minute}", f"{base}d:{day}", f"{base}t:{minute}", f"{base}c"

    async def acquire(self, key: ApiKey, now: float) -> RateWindow | None:
        lim = key.limits
        if lim == Limits():
            return None
        slot = uuid.uuid4().hex if lim.concurrent is not None else ""
        args: list[str | int] = [_opt(lim.requests_per_minute), _opt(lim.requests_per_day),
                                 _opt(lim.tokens_per_minute), _opt(lim.concurrent), slot,
                                 self._slot_ms]
        try:
            reply = await self._link.script(ACQUIRE_SCRIPT, self.keys(key.id, now), args)
        except RedisDown:
            self._link.degraded += 1
            if not self._fail_open:
                raise Unavailable("Rate limiting is unavailable; retry shortly",
                                  retry_after=1.0) from None
            self._hold(key.id, slot)  # it may have been taken: release() removes it if so
            return None
        code, in_minute, in_day = (int(x) for x in reply)
        if code:
            raise _exceeded(code, lim, now)
        self._hold(key.id, slot)
        return _window(lim, in_minute, in_day, now)

    async def release(self, key: ApiKey) -> None:
        """Never raises: a slot Redis could not free lapses after slot_ttl."""
        held = self._held.get(key.id)
        if not held:
            return
        slot = held.pop()
        if not held:
            del self._held[key.id]
        zset = self.keys(key.id, 0.0)[3]
        with contextlib.suppress(RedisDown):
            await self._link.call(lambda: self._link.client.zrem(zset, slot))

    async def add_tokens(self, key: ApiKey, tokens: int, now: float) -> None:
        """Never raises: tokens Redis could not count are not counted."""
        if key.limits.tokens_per_minute is None or tokens <= 0:
            return
        with contextlib.suppress(RedisDown):
            await self._link.script(TOKENS_SCRIPT, self.keys(key.id, now)[2:3], [tokens])

    def _hold(self, key_id: str, slot: str) -> None:
        # Only once the script answered: a release() meanwhile must not take a slot id that
        # Redis has not added yet.
        if slot:
            self._held.setdefault(key_id, []).append(slot)


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


_Snapshot = tuple[int, int, int | None]  # 'charged' before the read, balance, spent (units)


class RedisCreditGuard:
    """The CreditGuard port over Redis Cluster, for balances kept by the AccountStore.

    Redis holds, under the account's hash tag (`xr:v1:cr:{<account id>}`), what is reserved
    for the account and for each of its keys, every reservation by generation id with an
    expiry (`reservation_ttl`: a dead replica's reservations lapse; extend() renews it), and
    snapshots of the balance and of each key's spending, read from the AccountStore when
    older than `snapshot_ttl` (so a top-up shows within that) and adjusted by every
    settlement. A check and its reservation are one script, so concurrent requests on any
    replicas can never overspend.

    When Redis fails, reserve() raises Unavailable (503) unless `fail_open`, which lets the
    request through unchecked; extend() then answers None (or, open, grows the reservation)
    and settle() still charges the account, leaving the reservation to lapse.
    """

    def __init__(self, client: RedisCluster, accounts: AccountStore, *, prefix: str = "xr",
                 fail_open: bool = False, snapshot_ttl: float = 5.0,
                 reservation_ttl: float = 900.0, timeout: float = 0.5,
                 retry_after: float = 1.0) -> None:
        policy = "admitting requests unchecked" if fail_open else "refusing paid requests (503)"
        self._link = _Link(client, "credits", policy, timeout=timeout, retry_after=retry_after)
        self._accounts = accounts
        self._prefix = f"{prefix}:{VERSION}:cr:"
        self._fail_open = fail_open
        # Snapshot TTL, reservation TTL, and the TTL of the account's keys (idle accounts vanish).
        self._ttls: list[str | int] = [repr(float(snapshot_ttl)), repr(float(reservation_ttl)),
                                       max(1, round(max(snapshot_ttl, reservation_ttl))) + 60]
        self._loading: dict[tuple[str, str], asyncio.Task[_Snapshot]] = {}

    @property
    def errors(self) -> int:
        return self._link.errors

    @property
    def degraded(self) -> int:
        return self._link.degraded

    def keys(self, account_id: str) -> tuple[str, str, str]:
        """The account's sums and snapshots, its reservations, their expiries."""
        base = f"{self._prefix}{{{account_id}}}"
        return base, f"{base}:gen", f"{base}:exp"

    async def reserve(self, key: ApiKey, generation_id: str, amount: Decimal,
                      *, partial_from: Decimal | None = None) -> Reservation:
        partial = "" if partial_from is None else str(_units(partial_from))
        try:
            reply = await self._ask(key, "reserve", generation_id, _units(amount), partial=partial)
        except RedisDown:
            self._link.degraded += 1
            if self._fail_open:
                return Reservation(generation_id, key.account_id, key.id, amount)
            raise Unavailable("Credit checks are unavailable; retry shortly",
                              retry_after=1.0) from None
        if reply[0] == "ok":
            granted = int(reply[1])
            return Reservation(generation_id, key.account_id, key.id,
                               amount if granted == _units(amount) else _rub(granted))
        for_account = _rub(int(reply[1]))
        for_key = _rub(int(reply[2])) if reply[2] else None
        available = for_account if for_key is None else min(for_account, for_key)
        source = "key" if for_key is not None and for_key < for_account else "account"
        raise InsufficientCredits(
            "Insufficient credits: the request's worst-case cost does not fit the "
            + ("key's credit limit" if source == "key" else "account balance"),
            metadata={"limit_source": source, "required": str(amount),
                      "available": str(max(available, Decimal(0)))})

    async def extend(self, key: ApiKey, reservation: Reservation,
                     amount: Decimal) -> Reservation | None:
        try:
            reply = await self._ask(key, "extend", reservation.generation_id, _units(amount),
                                     held=_units(reservation.amount))
        except RedisDown:
            self._link.degraded += 1
            reply = ["ok"] if self._fail_open else ["no"]
        if reply[0] != "ok":
            return None
        return Reservation(reservation.generation_id, reservation.account_id,
                           reservation.key_id, reservation.amount + amount)

    async def settle(self, reservation: Reservation, cost: Decimal) -> None:
        """Charges through the AccountStore (its errors propagate), then releases; a release
        Redis could not make lapses after reservation_ttl."""
        charged = 0
        if cost > 0 and await self._accounts.charge(reservation.account_id, reservation.key_id,
                                                    reservation.generation_id, cost):
            charged = _units(cost)
        args: list[str | int] = ["settle", reservation.key_id, reservation.generation_id,
                                 charged, "", "", 0, *self._ttls, "", "", ""]
        with contextlib.suppress(RedisDown):
            await self._link.script(CREDITS_SCRIPT, self.keys(reservation.account_id), args)

    async def _ask(self, key: ApiKey, mode: str, generation_id: str, amount: int, *,
                    partial: str = "", held: int = 0) -> list[str]:
        """The script's reply to reserve or extend, reading the snapshots it misses once."""
        limit = "" if key.credit_limit is None else str(_units(key.credit_limit))
        base: list[str | int] = [mode, key.id, generation_id, amount, partial, limit, held,
                                 *self._ttls]
        snapshot: list[str | int] = ["", "", ""]
        for _ in range(2):
            raw = await self._link.script(CREDITS_SCRIPT, self.keys(key.account_id),
                                          [*base, *snapshot])
            reply = [x.decode() if isinstance(x, bytes) else str(x) for x in raw]
            if reply[0] != "miss":
                return reply
            before, balance, spent = await self._snapshot(key, int(reply[1]))
            snapshot = [before, balance, "" if spent is None else spent]
        raise InternalError("the credit script ignored the snapshot it was given")

    async def _snapshot(self, key: ApiKey, charged: int) -> _Snapshot:
        """One AccountStore read per account (and key) at a time, shared by its callers."""
        ident = (key.account_id, key.id if key.credit_limit is not None else "")
        task = self._loading.get(ident)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._read(key, charged))
            self._loading[ident] = task

            def done(finished: asyncio.Task[_Snapshot]) -> None:
                if self._loading.get(ident) is finished:
                    del self._loading[ident]
                if not finished.cancelled():
                    finished.exception()  # retrieved: every caller may have gone
            task.add_done_callback(done)
        return await asyncio.shield(task)

    async def _read(self, key: ApiKey, charged: int) -> _Snapshot:
        account = await self._accounts.get(key.account_id)
        if account is None:
            raise NotFound(f"Account {key.account_id!r} does not exist")
        spent = None
        if key.credit_limit is not None:
            spent = _units(await self._accounts.spent(key.id))
        return charged, _units(account.balance), spent


class KeyRevocations:
    """Tells every replica that a key was revoked, disabled or changed, so that each drops it
    from its key cache (the router passes KeyAuthenticator.forget as `on_revoked`).

    publish() sends the key id on the pub/sub channel `xr:v1:keys:revoked`; listen() starts a
    task that subscribes on one node of the cluster (a PUBLISH reaches every node), pings it
    every `ping_every` seconds, and moves to another node when it fails or stops answering.
    Pub/sub delivers at most once: a replica that is disconnected when a key is revoked (Redis
    down, failing over, this replica reconnecting) misses the message and keeps serving the
    key from its cache until the entry expires. The key cache's TTL (XROUTER_KEY_CACHE_TTL,
    default 30 s) is therefore the bound on how long a revoked key may still work while Redis
    is unavailable; choose it as that bound (a few seconds costs one database read per hot
    key per TTL).
    """

    def __init__(self, client: RedisCluster, *, channel: str = REVOKED_CHANNEL,
                 ping_every: float = 1.0, timeout: float = 0.5, retry_after: float = 0.2) -> None:
        self._link = _Link(client, "key revocations", "revocations reach other replicas only "
                           "when their key cache expires", timeout=timeout, retry_after=0.0)
        self._client = client
        self._channel = channel
        self._ping_every = ping_every
        self._timeout = timeout
        self._retry_after = retry_after
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self.node = ""  # host:port of the node the listener is subscribed on
        self.reconnects = 0

    @property
    def errors(self) -> int:
        return self._link.errors

    async def publish(self, key_id: str) -> bool:
        """False (logged, counted) when Redis did not take the message."""
        try:
            await self._link.call(lambda: self._client.publish(self._channel, key_id))
        except RedisDown:
            return False
        return True

    def listen(self, on_revoked: Callable[[str], None]) -> None:
        """Start the listener (once); it runs until close()."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(on_revoked))

    async def subscribed(self, timeout: float) -> bool:
        """Whether the listener is subscribed, waiting up to `timeout` seconds for it."""
        try:
            async with asyncio.timeout(timeout):
                await self._subscribed.wait()
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self, on_revoked: Callable[[str], None]) -> None:
        avoid = ""
        while True:
            try:
                await self._subscribe(avoid, on_revoked)
            except Exception as exc:  # noqa: BLE001 - the listener outlives any failure
                self._link.failed(exc)
                avoid = self.node
            self._subscribed.clear()
            self.reconnects += 1
            await asyncio.sleep(self._retry_after)

    async def _subscribe(self, avoid: str, on_revoked: Callable[[str], None]) -> None:
        """Listen on a node other than `avoid` (the one that just failed), until it fails."""
        async with asyncio.timeout(self._timeout * 4):
            if not self._client.get_nodes():
                await self._client.initialize()
            elif avoid:  # learn the cluster's topology again
                await self._client.nodes_manager.initialize()
        nodes = self._client.get_nodes()
        node = random.choice([n for n in nodes if n.name != avoid] or nodes)
        self.node = node.name
        pubsub = self._client.pubsub(node=node)
        try:
            await self._receive(pubsub, on_revoked)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pubsub.aclose(), self._timeout)

    async def _receive(self, pubsub: PubSub, on_revoked: Callable[[str], None]) -> None:
        async with asyncio.timeout(self._timeout):
            await pubsub.subscribe(self._channel)
            while (await pubsub.get_message(timeout=self._timeout)) is None:
                pass  # the subscription's confirmation
        self._subscribed.set()
        heard = time.monotonic()
        pinged = False
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True,
                                               timeout=self._ping_every / 2)
            now = time.monotonic()
            if message is not None:
                heard, pinged = now, False
                if message.get("type") == "message":
                    data = message["data"]
                    try:
                        on_revoked(data.decode() if isinstance(data, bytes) else str(data))
                    except Exception:  # a bug of the callback must not stop the listener
                        log.exception("key revocations: the callback failed")
            elif now - heard >= self._ping_every + self._timeout and pinged:
                raise TimeoutError(f"no answer from {self.node} to a ping")
            elif now - heard >= self._ping_every and not pinged:
                await asyncio.wait_for(pubsub.ping(), self._timeout)
                pinged = True
