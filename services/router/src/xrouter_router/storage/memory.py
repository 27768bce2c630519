"""The embedded mode's rate limiter and credit guard: exact within one router process (asyncio
is single-threaded; one lock per account serialises reservations). With Redis configured, the
Redis implementations make the same guarantees across replicas."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from decimal import Decimal

from xrouter_router.domain.errors import NotFound
from xrouter_router.domain.keys import ApiKey
from xrouter_router.domain.limits import (
    DAY,
    MINUTE,
    TokenAsk,
    TokenHold,
    limited,
    spendable,
    unaffordable,
)
from xrouter_router.domain.ports import AccountStore, Reservation
from xrouter_router.domain.types import RateWindow
from xrouter_router.storage.model_windows import TokenWindows


class InProcessLimiter:
    """Fixed windows (the minute and the UTC day) per key, plus a concurrency count. Windows
    that have ended are pruned when the minute turns (and a key's idle concurrency count at
    once), so memory holds only the current windows of the keys in use."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str, int], int] = {}
        self._tokens: dict[tuple[str, int], int] = {}
        self._running: dict[str, int] = {}
        self._pruned = -1

    @property
    def windows(self) -> int:
        """How many windows and concurrency counts are held."""
        return len(self._counts) + len(self._tokens) + len(self._running)

    async def acquire(self, key: ApiKey, now: float) -> RateWindow | None:
        lim = key.limits
        minute, day = int(now // MINUTE), int(now // DAY)
        self._prune(minute, day)
        checks = [(lim.requests_per_minute, (key.id, "m", minute), (minute + 1) * MINUTE),
                  (lim.requests_per_day, (key.id, "d", day), (day + 1) * DAY)]
        for limit, window, reset in checks:
            if limit is not None and self._counts.get(window, 0) >= limit:
                raise limited(f"{limit} requests per {'minute' if window[1] == 'm' else 'day'}",
                               limit, reset, now)
        tpm = lim.tokens_per_minute
        if tpm is not None and self._tokens.get((key.id, minute), 0) >= tpm:
            raise limited(f"{tpm} tokens per minute", tpm, (minute + 1) * MINUTE, now)
        if lim.concurrent is not None and self._running.get(key.id, 0) >= lim.concurrent:
            raise limited(f"{lim.concurrent} concurrent requests", lim.concurrent, now + 1, now,
                           retry_after=1.0)
        for limit, window, _ in checks:
            if limit is not None:
                self._counts[window] = self._counts.get(window, 0) + 1
        self._running[key.id] = self._running.get(key.id, 0) + 1
        return _window(key, self._counts, minute, day)

    def running(self, key_id: str) -> int:
        """The key's concurrency slots taken now."""
        return self._running.get(key_id, 0)

    async def release(self, key: ApiKey) -> None:
        running = self._running.get(key.id, 0)
        if running > 1:
            self._running[key.id] = running - 1
        else:
            self._running.pop(key.id, None)

    async def add_tokens(self, key: ApiKey, tokens: int, now: float) -> None:
        if key.limits.tokens_per_minute is not None:
            window = (key.id, int(now // MINUTE))
            self._tokens[window] = self._tokens.get(window, 0) + tokens

    def _prune(self, minute: int, day: int) -> None:
        """Once a minute: drop the windows that ended (one pass over what is held)."""
        if minute <= self._pruned:
            return
        self._pruned = minute
        self._counts = {w: n for w, n in self._counts.items()
                        if w[2] >= (minute if w[1] == "m" else day)}
        self._tokens = {w: n for w, n in self._tokens.items() if w[1] >= minute}


def _window(key: ApiKey, counts: dict[tuple[str, str, int], int], minute: int,
            day: int) -> RateWindow | None:
    lim = key.limits
    windows = []
    if lim.requests_per_minute is not None:
        windows.append(RateWindow(lim.requests_per_minute,
                                  lim.requests_per_minute - counts.get((key.id, "m", minute), 0),
                                  (minute + 1) * MINUTE))
    if lim.requests_per_day is not None:
        windows.append(RateWindow(lim.requests_per_day,
                                  lim.requests_per_day - counts.get((key.id, "d", day), 0),
                                  (day + 1) * DAY))
    return min(windows, key=lambda w: w.remaining) if windows else None


class InProcessCreditGuard:
    """Balances and key spend are read from the AccountStore at most every `refresh` seconds
    (this process's own charges are applied to the cached figures at once), so a request costs
    no database read; a top-up shows within `refresh` seconds. With `ledger_charges` the usage
    ledger debits the account with each generation's record (SqliteUsageLedger or
    PgUsageLedger with charge=True), so settling only applies the cost to the cached figures
    and gives back the reservation: no database call."""

    def __init__(self, accounts: AccountStore, *, refresh: float = 1.0,
                 clock: Callable[[], float] = time.monotonic,
                 ledger_charges: bool = False) -> None:
        self._accounts = accounts
        self._ledger_charges = ledger_charges
        self._refresh = refresh
        self._clock = clock
        self._reserved_account: dict[str, Decimal] = defaultdict(Decimal)
        self._reserved_key: dict[str, Decimal] = defaultdict(Decimal)
        self._held: dict[str, Decimal] = {}
        self._balance: dict[str, tuple[Decimal, float]] = {}
        self._spent: dict[str, tuple[Decimal, float]] = {}
        self._locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    def reserved(self, account_id: str) -> Decimal:
        """What the account's running generations hold now."""
        return self._reserved_account.get(account_id, Decimal(0))

    async def forget(self, account_id: str) -> None:
        """The account's balance changed elsewhere (a top-up): read it again next time."""
        self._balance.pop(account_id, None)

    async def _cached_balance(self, account_id: str) -> Decimal:
        cached = self._balance.get(account_id)
        if cached is not None and cached[1] > self._clock():
            return cached[0]
        account = await self._accounts.get(account_id)
        if account is None:
            raise NotFound(f"Account {account_id!r} does not exist")
        self._balance[account_id] = (account.balance, self._clock() + self._refresh)
        return account.balance

    async def _cached_spent(self, key_id: str) -> Decimal:
        cached = self._spent.get(key_id)
        if cached is not None and cached[1] > self._clock():
            return cached[0]
        spent = await self._accounts.spent(key_id)
        self._spent[key_id] = (spent, self._clock() + self._refresh)
        return spent

    async def _available(self, key: ApiKey) -> tuple[Decimal, Decimal | None]:
        for_account = await self._cached_balance(key.account_id) \
            - self._reserved_account[key.account_id]
        for_key = None
        if key.credit_limit is not None:
            for_key = key.credit_limit - await self._cached_spent(key.id) \
                - self._reserved_key[key.id]
        return for_account, for_key

    async def reserve(self, key: ApiKey, generation_id: str, amount: Decimal,
                      *, partial_from: Decimal | None = None) -> Reservation:
        async with self._locks[key.account_id]:
            for_account, for_key = await self._available(key)
            available = spendable(for_account, for_key)
            granted = amount if available >= amount else (
                available if partial_from is not None and available >= partial_from else None)
            if granted is None:
                raise unaffordable(amount, for_account, for_key)
            self._reserved_account[key.account_id] += granted
            self._reserved_key[key.id] += granted
            self._held[generation_id] = granted
            return Reservation(generation_id, key.account_id, key.id, granted)

    async def extend(self, key: ApiKey, reservation: Reservation,
                     amount: Decimal) -> Reservation | None:
        async with self._locks[key.account_id]:
            for_account, for_key = await self._available(key)
            if spendable(for_account, for_key) < amount:
                return None
            self._reserved_account[reservation.account_id] += amount
            self._reserved_key[reservation.key_id] += amount
            self._held[reservation.generation_id] = self._held.get(
                reservation.generation_id, Decimal(0)) + amount
            return Reservation(reservation.generation_id, reservation.account_id,
                               reservation.key_id, reservation.amount + amount)

    async def settle(self, reservation: Reservation, cost: Decimal) -> None:
        async with self._locks[reservation.account_id]:
            try:
                if cost > 0 and (self._ledger_charges or await self._accounts.charge(
                        reservation.account_id, reservation.key_id, reservation.generation_id,
                        cost)):
                    balance = self._balance.get(reservation.account_id)
                    if balance is not None:
                        self._balance[reservation.account_id] = (balance[0] - cost, balance[1])
                    spent = self._spent.get(reservation.key_id)
                    if spent is not None:
                        self._spent[reservation.key_id] = (spent[0] + cost, spent[1])
            finally:
                # Release what is still held for this generation, once (a repeated settle is a
                # no-op), even when the charge was interrupted (settling again charges it).
                held = self._held.pop(reservation.generation_id, Decimal(0))
                self._reserved_account[reservation.account_id] -= held
                self._reserved_key[reservation.key_id] -= held


class InProcessMeter:
    """The Meter port over the in-process limiter, token windows and credit guard: one call
    after the other at each end, the slot and the hold given back once per generation (so an
    interrupted conclusion can run again)."""

    def __init__(self, limiter: InProcessLimiter, guard: InProcessCreditGuard,
                 windows: TokenWindows | None = None) -> None:
        self._limiter = limiter
        self._guard = guard
        self.windows = windows or TokenWindows()
        self._slots: set[str] = set()  # generations holding a concurrency slot
        self._holds: dict[str, TokenHold] = {}  # generations holding tokens in model windows

    async def admit(self, key: ApiKey, generation_id: str, amount: Decimal, *,
                    partial_from: Decimal | None, now: float,
                    tokens: Sequence[TokenAsk] = ()) -> tuple[RateWindow | None, Reservation,
                                                              TokenHold | None]:
        window = await self._limiter.acquire(key, now)
        self._slots.add(generation_id)
        hold = None
        try:
            if tokens:
                hold = self.windows.take(key.id, tokens, now)
                self._holds[generation_id] = hold
            reservation = await self._guard.reserve(key, generation_id, amount,
                                                    partial_from=partial_from)
        except BaseException:
            self._give_back(key, generation_id, "", 0)
            await self._release(key, generation_id)
            raise
        return window, reservation, hold

    async def extend(self, key: ApiKey, reservation: Reservation,
                     amount: Decimal) -> Reservation | None:
        return await self._guard.extend(key, reservation, amount)

    async def charge(self, reservation: Reservation, cost: Decimal) -> None:
        await self._guard.settle(reservation, cost)

    async def conclude(self, key: ApiKey, reservation: Reservation, cost: Decimal, tokens: int,
                       now: float, *, hold: TokenHold | None = None, served: str = "") -> None:
        # The hold first: it takes no await, so no interruption can leave it half settled.
        self._give_back(key, reservation.generation_id, served, tokens)
        try:
            await self._guard.settle(reservation, cost)
            if tokens > 0:
                await self._limiter.add_tokens(key, tokens, now)
        finally:
            await self._release(key, reservation.generation_id)

    def _give_back(self, key: ApiKey, generation_id: str, served: str, tokens: int) -> None:
        """Settle the generation's hold in the model windows, once."""
        hold = self._holds.pop(generation_id, None)
        if hold is not None:
            self.windows.settle(key.id, hold, served, tokens)

    async def _release(self, key: ApiKey, generation_id: str) -> None:
        if generation_id in self._slots:
            self._slots.discard(generation_id)
            await self._limiter.release(key)
