"""The embedded mode's Listings (domain/ports.py): pages of generations, top-ups and accounts
from the SQLite file, as pg_listings.py reads them from PostgreSQL."""

from __future__ import annotations

import builtins

from xrouter_router.domain.listings import AccountSummary, GenerationQuery, ListedGeneration, TopUp
from xrouter_router.storage.sql.sqlite import GENERATION_COLUMNS, generation_of
from xrouter_router.storage.sql.sqlite_db import SqliteDatabase, from_units
from xrouter_router.storage.sql.usage_sql import generations_sql

_TOP_UPS = ("SELECT amount, COALESCE(reference, ''), created_at FROM credit_entries"
            " WHERE account_id = ? AND kind = 'top_up' ORDER BY created_at DESC, id DESC LIMIT ?")
_ACCOUNTS = ("SELECT a.id, a.name, a.balance, COALESCE(p.tier, ''), a.created_at FROM accounts a"
             " LEFT JOIN account_plans p ON p.account_id = a.id ORDER BY a.id")


class SqliteListings:
    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def generations(self, query: GenerationQuery) -> builtins.list[ListedGeneration]:
        sql, params = generations_sql(GENERATION_COLUMNS, query, "?", table="g", id_expr="g.id",
                                      time=float)
        rows = await self._db.read(lambda conn: conn.execute(sql, params).fetchall())
        return [ListedGeneration(generation_of(row[:-1]), row[-1] or "") for row in rows]

    async def top_ups(self, account_id: str, limit: int) -> builtins.list[TopUp]:
        rows = await self._db.read(
            lambda conn: conn.execute(_TOP_UPS, (account_id, limit)).fetchall())
        return [TopUp(from_units(amount), reference, created_at)
                for amount, reference, created_at in rows]

    async def accounts(self) -> builtins.list[AccountSummary]:
        rows = await self._db.read(lambda conn: conn.execute(_ACCOUNTS).fetchall())
        return [AccountSummary(account_id, name, from_units(balance), plan, created_at)
                for account_id, name, balance, plan, created_at in rows]
