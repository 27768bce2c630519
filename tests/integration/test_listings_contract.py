"""The Listings contract (domain/ports.py), run against every implementation in
store_factories.FACTORIES: pages of generations newest first through the keyset cursor, with
every filter; an account's top-ups; every account with its balance and plan."""

from __future__ import annotations

import re
import sqlite3
import time
import uuid
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg

from tests.infra.pg_fixtures import postgres_ha  # noqa: F401 - the session fixture
from tests.infra.postgres_ha import PostgresHA
from tests.integration.store_factories import (
    DAY1,
    DAY2,
    Stores,
    generation,
    plain_key,
    stores_fixture,  # noqa: F401 - the fixture
    with_accounts,
)
from xrouter_router.domain.keys import Limits
from xrouter_router.domain.listings import (
    AccountSummary,
    Cursor,
    GenerationQuery,
    page_of,
)
from xrouter_router.domain.plans import Plan
from xrouter_router.storage.sql.migrate import migrate
from xrouter_router.storage.sql.pg import GENERATION_COLUMNS as PG_COLUMNS
from xrouter_router.storage.sql.pg_listings import pg_time
from xrouter_router.storage.sql.sqlite import GENERATION_COLUMNS as SQLITE_COLUMNS
from xrouter_router.storage.sql.sqlite_db import SqliteDatabase
from xrouter_router.storage.sql.usage_sql import generations_sql


async def _ids(stores: Stores, query: GenerationQuery) -> list[list[str]]:
    """Every page's generation ids, following the cursor to the end."""
    pages: list[list[str]] = []
    while True:
        page = page_of(await stores.listings.generations(query), query.limit)
        pages.append([g.record.id for g in page.generations])
        if page.next_before is None:
            return pages
        # Through the text a client holds: the cursor survives its encoding exactly.
        query = replace(query, before=Cursor.decode(page.next_before.encode()))


async def _seed(stores: Stores) -> None:
    await with_accounts(stores, "acc-a", "acc-b")
    await stores.keys.create(replace(plain_key("key-1"), label="CI bot"), "a" * 64)
    rows = [generation("g-1", at=DAY1 + 0.000001),
            generation("g-2", at=DAY1 + 10.123456, model="m/beta"),
            generation("g-3", at=DAY1 + 10.123456, provider="p2"),  # the same microsecond
            generation("g-4", at=DAY1 + 20.5, key="key-2"),
            generation("g-5", at=DAY2, account="acc-b", key="key-b"),
            generation("g-6", at=DAY2 + 0.999999, cost="1.23456789")]
    for row in rows:
        await stores.ledger.record(row)


class TestGenerationPages:
    async def test_pages_are_newest_first_ties_by_id_each_row_once(self, stores: Stores) -> None:
        await _seed(stores)
        assert await _ids(stores, GenerationQuery(limit=2)) == [
            ["g-6", "g-5"], ["g-4", "g-3"], ["g-2", "g-1"]]
        assert await _ids(stores, GenerationQuery(limit=4)) == [
            ["g-6", "g-5", "g-4", "g-3"], ["g-2", "g-1"]]
        assert await _ids(stores, GenerationQuery(limit=6)) == [
            ["g-6", "g-5", "g-4", "g-3", "g-2", "g-1"]]
        assert await _ids(stores, GenerationQuery(limit=1, account_id="acc-a",
                                                  key_id="key-1")) == [
            ["g-6"], ["g-3"], ["g-2"], ["g-1"]]

    async def test_every_filter(self, stores: Stores) -> None:
        await _seed(stores)
        cases = {GenerationQuery(account_id="acc-b"): ["g-5"],
                 GenerationQuery(account_id="acc-a", key_id="key-2"): ["g-4"],
                 GenerationQuery(model="m/beta"): ["g-2"],
                 GenerationQuery(provider="p2"): ["g-3"],
                 GenerationQuery(since=DAY1 + 10.123456): ["g-6", "g-5", "g-4", "g-3", "g-2"],
                 GenerationQuery(until=DAY1 + 10.123456): ["g-1"],
                 GenerationQuery(since=DAY1 + 1, until=DAY2, account_id="acc-a"): [
                     "g-4", "g-3", "g-2"],
                 GenerationQuery(account_id="acc-none"): []}
        for query, expected in cases.items():
            assert await _ids(stores, query) == [expected], query

    async def test_rows_carry_the_record_and_the_key_label(self, stores: Stores) -> None:
        await _seed(stores)
        rows = await stores.listings.generations(GenerationQuery(limit=2))
        assert [(r.record, r.key_label) for r in rows] == [
            (generation("g-6", at=DAY2 + 0.999999, cost="1.23456789"), "CI bot"),
            (generation("g-5", at=DAY2, account="acc-b", key="key-b"), ""),
            (generation("g-4", at=DAY1 + 20.5, key="key-2"), "")]  # one more: the next page


