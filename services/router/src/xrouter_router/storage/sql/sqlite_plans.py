"""The embedded mode's PlanStore: each account's plan in the SQLite file (account_plans)."""

from __future__ import annotations

import sqlite3
import time
from decimal import Decimal

from xrouter_router.domain.errors import NotFound
from xrouter_router.domain.keys import Limits
from xrouter_router.domain.plans import Plan
from xrouter_router.storage.sql.sqlite_db import SqliteDatabase
from xrouter_router.storage.sql.usage_sql import allowance


def _text(value: Decimal | None) -> str | None:
    """A plan's decimal as the exact text the column keeps (NULL: none)."""
    return None if value is None else format(value.normalize(), "f")


class SqlitePlanStore:
    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def get(self, account_id: str) -> Plan | None:
        row = await self._db.read(lambda conn: conn.execute(
            "SELECT tier, rpm, rpd, tpm, concurrent, residency, pii_guard, pii_scope,"
            " outage_allowance"
            " FROM account_plans WHERE account_id = ?", (account_id,)).fetchone())
        return None if row is None else Plan(row[0], Limits(*row[1:5]), row[5], row[6], row[7],
                                            allowance(row[8]))

    async def set(self, account_id: str, plan: Plan) -> None:
        lim = plan.limits

        def upsert(conn: sqlite3.Connection) -> None:
            if conn.execute("SELECT 1 FROM accounts WHERE id = ?", (account_id,)).fetchone() is None:
                raise NotFound(f"Account {account_id!r} does not exist", param="account_id")
            conn.execute(
                "INSERT INTO account_plans (account_id, tier, rpm, rpd, tpm, concurrent, residency,"
                " pii_guard, pii_scope, outage_allowance, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (account_id) DO UPDATE"
                " SET tier = excluded.tier, rpm = excluded.rpm, rpd = excluded.rpd,"
                " tpm = excluded.tpm, concurrent = excluded.concurrent,"
                " residency = excluded.residency, pii_guard = excluded.pii_guard,"
                " pii_scope = excluded.pii_scope, outage_allowance = excluded.outage_allowance,"
                " updated_at = excluded.updated_at",
                (account_id, plan.tier, lim.requests_per_minute, lim.requests_per_day,
                 lim.tokens_per_minute, lim.concurrent, plan.residency, plan.pii_guard,
                 plan.pii_scope, _text(plan.outage_allowance), time.time()))
        await self._db.write(upsert)
