"""The embedded mode's RateStore: the exchange rates fetched, in the SQLite file (fx_rates)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import date
from decimal import Decimal

from xrouter_router.domain.fx import Rate
from xrouter_router.storage.sql.sqlite_db import SqliteDatabase

# The latest few rates of each currency: enough for the one in force and those published ahead.
LATEST = ("SELECT currency, effective, rate, source FROM (SELECT *, row_number() OVER"
          " (PARTITION BY currency ORDER BY effective DESC) AS n FROM fx_rates) WHERE n <= 4"
          " ORDER BY currency, effective")


class SqliteRateStore:
    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def load(self) -> list[Rate]:
        rows = await self._db.read(lambda conn: conn.execute(LATEST).fetchall())
        return [Rate(code, Decimal(rate), date.fromisoformat(day), source)
                for code, day, rate, source in rows]

    async def save(self, rates: Sequence[Rate], fetched_at: float) -> None:
        rows = [(r.currency, r.effective.isoformat(), str(r.value), r.source, fetched_at)
                for r in rates if r.effective is not None]

        def upsert(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT INTO fx_rates (currency, effective, rate, source, fetched_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (currency, effective) DO UPDATE"
                " SET rate = excluded.rate, source = excluded.source,"
                " fetched_at = excluded.fetched_at", rows)
        await self._db.write(upsert)