class TestTopUpsAndAccounts:
    async def test_top_ups_newest_first_of_the_account_only(self, stores: Stores) -> None:
        await with_accounts(stores, "acc-a", "acc-b")
        for amount, reference in (("10", "inv-1"), ("0.01", ""), ("2.5", "inv-3")):
            await stores.accounts.top_up("acc-a", Decimal(amount), reference)
        await stores.accounts.top_up("acc-b", Decimal(7), "other")
        await stores.accounts.charge("acc-a", "key-1", "g-1", Decimal("0.5"))
        listed = await stores.listings.top_ups("acc-a", 10)
        assert [(t.amount, t.reference) for t in listed] == [
            (Decimal("2.5"), "inv-3"), (Decimal("0.01"), ""), (Decimal(10), "inv-1")]
        assert listed[0].created_at >= listed[1].created_at >= listed[2].created_at > 0
        assert [t.reference for t in await stores.listings.top_ups("acc-a", 2)] == [
            "inv-3", ""]
        assert await stores.listings.top_ups("acc-none", 10) == []

    async def test_accounts_with_balance_and_plan(self, stores: Stores) -> None:
        await with_accounts(stores, "acc-b", "acc-a")
        await stores.accounts.top_up("acc-a", Decimal("12.34"), "inv")
        await stores.accounts.charge("acc-a", "key-1", "g-1", Decimal("0.00000001"))
        await stores.plans.set("acc-b", Plan("pro", Limits()))
        listed = await stores.listings.accounts()
        assert [replace(a, created_at=0.0) for a in listed] == [
            AccountSummary("acc-a", "name of acc-a", Decimal("12.33999999"), "", 0.0),
            AccountSummary("acc-b", "name of acc-b", Decimal(0), "pro", 0.0)]
        assert all(a.created_at > 1.7e9 for a in listed)


# Now: PostgreSQL's partitions are this month's and the next (an older cursor prunes them all).
NOW = time.time()
QUERIES = {"every account": GenerationQuery(before=Cursor(NOW, "g-9")),
           "one account": GenerationQuery(account_id="acc-a", model="m/alpha", since=DAY1),
           "one key": GenerationQuery(account_id="acc-a", key_id="key-1",
                                      before=Cursor(NOW, "g-9"))}
# The indexes each may be read through, as PostgreSQL names them on each partition.
SCOPED = {"account_id_created_at_idx", "key_id_created_at_idx"}
PG_INDEXES = {"every account": {"created_at_idx"}, "one account": SCOPED, "one key": SCOPED}


class TestPlans:
    """Each page is read through an index on its scope and time, never a scan of every
    generation (the tables are empty here, so PostgreSQL is told to avoid scans if it can)."""

    async def test_sqlite(self, tmp_path: Path) -> None:
        db = SqliteDatabase(tmp_path / "plans.db")
        await db.open()
        try:
            for name, query in QUERIES.items():
                sql, params = generations_sql(SQLITE_COLUMNS, query, "?", table="g",
                                              id_expr="g.id", time=float)
                explain = f"EXPLAIN QUERY PLAN {sql}"

                def read(conn: sqlite3.Connection, explain: str = explain,
                         params: list[object] = params) -> list[Any]:
                    return conn.execute(explain, params).fetchall()
                plan = await db.read(read)
                outer = [row[3] for row in plan if " g " in f" {row[3]} "]
                assert outer and all("USING INDEX" in step for step in outer), (name, plan)
        finally:
            await db.close()

    async def test_postgres(self, postgres_ha: PostgresHA) -> None:  # noqa: F811
        name = f"xr_{uuid.uuid4().hex[:12]}"
        postgres_ha.create_database(name)
        conninfo = postgres_ha.multi_host(name)
        await migrate(conninfo)
        async with await psycopg.AsyncConnection.connect(conninfo) as conn:
            await conn.execute("SET enable_seqscan = off")
            for label, query in QUERIES.items():
                sql, params = generations_sql(PG_COLUMNS, query, "%s", table="g",
                                              id_expr='g.id COLLATE "C"', time=pg_time)
                plan = "\n".join(row[0] for row in await (
                    await conn.execute(f"EXPLAIN {sql}", params)).fetchall())
                used = re.findall(r"Index Scan (?:Backward )?(?:using|on) generations_\d{4}_\d{2}_(\w+)",
                                  plan)
                assert "Seq Scan" not in plan and used, (label, plan)
                assert set(used) <= PG_INDEXES[label], (label, plan)
