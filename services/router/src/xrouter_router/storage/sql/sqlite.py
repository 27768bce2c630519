"""The embedded mode's stores: API keys, accounts with their credit ledger, and the usage ledger,
over one SqliteDatabase (sqlite_db.py), behaving as the PostgreSQL ones do under the contract tests
in tests/integration/test_{key_store,account_store,usage_ledger}_contract.py."""

from __future__ import annotations

import builtins
import json
import sqlite3
import time
from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from typing import Any

from xrouter_router.domain.addresses import AllowList
from xrouter_router.domain.errors import Attempt, InvalidRequest, NotFound
from xrouter_router.domain.keys import ApiKey, Limits
from xrouter_router.domain.ledger import (
    REPORT_GROUPS,
    Account,
    GenerationRecord,
    UsageRow,
    UsageTotals,
    charge_of,
)
from xrouter_router.storage.sql.sqlite_db import SqliteDatabase, from_units, to_units, utc_day
from xrouter_router.storage.sql.usage_sql import KEY_POLICIES, report_groups, where, with_policies


def _require_account(conn: sqlite3.Connection, account_id: str) -> None:
    if conn.execute("SELECT 1 FROM accounts WHERE id = ?", (account_id,)).fetchone() is None:
        raise NotFound(f"no account {account_id!r}", param="account_id")


def _post_credit(conn: sqlite3.Connection, account_id: str, units: int, kind: str, *,
                 generation_id: str | None = None, key_id: str | None = None,
                 reference: str | None = None) -> int | None:
    """xrouter_post_credit: one entry and the balance it moves; None (and nothing written) when
    the generation already has its usage entry, else the new balance."""
    _require_account(conn, account_id)
    entry = conn.execute(
        "INSERT INTO credit_entries (created_at, account_id, amount, kind, generation_id, key_id,"
        " reference) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (generation_id) DO NOTHING",
        (time.time(), account_id, units, kind, generation_id, key_id, reference))
    if entry.rowcount == 0:
        return None
    if key_id is not None:
        conn.execute("INSERT INTO key_spent (key_id, spent) VALUES (?, ?)"
                     " ON CONFLICT (key_id) DO UPDATE SET spent = spent + excluded.spent",
                     (key_id, -units))
    row = conn.execute("UPDATE accounts SET balance = balance + ? WHERE id = ? RETURNING balance",
                       (units, account_id)).fetchone()
    return int(row[0])


KEY_COLUMNS = ("id, account_id, tier, prefix, label, rpm, rpd, tpm, concurrent, credit_limit, "
                "allowed_models, expires_at, disabled, created_at, allowed_ips, " + KEY_POLICIES)


def key_from_row(row: Sequence[Any]) -> ApiKey:
    (key_id, account_id, tier, prefix, label, rpm, rpd, tpm, concurrent, credit_limit, models,
     expires_at, disabled, created_at, ips, *policies) = row
    return with_policies(ApiKey(
        id=key_id, account_id=account_id, tier=tier, prefix=prefix, label=label,
        limits=Limits(rpm, rpd, tpm, concurrent),
        credit_limit=None if credit_limit is None else from_units(credit_limit),
        allowed_models=tuple(json.loads(models)), allowed_ips=AllowList.parse(json.loads(ips)),
        expires_at=expires_at, disabled=bool(disabled), created_at=created_at), policies)


def _mutable(key: ApiKey) -> tuple[Any, ...]:
    """What update() may change, in _UPDATE_KEY's order (id, account_id, prefix and created_at are
    fixed when the key is created)."""
    limits = key.limits
    return (key.tier, key.label, limits.requests_per_minute, limits.requests_per_day,
            limits.tokens_per_minute, limits.concurrent,
            None if key.credit_limit is None else to_units(key.credit_limit),
            json.dumps(list(key.allowed_models)), key.expires_at, int(key.disabled),
            json.dumps(list(key.allowed_ips.entries)), key.residency, key.pii_guard, key.pii_scope)


_UPDATE_KEY = ("UPDATE api_keys SET tier = ?, label = ?, rpm = ?, rpd = ?, tpm = ?, concurrent = ?, "
               "credit_limit = ?, allowed_models = ?, expires_at = ?, disabled = ?, allowed_ips = ?, "
               "residency = ?, pii_guard = ?, pii_scope = ?, "
               "updated_at = ? "
               "WHERE id = ?")


