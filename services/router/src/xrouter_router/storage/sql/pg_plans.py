"""The PostgreSQL PlanStore: each account's plan in account_plans (migration 0004)."""

from __future__ import annotations

from xrouter_router.domain.keys import Limits
from xrouter_router.domain.plans import Plan
from xrouter_router.storage.sql.pg import PgDatabase
from xrouter_router.storage.sql.usage_sql import allowance


class PgPlanStore:
    def __init__(self, db: PgDatabase) -> None:
        self._db = db

    async def get(self, account_id: str) -> Plan | None:
        row = await self._db.fetchone(
            "SELECT tier, rpm, rpd, tpm, concurrent, residency, pii_guard, pii_scope,"
            " outage_allowance"
            " FROM account_plans WHERE account_id = %s", (account_id,))
        return None if row is None else Plan(row[0], Limits(*row[1:5]), row[5], row[6], row[7],
                                            allowance(row[8]))

    async def set(self, account_id: str, plan: Plan) -> None:
        """An unknown account violates the foreign key: PgDatabase makes that a NotFound."""
        lim = plan.limits
        await self._db.execute(
            "INSERT INTO account_plans (account_id, tier, rpm, rpd, tpm, concurrent, residency,"
            " pii_guard, pii_scope, outage_allowance)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (account_id) DO UPDATE SET"
            " tier = excluded.tier, rpm = excluded.rpm, rpd = excluded.rpd, tpm = excluded.tpm,"
            " concurrent = excluded.concurrent, residency = excluded.residency,"
            " pii_guard = excluded.pii_guard, pii_scope = excluded.pii_scope,"
            " outage_allowance = excluded.outage_allowance, updated_at = now()",
            (account_id, plan.tier, lim.requests_per_minute, lim.requests_per_day,
             lim.tokens_per_minute, lim.concurrent, plan.residency, plan.pii_guard,
             plan.pii_scope, plan.outage_allowance))
