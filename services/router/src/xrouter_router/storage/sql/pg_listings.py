"""The PostgreSQL Listings (domain/ports.py): pages of generations, top-ups and accounts, as
sqlite_listings.py reads them from SQLite. A generation's id orders bytewise (COLLATE "C"), as
SQLite's does, so that both stores page alike."""

from __future__ import annotations

import builtins
from datetime import UTC, datetime

from xrouter_router.domain.listings import AccountSummary, GenerationQuery, ListedGeneration, TopUp
from xrouter_router.storage.sql.pg import GENERATION_COLUMNS, PgDatabase, generation_of
from xrouter_router.storage.sql.usage_sql import generations_sql

_TOP_UPS = ("SELECT amount, coalesce(reference, ''), created_at FROM credit_entries"
            " WHERE account_id = %s AND kind = 'top_up' ORDER BY created_at DESC, id DESC LIMIT %s")
_ACCOUNTS = ("SELECT a.id, coalesce(a.name, ''), a.balance, coalesce(p.tier, ''), a.created_at"
             ' FROM accounts a LEFT JOIN account_plans p ON p.account_id = a.id'
             ' ORDER BY a.id COLLATE "C"')


def pg_time(ts: float) -> datetime:
    # Exact to the microsecond the column holds: a float carries unix microseconds to within
    # a quarter of one until the year 2100 and datetime rounds to the nearest.
    return datetime.fromtimestamp(ts, UTC)


class PgListings:
    def __init__(self, db: PgDatabase) -> None:
        self._db = db

    async def generations(self, query: GenerationQuery) -> builtins.list[ListedGeneration]:
        sql, params = generations_sql(GENERATION_COLUMNS, query, "%s", table="g",
                                      id_expr='g.id COLLATE "C"', time=pg_time)
        rows = await self._db.fetchall(sql, params)
        return [ListedGeneration(generation_of(row[:-1]), row[-1] or "") for row in rows]

    async def top_ups(self, account_id: str, limit: int) -> builtins.list[TopUp]:
        rows = await self._db.fetchall(_TOP_UPS, (account_id, limit))
        return [TopUp(amount, reference, created_at.timestamp())
                for amount, reference, created_at in rows]

    async def accounts(self) -> builtins.list[AccountSummary]:
        rows = await self._db.fetchall(_ACCOUNTS)
        return [AccountSummary(account_id, name, balance, plan, created_at.timestamp())
                for account_id, name, balance, plan, created_at in rows]
