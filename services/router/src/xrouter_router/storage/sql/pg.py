"""The PostgreSQL stores: API keys, accounts with their credit ledger, and generation records, over
one psycopg_pool.AsyncConnectionPool (storage/postgres.pool), through the functions of migrations
0001 and 0002, behaving as the SQLite ones do under the tests/integration/test_*_contract.py suites."""

from __future__ import annotations

import asyncio
import builtins
import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import orjson
import psycopg
from psycopg import errors
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from xrouter_router.domain.addresses import AllowList
from xrouter_router.domain.errors import (
    Attempt,
    DatabaseUnavailable,
    InvalidRequest,
    NotFound,
    XRouterError,
)
from xrouter_router.domain.keys import ApiKey, Limits
from xrouter_router.domain.ledger import (
    REPORT_GROUPS,
    Account,
    GenerationRecord,
    UsageRow,
    UsageTotals,
    charge_of,
)
from xrouter_router.storage import tasks
from xrouter_router.storage.record_codec import generation_document, money
from xrouter_router.storage.sql.postgres import with_defaults
from xrouter_router.storage.sql.usage_sql import KEY_POLICIES, report_groups, where, with_policies
from xrouter_router.storage.timing import Latency

log = logging.getLogger(__name__)

Row = tuple[Any, ...]

# numeric(20, 8) rounds to 1e-8 half away from zero; the range is SQLite's (int64 units of 1e-8),
# so that an amount one store accepts the other accepts too.
def _translate(exc: psycopg.Error) -> XRouterError:
    """The one place psycopg's errors become the router's (see PgDatabase)."""
    if isinstance(exc, errors.UniqueViolation):
        return InvalidRequest(f"already exists ({exc.diag.constraint_name or 'unique'})")
    if isinstance(exc, errors.ForeignKeyViolation):
        return NotFound("no such account", param="account_id")
    if isinstance(exc, psycopg.DataError):  # a value the column cannot hold
        return InvalidRequest(f"a value cannot be stored: {exc.diag.message_primary}")
    # Connections refused or broken, no node accepting writes (PoolTimeout), a failover in
    # progress, deadlocks and serialization failures: all worth a retry. Anything else is a bug;
    # either way the client gets the generic message and the log gets psycopg's text.
    level = logging.WARNING if isinstance(
        exc, psycopg.OperationalError | errors.ReadOnlySqlTransaction) else logging.ERROR
    log.log(level, "database: %s", _reason(exc))
    return DatabaseUnavailable()


def _reason(exc: psycopg.Error) -> str:
    return f"{type(exc).__name__}: " + " ".join(str(exc).split())[:300]


