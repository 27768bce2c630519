"""Credit reservations shared by every router replica through Redis Cluster: one versioned Lua
script per call, whose keys share the account's id as {hash tag}, so each check is atomic."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from decimal import ROUND_HALF_UP, Decimal

from redis.asyncio.cluster import RedisCluster

from xrouter_router.domain.errors import InternalError, NotFound, Unavailable
from xrouter_router.domain.keys import ApiKey
from xrouter_router.domain.ledger import GenerationRecord, charge_of
from xrouter_router.domain.limits import unaffordable
from xrouter_router.domain.outage import OutageAllowance
from xrouter_router.domain.ports import AccountStore, Reservation
from xrouter_router.storage.redis.lane import Lane
from xrouter_router.storage.redis.limits import LimitArgs, limits_lua
from xrouter_router.storage.redis.link import VERSION, Link, LinkCounters, RedisDown
from xrouter_router.storage.redis.stats import Script

# KEYS: the account's hash (balance and spent snapshots with the server time they were taken,
# reserved sums, pending sums, the cumulative 'charged' counter), its reservations and the state
# of its generations' charges (a hash: generation id -> "<units> <key id>", and 's:<generation
# id>' -> 'p', 'a' or 'x'), and their expiries (a sorted set, server seconds). Money is in
# integer units of 1e-8 RUB; Lua's doubles keep them exact up to 2^53 units (about 90 million
# RUB). ARGV: mode, key id, generation id, amount, partial_from, credit limit ('' = none), held
# (extend: the reservation's amount, re-reserved if it lapsed), snapshot TTL, reservation TTL,
# keys' TTL, then the snapshot read from the AccountStore: 'charged' as it was before the read,
# balance, spent ('' = none given), or 'stale' (the store is down: use what Redis has, however
# old).
# A charge reaches the AccountStore with the generation's record (the ledger consumer), not
# here. Settling it counts it in the snapshots at once and, until the store has it, in
# 'deferred' (and 'deferred:<key>'): state 'p'. _APPLIED says the store has it: 'p' becomes 'x',
# or, when the store was first, 'a', which the settlement then makes 'x' ('a' and 'x' lapse
# after the reservation TTL; a repeated settlement or notice changes nothing). A snapshot read
# from the store subtracts what is deferred, and every charge the store took while it was read
# (some of which it may include: the balance it installs may be low for a moment, never high).


@dataclass(frozen=True, slots=True)
class CreditArgs:
    """The credit script's ARGV, built here only (argv() is the one place that knows the order):
    ARGV[1..7] the call, [8..10] the TTLs, [11..13] the snapshot, [14..20] the key's limits
    (RedisMeter's; limits_lua(3, 13)), then [21..] the models' token windows (LimitArgs)."""

    mode: str  # reserve | extend | settle
    key_id: str
    generation_id: str
    amount: int  # units of 1e-8 RUB: to reserve, to add, or the cost settled
    ttls: tuple[str, str, int]  # snapshot, reservation, the account's keys
    partial: str = ""  # units: reserve as much as is free if at least this ('' = all or none)
    limit: str = ""  # the key's credit limit in units ('' = none)
    held: int = 0  # extend: the reservation's amount, held again if it lapsed
    snapshot: tuple[str | int, str | int, str | int] = ("", "", "")
    limits: LimitArgs | None = None

    def argv(self) -> list[str | int]:
        return [self.mode, self.key_id, self.generation_id, self.amount, self.partial,
                self.limit, self.held, *self.ttls, *self.snapshot,
                *(self.limits.argv() if self.limits is not None else ())]


STALE: tuple[str, str, str] = ("stale", "", "")


_CREDITS = f"""-- xrouter credits {VERSION}
{limits_lua(3, 13)}local acct, gens, exps = KEYS[1], KEYS[2], KEYS[3]
local mode, key, gen = ARGV[1], ARGV[2], ARGV[3]
local amount, partial, limit = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local snapshot_ttl, reservation_ttl = tonumber(ARGV[8]), tonumber(ARGV[9])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
-- '%.0f' writes a negative zero (0 units given back) as '-0', which HINCRBY refuses.
local function int(x) if x == 0 then return '0' end return string.format('%.0f', x) end
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
  if string.sub(g, 1, 2) == 's:' then  -- a charge's state lapsed
    redis.call('HDEL', gens, g)
    return nil
  end
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
  for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ARGV[10]) end
