"""The PostgreSQL RateStore: the exchange rates fetched, in fx_rates (migration 0009)."""

from __future__ import annotations

from collections.abc import Sequence

from xrouter_router.domain.fx import Rate
from xrouter_router.storage.sql.pg import PgDatabase
from xrouter_router.storage.sql.sqlite_fx import LATEST


class PgRateStore:
    def __init__(self, db: PgDatabase) -> None:
        self._db = db

    async def load(self) -> list[Rate]:
        rows = await self._db.fetchall(LATEST.replace("FROM fx_rates)", "FROM fx_rates) AS r"))
        return [Rate(code, rate, day, source) for code, day, rate, source in rows]

    async def save(self, rates: Sequence[Rate], fetched_at: float) -> None:
        for r in rates:
            if r.effective is None:
                continue
            await self._db.execute(
                "INSERT INTO fx_rates (currency, effective, rate, source, fetched_at)"
                " VALUES (%s, %s, %s, %s, to_timestamp(%s)) ON CONFLICT (currency, effective)"
                " DO UPDATE SET rate = excluded.rate, source = excluded.source,"
                " fetched_at = excluded.fetched_at",
                (r.currency, r.effective, r.value, r.source, fetched_at))