class PgDatabase:
    """The pool the three stores share; each call is one transaction on one pooled connection
    (committed when it returns, rolled back when it raises), and psycopg's errors leave it as the
    router's: unique violations InvalidRequest, a missing account NotFound, connection trouble
    Unavailable. The caller opens and closes the pool.

    When no connection could be had (PostgreSQL down, no primary), every caller fails fast
    until a background probe gets a connection again (every `probe_every` seconds), instead
    of each waiting out the pool's timeout: the degraded paths (key cache, the stream
    ledger) answer at once. With watch(), a connection of its own (not the pool's, which a
    burst may hold) is probed while the database is up too, so an outage is known within
    about `probe_every + probe_timeout` seconds rather than after a caller waited out the
    pool's timeout, and recovery within `probe_every` of a primary accepting writes again.
    close() stops the probes."""

    def __init__(self, pool: AsyncConnectionPool[Any], *, probe_every: float = 0.5,
                 probe_timeout: float = 2.0) -> None:
        self._pool = pool
        self._probe_every = probe_every
        self._probe_timeout = probe_timeout
        self._down: str | None = None
        self._probe: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self.latency = Latency()  # of each call: a pooled connection and its transaction
        self.errors = 0  # calls failed by the database itself (not refused as invalid)

    @property
    def down(self) -> bool:
        return self._down is not None

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[Row]]:
        if self._down is not None:
            raise DatabaseUnavailable()
        started = time.perf_counter()
        try:
            async with self._pool.connection() as conn:
                yield conn
        except psycopg.Error as exc:
            translated = _translate(exc)
            if not isinstance(translated, InvalidRequest | NotFound):
                self.errors += 1
            if isinstance(exc, PoolTimeout):
                self._went_down(_reason(exc))
            raise translated from exc
        finally:
            self.latency.observe(time.perf_counter() - started)

    def _went_down(self, reason: str) -> None:
        if self._down is None:
            log.warning("%s; failing fast until a connection succeeds again", reason)
        self._down = reason
        watched = self._watcher is not None and not self._watcher.done()
        if not watched and (self._probe is None or self._probe.done()):
            self._probe = asyncio.get_running_loop().create_task(self._wait_until_up())

    async def _wait_until_up(self) -> None:
        while True:
            await asyncio.sleep(self._probe_every)
            try:
                async with self._pool.connection(timeout=self._probe_timeout) as conn:
                    await conn.execute("SELECT 1")
            except psycopg.Error:
                continue
            self._down = None
            log.info("database reachable again")
            return

    def watch(self, conninfo: str, *, timeout: float = 1.0) -> None:
        """Start the watcher (once): `conninfo` as the pool's, with the same node selection
        (target_session_attrs=read-write finds the primary)."""
        if self._watcher is None:
            self._watcher = asyncio.get_running_loop().create_task(
                self._watch(with_defaults(conninfo), timeout))

    async def _watch(self, conninfo: str, timeout: float) -> None:
        conn: psycopg.AsyncConnection[Any] | None = None
        try:
            while True:
                try:
                    if conn is None or conn.closed:
                        # Bounded by the conninfo's connect_timeout per host: a silent dead node
                        # costs that much before the next is tried (a refusing one, nothing).
                        conn = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
                    async with asyncio.timeout(timeout):
                        await conn.execute("SELECT 1")
                except (psycopg.Error, TimeoutError, OSError) as exc:
                    if conn is not None:
                        await conn.close()
                        conn = None
                    if self._down is None:
                        self._went_down(f"{type(exc).__name__}: the watcher's probe failed")
                else:
                    if self._down is not None:
                        self._down = None
                        log.info("database reachable again")
                await asyncio.sleep(self._probe_every)
        finally:
            if conn is not None:
                await conn.close()

    async def close(self) -> None:
        await tasks.stop([self._probe, self._watcher])

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        async with self.connection() as conn:
            cursor = await conn.execute(sql, params)
            return await cursor.fetchone()

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        async with self.connection() as conn:
            cursor = await conn.execute(sql, params)
            return await cursor.fetchall()

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """The number of rows the statement changed."""
        async with self.connection() as conn:
            return (await conn.execute(sql, params)).rowcount