end
-- RedisMeter's windows of the models' token limits: model i's limits per minute and per day
-- and its tokens (ARGV[22..24] for i = 1, ...), its windows KEYS[8..9] (the minute's, the day's)
local models = tonumber(ARGV[21] or '')
local function window(i)
  local a = 21 + 3 * (i - 1)
  return tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]), 8 + 2 * (i - 1)
end
local function count(i, tokens)
  local tpm, tpd, _, k = window(i)
  if tpm then
    redis.call('INCRBY', KEYS[k], tokens)
    redis.call('EXPIRE', KEYS[k], 120)
  end
  if tpd then
    redis.call('INCRBY', KEYS[k + 1], tokens)
    redis.call('EXPIRE', KEYS[k + 1], 90000)
  end
end
for _, g in ipairs(redis.call('ZRANGEBYSCORE', exps, '-inf', string.format('%.6f', now), 'LIMIT', 0, 64)) do
  drop(g)
end
if mode == 'settle' then
  local held = drop(gen)  -- nil when settled already: the windows are settled once too
  local state = redis.call('HGET', gens, 's:' .. gen)
  if amount > 0 and state ~= 'p' and state ~= 'x' then
    if state == 'a' then
      redis.call('HSET', gens, 's:' .. gen, 'x')
    else
      redis.call('HSET', gens, 's:' .. gen, 'p')
      redis.call('HINCRBY', acct, 'deferred', int(amount))
      redis.call('HINCRBY', acct, 'deferred:' .. key, int(amount))
    end
    if field('balance') then redis.call('HINCRBY', acct, 'balance', int(-amount)) end
    if field('spent:' .. key) then redis.call('HINCRBY', acct, 'spent:' .. key, int(amount)) end
  end
  if KEYS[7] then  -- RedisMeter: the key's tokens this minute and its concurrency slot
    if ARGV[20] ~= '' then
      redis.call('INCRBY', KEYS[6], ARGV[20])
      redis.call('EXPIRE', KEYS[6], 120)
    end
    if ARGV[18] ~= '' then redis.call('ZREM', KEYS[7], ARGV[18]) end
    if held then
      for i = 1, models or 0 do
        local _, _, tokens = window(i)
        count(i, tokens)
      end
    end
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
if ARGV[11] == 'stale' then
  balance = balance or field('balance')
  if limit then spent = spent or field('spent:' .. key) end
elseif ARGV[11] ~= '' then
  local before = tonumber(ARGV[11])
  local since = charged >= before and charged - before or charged
  local at = string.format('%.6f', now)
  if balance == nil then
    balance = tonumber(ARGV[12]) - since - (field('deferred') or 0)
    redis.call('HSET', acct, 'balance', int(balance), 'balance_at', at)
  end
  if limit and spent == nil and ARGV[13] ~= '' then
    spent = tonumber(ARGV[13]) + since + (field('deferred:' .. key) or 0)
    redis.call('HSET', acct, 'spent:' .. key, int(spent), 'spent:' .. key .. '_at', at)
  end
end
if balance == nil or (limit and spent == nil) then return {{'miss', int(charged)}} end
-- RedisMeter's admission: the key's limits first (a refusal for credits still counts the
-- request, as InProcessLimiter does; only its slot goes back)
local lm, ld, fits = '', '', ''
local function refused(...)
  if lm ~= '' and ARGV[18] ~= '' then redis.call('ZREM', KEYS[7], ARGV[18]) end
  return {{'no', ...}}