class SqliteKeyStore:
    """KeyStore over SqliteDatabase. The master key is configured, never stored."""

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def create(self, key: ApiKey, hashed: str) -> None:
        if key.master:
            raise InvalidRequest("the master key is not stored")
        values = _mutable(key)

        def insert(conn: sqlite3.Connection) -> None:
            _require_account(conn, key.account_id)
            if conn.execute("SELECT 1 FROM api_keys WHERE id = ? OR key_hash = ?",
                            (key.id, hashed)).fetchone() is not None:
                raise InvalidRequest("an API key with this id or hash already exists")
            conn.execute(
                "INSERT INTO api_keys (id, account_id, key_hash, prefix, created_at, tier, label, rpm,"
                " rpd, tpm, concurrent, credit_limit, allowed_models, expires_at, disabled,"
                " allowed_ips, residency, pii_guard, pii_scope, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (key.id, key.account_id, hashed, key.prefix, key.created_at, *values, time.time()))
        await self._db.write(insert)

    async def by_hash(self, hashed: str) -> ApiKey | None:
        return await self._one(f"SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = ?", hashed)

    async def get(self, key_id: str) -> ApiKey | None:
        return await self._one(f"SELECT {KEY_COLUMNS} FROM api_keys WHERE id = ?", key_id)

    async def list(self, account_id: str | None = None) -> builtins.list[ApiKey]:
        """Oldest first (by created_at, then id)."""
        clause, params = where({"account_id = ?": account_id})
        sql = f"SELECT {KEY_COLUMNS} FROM api_keys {clause} ORDER BY created_at, id"
        rows = await self._db.read(lambda conn: conn.execute(sql, params).fetchall())
        return [key_from_row(row) for row in rows]

    async def update(self, key: ApiKey) -> None:
        """NotFound when there is no key with this id."""
        params = (*_mutable(key), time.time(), key.id)

        def change(conn: sqlite3.Connection) -> None:
            if conn.execute(_UPDATE_KEY, params).rowcount == 0:
                raise NotFound(f"no API key {key.id!r}")
        await self._db.write(change)

    async def delete(self, key_id: str) -> bool:
        def remove(conn: sqlite3.Connection) -> bool:
            return conn.execute("DELETE FROM api_keys WHERE id = ?", (key_id,)).rowcount > 0
        return await self._db.write(remove)

    async def _one(self, sql: str, param: str) -> ApiKey | None:
        row = await self._db.read(lambda conn: conn.execute(sql, (param,)).fetchone())
        return None if row is None else key_from_row(row)


class SqliteAccountStore:
    """AccountStore over SqliteDatabase: balances move only with credit_entries, in one
    transaction; a balance may go below zero (the CreditGuard, not the ledger, prevents that)."""

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def create(self, account: Account) -> None:
        """A new account starts at zero (a balance is only ever the sum of its entries)."""
        if account.balance != 0:
            raise InvalidRequest("a new account starts with a zero balance; top it up")

        def insert(conn: sqlite3.Connection) -> None:
            if conn.execute("INSERT INTO accounts (id, name, created_at) VALUES (?, ?, ?)"
                            " ON CONFLICT (id) DO NOTHING",
                            (account.id, account.name, time.time())).rowcount == 0:
                raise InvalidRequest(f"the account {account.id!r} already exists")
        await self._db.write(insert)

    async def get(self, account_id: str) -> Account | None:
        row = await self._db.read(lambda conn: conn.execute(
            "SELECT id, name, balance FROM accounts WHERE id = ?", (account_id,)).fetchone())
        return None if row is None else Account(row[0], row[1], from_units(row[2]))

    async def top_up(self, account_id: str, amount: Decimal, reference: str) -> Decimal:
        units = to_units(amount)
        if units <= 0:
            raise InvalidRequest(f"a top-up must be positive, not {amount}", param="amount")

        def post(conn: sqlite3.Connection) -> int | None:
            return _post_credit(conn, account_id, units, "top_up", reference=reference)
        balance = await self._db.write(post)
        assert balance is not None  # a top-up has no generation id, so it is never a repeat
        return from_units(balance)

    async def charge(self, account_id: str, key_id: str, generation_id: str,
                     amount: Decimal) -> bool:
        units = to_units(amount)
        if units < 0:
            raise InvalidRequest(f"a charge cannot be negative: {amount}", param="amount")

        def post(conn: sqlite3.Connection) -> int | None:
            return _post_credit(conn, account_id, -units, "usage", generation_id=generation_id,
                                key_id=key_id)
        return await self._db.write(post) is not None

    async def spent(self, key_id: str) -> Decimal:
        """The sum of the key's charges."""
        row = await self._db.read(lambda conn: conn.execute(
            "SELECT spent FROM key_spent WHERE key_id = ?", (key_id,)).fetchone())
        return from_units(0 if row is None else row[0])


GENERATION_COLUMNS = ("id, created_at, key_id, account_id, model, provider, streamed, prompt_tokens, "
                       "completion_tokens, cached_tokens, reasoning_tokens, counts_native, cost, "
                       "latency_ms, generation_ms, finish_reason, status, attempts, "
                       "cache_write_tokens, jurisdiction, price_currency, fx_rate, cost_original, "
                       "fx_date, vat, vat_rate, cost_net")
_INSERT_GENERATION = (f"INSERT INTO generations ({GENERATION_COLUMNS}) VALUES "
                      f"({', '.join('?' * 27)}) ON CONFLICT (id) DO NOTHING")
_ADD_USAGE = """INSERT INTO usage_daily (day, account_id, key_id, model, provider, requests,
    prompt_tokens, completion_tokens, cost, cached_tokens, cache_write_tokens, reasoning_tokens, vat)
VALUES (?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (day, account_id, key_id, model, provider) DO UPDATE SET
    requests = requests + 1, prompt_tokens = prompt_tokens + excluded.prompt_tokens,
    completion_tokens = completion_tokens + excluded.completion_tokens,
    cost = cost + excluded.cost, cached_tokens = cached_tokens + excluded.cached_tokens,
    cache_write_tokens = cache_write_tokens + excluded.cache_write_tokens,
    reasoning_tokens = reasoning_tokens + excluded.reasoning_tokens, vat = vat + excluded.vat"""
_TOTALS = ("COALESCE(SUM(requests), 0), COALESCE(SUM(prompt_tokens), 0), "
           "COALESCE(SUM(completion_tokens), 0), COALESCE(SUM(cost), 0), "
           "COALESCE(SUM(cached_tokens), 0), COALESCE(SUM(cache_write_tokens), 0), "
           "COALESCE(SUM(reasoning_tokens), 0), COALESCE(SUM(vat), 0)")
# The usage_daily column (named as UsageRow's field) for each name report() may group by.
_GROUPS = {"day": "day", "key": "key_id", "model": "model", "provider": "provider"}
assert set(_GROUPS) == REPORT_GROUPS


def _generation_row(r: GenerationRecord, cost: int, vat: int) -> tuple[Any, ...]:
    attempts = json.dumps([
        {"model": a.model, "provider": a.provider, "deployment": a.deployment, "outcome": a.outcome,
         "latency_ms": a.latency_ms, "error": a.error, "status": a.status} for a in r.attempts])
    return (r.id, r.created_at, r.key_id, r.account_id, r.model, r.provider, int(r.streamed),
            r.prompt_tokens, r.completion_tokens, r.cached_tokens, r.reasoning_tokens,
            int(r.counts_native), cost, r.latency_ms, r.generation_ms, r.finish_reason, r.status,
            attempts, r.cache_write_tokens, r.jurisdiction, r.price_currency,
            None if r.fx_rate is None else str(r.fx_rate),
            None if r.cost_original is None else to_units(r.cost_original),
            None if r.fx_date is None else r.fx_date.isoformat(),
            vat, to_units(r.vat_rate), cost - vat)


def generation_of(row: Sequence[Any]) -> GenerationRecord:
    (gen_id, created_at, key_id, account_id, model, provider, streamed, prompt, completion, cached,
     reasoning, native, cost, latency_ms, generation_ms, finish_reason, status, attempts,
     cache_write, jurisdiction, currency, fx_rate, cost_original, fx_date, vat, vat_rate, _) = row
    return GenerationRecord(
        jurisdiction=jurisdiction, price_currency=currency,
        fx_date=None if fx_date is None else date.fromisoformat(fx_date),
        fx_rate=None if fx_rate is None else Decimal(fx_rate),
        cost_original=None if cost_original is None else from_units(cost_original),
        vat=from_units(vat), vat_rate=from_units(vat_rate).normalize(),
        id=gen_id, created_at=created_at, key_id=key_id, account_id=account_id, model=model,
        provider=provider, streamed=bool(streamed), prompt_tokens=prompt, completion_tokens=completion,
        cached_tokens=cached, reasoning_tokens=reasoning, cache_write_tokens=cache_write,
        counts_native=bool(native),
        cost=from_units(cost), latency_ms=latency_ms, generation_ms=generation_ms,
        finish_reason=finish_reason, status=status,
        attempts=tuple(Attempt(**a) for a in json.loads(attempts)))


def _totals(row: Sequence[Any]) -> UsageTotals:
    requests, prompt, completion, cost, cached, cache_write, reasoning, vat = row
    return UsageTotals(requests, prompt, completion, from_units(cost), cached, cache_write,
                       reasoning, from_units(vat))


class SqliteUsageLedger:
    """UsageLedger over SqliteDatabase: a generation and its rollup, in one transaction. Recording
    moves no money (AccountStore.charge does), so generations of the master key, which has no
    account row, are recorded like any other.

    With `charge` (the embedded mode, as PgUsageLedger(charge=True) in the cluster mode): each
    new record also debits its account by charge_of(record) in the record's transaction, once
    per generation id, so a request's conclusion is one write (one hop to the database's
    thread, shared with the writes of other requests) and a record never lacks its charge. A
    charge to an account that does not exist refuses the record (InvalidRequest)."""

    def __init__(self, db: SqliteDatabase, *, charge: bool = False) -> None:
        self._db = db
        self._charge = charge

    async def record(self, record: GenerationRecord) -> None:
        cost, vat = to_units(record.cost), to_units(record.vat)
        row = _generation_row(record, cost, vat)
        usage = (utc_day(record.created_at), record.account_id, record.key_id, record.model,
                 record.provider, record.prompt_tokens, record.completion_tokens, cost,
                 record.cached_tokens, record.cache_write_tokens, record.reasoning_tokens, vat)

        due = to_units(charge_of(record)) if self._charge else 0

        def insert(conn: sqlite3.Connection) -> None:
            if conn.execute(_INSERT_GENERATION, row).rowcount == 0:
                return  # recorded before, and charged then
            conn.execute(_ADD_USAGE, usage)
            if due > 0:
                if conn.execute("SELECT 1 FROM accounts WHERE id = ?",
                                (record.account_id,)).fetchone() is None:
                    raise InvalidRequest(f"a charge for no account '{record.account_id}'")
                _post_credit(conn, record.account_id, -due, "usage", generation_id=record.id,
                             key_id=record.key_id)
        await self._db.write(insert)

    async def get(self, generation_id: str) -> GenerationRecord | None:
        row = await self._db.read(lambda conn: conn.execute(
            f"SELECT {GENERATION_COLUMNS} FROM generations WHERE id = ?", (generation_id,)).fetchone())
        return None if row is None else generation_of(row)

    async def totals(self, *, key_id: str | None = None, account_id: str | None = None,
                     since: float | None = None) -> UsageTotals:
        """Over the given key and/or account (everything when neither), from the UTC day of
        `since` on (the rollup counts whole days)."""
        clause, params = where({"key_id = ?": key_id, "account_id = ?": account_id,
                                "day >= ?": None if since is None else utc_day(since)})
        sql = f"SELECT {_TOTALS} FROM usage_daily {clause}"
        return _totals(await self._db.read(lambda conn: conn.execute(sql, params).fetchone()))

    async def report(self, *, account_id: str | None, group_by: Sequence[str], since: float,
                     until: float) -> builtins.list[UsageRow]:
        """One row per group over the UTC days from since's through until's (both included), of
        one account or of all (None), ordered by the group's fields in the order given. With no
        group, one row of totals (none when nothing was recorded)."""
        columns = [_GROUPS[g] for g in report_groups(group_by)]
        clause, params = where({"day >= ?": utc_day(since), "day <= ?": utc_day(until),
                                "account_id = ?": account_id})
        listed = ", ".join(columns)
        tail = f"GROUP BY {listed} ORDER BY {listed}" if columns else "HAVING COUNT(*) > 0"
        sql = f"SELECT {', '.join([*columns, _TOTALS])} FROM usage_daily {clause} {tail}"
        rows = await self._db.read(lambda conn: conn.execute(sql, params).fetchall())
        return [UsageRow(**dict(zip(columns, row, strict=False)), totals=_totals(row[len(columns):]))
                for row in rows]

    async def charged(self, *, account_id: str, since: float,
                      until: float) -> builtins.list[GenerationRecord]:
        """The account's generations that cost something, made at or after `since` and before
        `until`, oldest first (then by id): a statement's lines."""
        sql = (f"SELECT {GENERATION_COLUMNS} FROM generations WHERE account_id = ?"
               " AND created_at >= ? AND created_at < ? AND cost > 0 ORDER BY created_at, id")
        rows = await self._db.read(
            lambda conn: conn.execute(sql, (account_id, since, until)).fetchall())
        return [generation_of(row) for row in rows]