def as_time(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


def as_unix(dt: datetime | None) -> float | None:
    return None if dt is None else dt.timestamp()


def _day(ts: float) -> date:
    """The UTC date of unix time `ts`, as the rollup keys it."""
    return datetime.fromtimestamp(ts, UTC).date()


KEY_COLUMNS = ("id, account_id, tier, prefix, coalesce(label, ''), rpm, rpd, tpm, concurrent, "
                "credit_limit, allowed_models, expires_at, disabled, created_at, allowed_ips, "
                + KEY_POLICIES)
_UPDATE_KEY = ("UPDATE api_keys SET tier = %s, label = %s, rpm = %s, rpd = %s, tpm = %s, "
               "concurrent = %s, credit_limit = %s, allowed_models = %s, expires_at = %s, "
               "disabled = %s, allowed_ips = %s, residency = %s, pii_guard = %s, pii_scope = %s, "
               "updated_at = now() WHERE id = %s")


def key_from_row(row: Row) -> ApiKey:
    (key_id, account_id, tier, prefix, label, rpm, rpd, tpm, concurrent, credit_limit, models,
     expires_at, disabled, created_at, ips, *policies) = row
    return with_policies(ApiKey(
        id=key_id, account_id=account_id, tier=tier, prefix=prefix, label=label,
        limits=Limits(rpm, rpd, tpm, concurrent), credit_limit=credit_limit,
        allowed_models=tuple(models), allowed_ips=AllowList.parse(ips),
        expires_at=as_unix(expires_at), disabled=disabled, created_at=created_at.timestamp()),
        policies)


def _mutable(key: ApiKey) -> tuple[Any, ...]:
    """What update() may change, in _UPDATE_KEY's order."""
    limits = key.limits
    return (key.tier, key.label, limits.requests_per_minute, limits.requests_per_day,
            limits.tokens_per_minute, limits.concurrent,
            None if key.credit_limit is None else money(key.credit_limit),
            list(key.allowed_models), as_time(key.expires_at), key.disabled,
            list(key.allowed_ips.entries), key.residency, key.pii_guard, key.pii_scope)


class PgKeyStore:
    """KeyStore over PgDatabase. The master key is configured, never stored."""

    def __init__(self, db: PgDatabase) -> None:
        self._db = db

    async def create(self, key: ApiKey, hashed: str) -> None:
        if key.master:
            raise InvalidRequest("the master key is not stored")
        await self._db.execute(
            "INSERT INTO api_keys (id, account_id, key_hash, prefix, created_at, tier, label, rpm, rpd,"
            " tpm, concurrent, credit_limit, allowed_models, expires_at, disabled, allowed_ips,"
            " residency, pii_guard, pii_scope)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (key.id, key.account_id, hashed, key.prefix, as_time(key.created_at), *_mutable(key)))

    async def by_hash(self, hashed: str) -> ApiKey | None:
        row = await self._db.fetchone(f"SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = %s",
                                      (hashed,))
        return None if row is None else key_from_row(row)

    async def get(self, key_id: str) -> ApiKey | None:
        row = await self._db.fetchone(f"SELECT {KEY_COLUMNS} FROM api_keys WHERE id = %s", (key_id,))
        return None if row is None else key_from_row(row)

    async def list(self, account_id: str | None = None) -> builtins.list[ApiKey]:
        """Oldest first (by created_at, then id, bytewise as SQLite compares)."""
        clause, params = where({"account_id = %s": account_id})
        rows = await self._db.fetchall(
            f'SELECT {KEY_COLUMNS} FROM api_keys {clause} ORDER BY created_at, id COLLATE "C"', params)
        return [key_from_row(row) for row in rows]

    async def update(self, key: ApiKey) -> None:
        """NotFound when there is no key with this id."""
        if await self._db.execute(_UPDATE_KEY, (*_mutable(key), key.id)) == 0:
            raise NotFound(f"no API key {key.id!r}")

    async def delete(self, key_id: str) -> bool:
        return await self._db.execute("DELETE FROM api_keys WHERE id = %s", (key_id,)) > 0


class PgAccountStore:
    """AccountStore over PgDatabase: balances move only with credit_entries, through
    xrouter_post_credit; a balance may go below zero (the CreditGuard prevents that)."""

    def __init__(self, db: PgDatabase) -> None:
        self._db = db

    async def create(self, account: Account) -> None:
        """A new account starts at zero (a balance is only ever the sum of its entries)."""
        if account.balance != 0:
            raise InvalidRequest("a new account starts with a zero balance; top it up")
        if await self._db.execute("INSERT INTO accounts (id, name) VALUES (%s, %s)"
                                  " ON CONFLICT (id) DO NOTHING", (account.id, account.name)) == 0:
            raise InvalidRequest(f"the account {account.id!r} already exists")

    async def get(self, account_id: str) -> Account | None:
        row = await self._db.fetchone(
            "SELECT id, coalesce(name, ''), balance FROM accounts WHERE id = %s", (account_id,))
        return None if row is None else Account(row[0], row[1], row[2])

    async def top_up(self, account_id: str, amount: Decimal, reference: str) -> Decimal:
        amount = money(amount)
        if amount <= 0:
            raise InvalidRequest(f"a top-up must be positive, not {amount}", param="amount")
        balance = await self._post(account_id, amount, "top_up", reference=reference)
        assert balance is not None  # a top-up has no generation id, so it is never a repeat
        return balance

    async def charge(self, account_id: str, key_id: str, generation_id: str,
                     amount: Decimal) -> bool:
        amount = money(amount)
        if amount < 0:
            raise InvalidRequest(f"a charge cannot be negative: {amount}", param="amount")
        return await self._post(account_id, -amount, "usage", generation_id=generation_id,
                                key_id=key_id) is not None

    async def spent(self, key_id: str) -> Decimal:
        """The sum of the key's charges."""
        row = await self._db.fetchone("SELECT spent FROM key_spend WHERE key_id = %s", (key_id,))
        return Decimal(0) if row is None else Decimal(row[0])

    async def _post(self, account_id: str, amount: Decimal, kind: str, *,
                    generation_id: str | None = None, key_id: str | None = None,
                    reference: str | None = None) -> Decimal | None:
        """xrouter_post_credit: the new balance, or None when the generation was charged before."""
        row = await self._db.fetchone(
            "SELECT xrouter_post_credit(%s::text, %s::numeric, %s::text, %s::text, %s::text, %s::text)",
            (account_id, amount, kind, generation_id, key_id, reference))
        return None if row is None else row[0]


GENERATION_COLUMNS = ("g.id, g.created_at, g.key_id, g.account_id, g.model, g.provider, g.streamed, "
                       "g.prompt_tokens, g.completion_tokens, g.cached_tokens, g.reasoning_tokens, "
                       "g.counts_native, g.cost, g.latency_ms, g.generation_ms, g.finish_reason, "
                       "g.status, g.attempts, g.cache_write_tokens, g.jurisdiction, "
                       "g.price_currency, g.fx_rate, g.cost_original, g.fx_date, "
                       "coalesce(g.vat, 0), coalesce(g.vat_rate, 0)")
_TOTALS = ("coalesce(sum(requests), 0)::bigint, coalesce(sum(prompt_tokens), 0)::bigint, "
           "coalesce(sum(completion_tokens), 0)::bigint, coalesce(sum(cost), 0), "
           "coalesce(sum(cached_tokens), 0)::bigint, coalesce(sum(cache_write_tokens), 0)::bigint, "
           "coalesce(sum(reasoning_tokens), 0)::bigint, coalesce(sum(vat), 0)")
# What report() groups by for each name (bytewise, as SQLite orders), and UsageRow's field for it.
_GROUPS = {"day": ("to_char(day, 'YYYY-MM-DD') COLLATE \"C\"", "day"),
           "key": ('key_id COLLATE "C"', "key_id"),
           "model": ('model COLLATE "C"', "model"),
           "provider": ('provider COLLATE "C"', "provider")}
assert set(_GROUPS) == REPORT_GROUPS


def generation_of(row: Row) -> GenerationRecord:
    (gen_id, created_at, key_id, account_id, model, provider, streamed, prompt, completion, cached,
     reasoning, native, cost, latency_ms, generation_ms, finish_reason, status, attempts,
     cache_write, jurisdiction, currency, fx_rate, cost_original, fx_date, vat, vat_rate) = row
    return GenerationRecord(
        jurisdiction=jurisdiction or "", price_currency=currency or "RUB", fx_rate=fx_rate,
        cost_original=cost_original, fx_date=fx_date, vat=vat, vat_rate=vat_rate.normalize(),
        id=gen_id, created_at=created_at.timestamp(), key_id=key_id, account_id=account_id,
        model=model, provider=provider, streamed=streamed, prompt_tokens=prompt,
        completion_tokens=completion, cached_tokens=cached, reasoning_tokens=reasoning,
        cache_write_tokens=cache_write or 0,
        counts_native=native, cost=cost, latency_ms=latency_ms, generation_ms=generation_ms,
        finish_reason=finish_reason, status=status,
        attempts=tuple(Attempt(**a) for a in attempts or ()))


def _totals(row: Row) -> UsageTotals:
    requests, prompt, completion, cost, cached, cache_write, reasoning, vat = row
    return UsageTotals(requests, prompt, completion, cost, cached, cache_write, reasoning, vat)


class PgUsageLedger:
    """UsageLedger over PgDatabase, through xrouter_record_generations: a generation, its rollup
    and nothing else (recording moves no money; AccountStore.charge does), so generations of the
    master key, whose account has no row, are recorded like any other. created_at is kept to the
    microsecond (timestamptz).

    With `charge`, through xrouter_record_and_charge: each record also debits its account by
    charge_of(record), once per generation id, in the record's transaction (the cluster mode,
    where the charge travels with the record; see RedisCreditGuard). A charge to an account
    that does not exist refuses the batch (InvalidRequest)."""

    def __init__(self, db: PgDatabase, *, charge: bool = False) -> None:
        self._db = db
        self._charge = charge

    async def record(self, record: GenerationRecord) -> None:
        await self.record_many((record,))

    async def record_many(self, records: Sequence[GenerationRecord]) -> int:
        """Records a batch in one transaction; returns how many were new (a repeated id, in the
        batch or recorded before, is ignored: the first one wins)."""
        batch: dict[str, dict[str, Any]] = {}
        for record in records:
            if record.id not in batch:
                batch[record.id] = generation_document(record)
        if not batch:
            return 0
        documents = orjson.dumps(list(batch.values())).decode()
        if self._charge:
            due = [r.id for r in records if charge_of(r) > 0]
            row = await self._db.fetchone("SELECT xrouter_record_and_charge(%s::jsonb, %s::text[])",
                                          (documents, due))
        else:
            row = await self._db.fetchone("SELECT xrouter_record_generations(%s::jsonb)",
                                          (documents,))
        assert row is not None
        return int(row[0])

    async def get(self, generation_id: str) -> GenerationRecord | None:
        # Through generation_ids: its created_at prunes the scan to one partition.
        row = await self._db.fetchone(
            f"SELECT {GENERATION_COLUMNS} FROM generation_ids i JOIN generations g"
            " ON g.id = i.id AND g.created_at = i.created_at WHERE i.id = %s", (generation_id,))
        return None if row is None else generation_of(row)

    async def totals(self, *, key_id: str | None = None, account_id: str | None = None,
                     since: float | None = None) -> UsageTotals:
        """Over the given key and/or account (everything when neither), from the UTC day of
        `since` on (the rollup counts whole days)."""
        clause, params = where({"key_id = %s": key_id, "account_id = %s": account_id,
                                "day >= %s": None if since is None else _day(since)})
        row = await self._db.fetchone(f"SELECT {_TOTALS} FROM usage_daily {clause}", params)
        assert row is not None
        return _totals(row)

    async def report(self, *, account_id: str | None, group_by: Sequence[str], since: float,
                     until: float) -> builtins.list[UsageRow]:
        """One row per group over the UTC days from since's through until's (both included), of
        one account or of all (None), ordered by the group's fields in the order given. With no
        group, one row of totals (none when nothing was recorded)."""
        groups = [_GROUPS[g] for g in report_groups(group_by)]
        clause, params = where({"day >= %s": _day(since), "day <= %s": _day(until),
                                "account_id = %s": account_id})
        positions = ", ".join(str(i + 1) for i in range(len(groups)))
        tail = f"GROUP BY {positions} ORDER BY {positions}" if groups else "HAVING count(*) > 0"
        selected = ", ".join([*(expr for expr, _ in groups), _TOTALS])
        rows = await self._db.fetchall(
            f"SELECT {selected} FROM usage_daily {clause} {tail}", params)
        fields = [field for _, field in groups]
        return [UsageRow(**dict(zip(fields, row, strict=False)), totals=_totals(row[len(fields):]))
                for row in rows]

    async def charged(self, *, account_id: str, since: float,
                      until: float) -> builtins.list[GenerationRecord]:
        """The account's generations that cost something in [since, until), oldest first."""
        rows = await self._db.fetchall(
            f"SELECT {GENERATION_COLUMNS} FROM generations g WHERE g.account_id = %s"
            " AND g.created_at >= %s AND g.created_at < %s AND g.cost > 0"
            ' ORDER BY g.created_at, g.id COLLATE "C"',
            (account_id, as_time(since), as_time(until)))
        return [generation_of(row) for row in rows]