end
if mode == 'reserve' and KEYS[7] then
  local code, m, d = limits()
  if code ~= 0 then return {{'limited', tostring(code), tostring(m), tostring(d)}} end
  lm, ld = tostring(m), tostring(d)
  -- then the models' windows: '1' where the tokens fit, else 'm' or 'd' (the full window),
  -- and the use of the first full one; none fits: refused as credits are (the request counts)
  local first = ''
  for i = 1, models or 0 do
    local tpm, tpd, want, k = window(i)
    local used_m = tpm and tonumber(redis.call('GET', KEYS[k]) or '0') or 0
    local used_d = tpd and tonumber(redis.call('GET', KEYS[k + 1]) or '0') or 0
    local full, used = '1', 0
    if tpm and used_m + want > tpm then full, used = 'm', used_m
    elseif tpd and used_d + want > tpd then full, used = 'd', used_d end
    if full ~= '1' and first == '' then first = tostring(used) end
    fits = fits .. full
  end
  if models and not string.find(fits, '1', 1, true) then
    refused()  -- the slot back
    return {{'limited', '5', lm, ld, fits, first}}
  end
end
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
else return refused(int(for_account), for_key and int(for_key) or '') end
add(key, granted)
hold(granted)
for i = 1, models or 0 do
  if string.sub(fits, i, i) == '1' then
    local _, _, tokens = window(i)
    count(i, tokens)
  end
end
expire_all()
return {{'ok', int(granted), lm, ld, fits}}
"""

# The AccountStore took these charges. KEYS as above; ARGV: the states' TTL, the keys' TTL, then
# (generation id, units, key id) for each charge.
_APPLIED = f"""-- xrouter credits applied {VERSION}
local acct, gens, exps = KEYS[1], KEYS[2], KEYS[3]
local t = redis.call('TIME')
local lapse = string.format('%.6f', tonumber(t[1]) + tonumber(t[2]) / 1000000 + tonumber(ARGV[1]))
for i = 3, #ARGV, 3 do
  -- units: an integer in decimal, passed through as it is (no float formatting)
  local gen, units, key = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local state = redis.call('HGET', gens, 's:' .. gen)
  if state == 'p' or not state then
    if state == 'p' then
      redis.call('HINCRBY', acct, 'deferred', '-' .. units)
      if redis.call('HINCRBY', acct, 'deferred:' .. key, '-' .. units) == 0 then
        redis.call('HDEL', acct, 'deferred:' .. key)
      end
    end
    -- a snapshot being read now may or may not include it: count it as a charge made now
    redis.call('HINCRBY', acct, 'charged', units)
    redis.call('HSET', gens, 's:' .. gen, state == 'p' and 'x' or 'a')
    redis.call('ZADD', exps, lapse, 's:' .. gen)
  end
end
for _, k in ipairs(KEYS) do redis.call('EXPIRE', k, ARGV[2]) end
return 1
"""

CREDITS_SCRIPT = Script(_CREDITS)
APPLIED_SCRIPT = Script(_APPLIED)


def _units(amount: Decimal) -> int:
    """RUB as Redis keeps them: integer units of 1e-8 RUB (rounded as the stores round)."""
    return int(amount.scaleb(8).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _rub(units: int) -> Decimal:
    return Decimal(units).scaleb(-8)


_Snapshot = tuple[int, int, int | None]  # 'charged' before the read, balance, spent (units)


class RedisCreditGuard(LinkCounters):
    """The CreditGuard port over Redis Cluster, for balances kept by the AccountStore.

    Redis holds, under the account's hash tag (`xr:v2:cr:{<account id>}`), what is reserved
    for the account and for each of its keys, every reservation by generation id with an
    expiry (`reservation_ttl`: a dead replica's reservations lapse; extend() renews it), and
    snapshots of the balance and of each key's spending, read from the AccountStore when
    older than `snapshot_ttl` or dropped by forget() after a top-up, and adjusted by every
    settlement. A check and its reservation are one script, so concurrent requests on any
    replicas can never overspend.

    Charges do not go through this guard: each travels with its generation record (the
    StreamLedger, then the ledger consumer, which writes record and charge in one PostgreSQL
    transaction), so the request path makes no database call. Until the store has a charge
    (applied()), Redis counts it as deferred and subtracts it from any snapshot it reads.

    When Redis fails, reserve() raises Unavailable (503) unless `fail_open`, which lets the
    request through unchecked, or the account's `outage_allowance` on this replica still has
    room (domain/outage.py); extend() then answers None (or grows the reservation, open
    or within the allowance); the reservation lapses and the charge reaches the store with
    the record all the same.
    """

    def __init__(self, client: RedisCluster, accounts: AccountStore, *, prefix: str = "xr",
                 fail_open: bool = False, snapshot_ttl: float = 5.0,
                 reservation_ttl: float = 900.0, timeout: float = 0.5,
                 retry_after: float = 1.0, lane: Lane | None = None,
                 outage_allowance: Decimal = Decimal(0)) -> None:
        policy = "admitting requests unchecked" if fail_open else (
            f"admitting up to {outage_allowance} RUB per account, then refusing paid requests (503)"
            if outage_allowance > 0 else
            "refusing paid requests (503) beyond their plans' outage allowances")
        self._link = Link(client, "credits", policy, timeout=timeout, retry_after=retry_after,
                          lane=lane)
        self._accounts = accounts
        self._prefix = f"{prefix}:{VERSION}:cr:"
        self._fail_open = fail_open
        self.allowance = OutageAllowance(outage_allowance)
        # Snapshot TTL, reservation TTL, and the TTL of the account's keys (idle accounts vanish).
        self._ttls = (repr(float(snapshot_ttl)), repr(float(reservation_ttl)),
                      max(1, round(max(snapshot_ttl, reservation_ttl))) + 60)
        self._loading: dict[tuple[str, str], asyncio.Task[_Snapshot]] = {}

    async def forget(self, account_id: str) -> None:
        """A top-up committed: every replica reads the balance again at its next reservation
        (the snapshot's time stamp goes, so the script asks for a fresh one). Redis down: the
        snapshot expires on its own within snapshot_ttl."""
        base = self.keys(account_id)[0]
        with contextlib.suppress(RedisDown):
            await self._link.call(lambda: self._link.client.hdel(base, "balance_at"))

    def keys(self, account_id: str) -> tuple[str, str, str]:
        """The account's sums and snapshots, its reservations, their expiries."""
        base = f"{self._prefix}{{{account_id}}}"
        return base, f"{base}:gen", f"{base}:exp"

    async def reserve(self, key: ApiKey, generation_id: str, amount: Decimal,
                      *, partial_from: Decimal | None = None) -> Reservation:
        try:
            reply = await self.ask_reserve(key, generation_id, amount, partial_from=partial_from)
        except RedisDown:
            return self.reserve_degraded(key, generation_id, amount)
        return self.granted(key, generation_id, amount, reply)

    async def ask_reserve(self, key: ApiKey, generation_id: str, amount: Decimal, *,
                          partial_from: Decimal | None, extra_keys: Sequence[str] = (),
                          limits: LimitArgs | None = None) -> list[str]:
        """The script's reply to a reservation (with RedisMeter's limit keys and arguments
        appended, if given). Raises RedisDown."""
        partial = "" if partial_from is None else str(_units(partial_from))
        return await self._ask(key, "reserve", generation_id, _units(amount), partial=partial,
                               extra_keys=extra_keys, limits=limits)

    def reserve_degraded(self, key: ApiKey, generation_id: str, amount: Decimal) -> Reservation:
        """Redis failed: the policy's answer (the whole amount when failing open)."""
        self._link.degraded += 1
        if self._fail_open or self.allowance.take(generation_id, key.account_id, amount,
                                                  key.account_outage_allowance):
            return Reservation(generation_id, key.account_id, key.id, amount)
        raise Unavailable("Credit checks are unavailable; retry shortly",
                          retry_after=1.0) from None

    def granted(self, key: ApiKey, generation_id: str, amount: Decimal,
                reply: list[str]) -> Reservation:
        """The reservation an 'ok' reply grants, or InsufficientCredits for a 'no'."""
        self.allowance.restore()  # Redis answered: its balances decide again
        if reply[0] == "ok":
            granted = int(reply[1])
            return Reservation(generation_id, key.account_id, key.id,
                               amount if granted == _units(amount) else _rub(granted))
        raise unaffordable(amount, _rub(int(reply[1])), _rub(int(reply[2])) if reply[2] else None)

    async def extend(self, key: ApiKey, reservation: Reservation,
                     amount: Decimal) -> Reservation | None:
        try:
            reply = await self._ask(key, "extend", reservation.generation_id, _units(amount),
                                     held=_units(reservation.amount))
        except RedisDown:
            self._link.degraded += 1
            grown = self._fail_open or self.allowance.extend(reservation.generation_id, amount)
            reply = ["ok"] if grown else ["no"]
        if reply[0] != "ok":
            return None
        return Reservation(reservation.generation_id, reservation.account_id,
                           reservation.key_id, reservation.amount + amount)

    async def settle(self, reservation: Reservation, cost: Decimal, *,
                     extra_keys: Sequence[str] = (), limits: LimitArgs | None = None) -> None:
        """Releases the reservation and counts the cost in Redis at once; the charge itself
        reaches the AccountStore with the generation's record, and applied() says so. Never
        raises: a release Redis could not make lapses after reservation_ttl (and the charge
        still reaches the store with the record). RedisMeter appends the key's limit keys and
        arguments (its tokens and its slot's release)."""
        args = CreditArgs("settle", reservation.key_id, reservation.generation_id,
                          _units(cost) if cost > 0 else 0, self._ttls, limits=limits)
        try:
            await self._link.script(CREDITS_SCRIPT,
                                    (*self.keys(reservation.account_id), *extra_keys), args.argv())
        except RedisDown:
            self.allowance.settle(reservation.generation_id, cost)

    async def applied(self, records: Sequence[GenerationRecord]) -> None:
        """The AccountStore took these records' charges (the ledger wrote them): they stop
        counting as deferred. One script call per account. Raises RedisDown, so that the
        caller tries again (a repeated notice changes nothing)."""
        by_account: dict[str, list[str | int]] = {}
        for record in records:
            charge = charge_of(record)
            if charge > 0:
                by_account.setdefault(record.account_id, []).extend(
                    (record.id, _units(charge), record.key_id))
        await asyncio.gather(*(
            self._link.script(APPLIED_SCRIPT, self.keys(account_id), [*self._ttls[1:], *args])
            for account_id, args in by_account.items()))

    async def _ask(self, key: ApiKey, mode: str, generation_id: str, amount: int, *,
                    partial: str = "", held: int = 0, extra_keys: Sequence[str] = (),
                    limits: LimitArgs | None = None) -> list[str]:
        """The script's reply to reserve or extend, reading the snapshots it misses once."""
        limit = "" if key.credit_limit is None else str(_units(key.credit_limit))
        args = CreditArgs(mode, key.id, generation_id, amount, self._ttls, partial=partial,
                          limit=limit, held=held, limits=limits)
        for _ in range(3):
            raw = await self._link.script(CREDITS_SCRIPT,
                                          (*self.keys(key.account_id), *extra_keys), args.argv())
            reply = [x.decode() if isinstance(x, bytes) else str(x) for x in raw]
            if reply[0] != "miss":
                return reply
            if args.snapshot == STALE:
                raise Unavailable("Credit checks are unavailable (no balance known while the "
                                  "account store is down); retry shortly", retry_after=1.0)
            try:
                before, balance, spent = await self._snapshot(key, int(reply[1]))
            except Unavailable:
                # The store is down: what Redis has, however old.
                args = replace(args, snapshot=STALE)
                continue
            args = replace(args, snapshot=(before, balance, "" if spent is None else spent))
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
