"""What only the SQLite file does, beyond the store contracts: it survives a reopen, never blocks
the loop, maps lock and open failures to Unavailable and stores money as integers."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from tests.integration.store_factories import (
    ATTEMPTS,
    HASH_1,
    Stores,
    balance,
    full_key,
    generation,
    sqlite_stores_over,
    with_accounts,
)
from xrouter_router.domain.addresses import EVERYWHERE
from xrouter_router.domain.errors import (
    DatabaseUnavailable,
    InternalError,
    Unavailable,
)
from xrouter_router.domain.keys import Limits
from xrouter_router.domain.ledger import GenerationRecord, UsageTotals
from xrouter_router.domain.pii.policy import PiiPolicy
from xrouter_router.domain.plans import Plan
from xrouter_router.domain.sessions import Session
from xrouter_router.storage.sql import sqlite_db as sqlite_db_module
from xrouter_router.storage.sql.sqlite_db import SqliteDatabase


@contextlib.asynccontextmanager
async def _opened(path: Path) -> AsyncIterator[tuple[SqliteDatabase, Stores]]:
    """The file opened (and migrated) with its stores; closed on the way out."""
    db = SqliteDatabase(path)
    try:
        yield db, sqlite_stores_over(db)
    finally:
        await db.close()


def _rewind(path: Path, version: int, *statements: str) -> None:
    """Make the file one an older release wrote: its schema as then, its user_version."""
    with sqlite3.connect(path) as conn:
        for statement in statements:
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {version}")
    conn.close()


# What versions 5 and 6 added to the tables every file has (account_plans' column is dropped apart: the
# files before version 3 have no such table).
# What version 8 added (VAT); every older file lacks it too.
_BEFORE_VAT = (*(f"ALTER TABLE generations DROP COLUMN {c}" for c in ("cost_net", "vat",
                                                                        "vat_rate")),
               "ALTER TABLE usage_daily DROP COLUMN vat")
# What version 7 added: the currency columns of generations (fx_rates is made by SCHEMA on every
# file); every older file lacks them too.
_BEFORE_CURRENCIES = (*(f"ALTER TABLE generations DROP COLUMN {column}"
                        for column in ("price_currency", "fx_rate", "cost_original", "fx_date")),
                      *_BEFORE_VAT)
_BEFORE_PII = ("ALTER TABLE api_keys DROP COLUMN pii_guard",
               "ALTER TABLE api_keys DROP COLUMN pii_scope", *_BEFORE_CURRENCIES)
_PLANS_BEFORE_PII = ("ALTER TABLE account_plans DROP COLUMN pii_guard",
                     "ALTER TABLE account_plans DROP COLUMN pii_scope")
_BEFORE_RESIDENCY = (*_BEFORE_PII, "ALTER TABLE api_keys DROP COLUMN residency",
                     "ALTER TABLE generations DROP COLUMN jurisdiction")


# A key as the releases before its policies wrote it: none of its own.
NO_POLICY = replace(full_key(), residency="", pii_guard="", pii_scope="")


async def _written(path: Path, plan: Plan, *records: GenerationRecord) -> None:
    """A file with account acc-a, its `plan`, a key without policies of its own, `records`."""
    async with _opened(path) as (_, before):
        await with_accounts(before, "acc-a")
        await before.keys.create(NO_POLICY, HASH_1)
        await before.plans.set("acc-a", plan)
        for record in records:
            await before.ledger.record(record)


async def _version(db: SqliteDatabase) -> int:
    return int(await db.read(lambda c: c.execute("PRAGMA user_version").fetchone()[0]))


class TestSqliteDatabase:
    async def test_everything_survives_a_reopen(self, tmp_path: Path) -> None:
        path = tmp_path / "xrouter.db"
        db = SqliteDatabase(path)
        before = sqlite_stores_over(db)
        await with_accounts(before, "acc-a")
        await before.keys.create(full_key(), HASH_1)
        await before.accounts.top_up("acc-a", Decimal("3.5"), "r")
        await before.accounts.charge("acc-a", "key-1", "gen-1", Decimal("0.25"))
        record = replace(generation("gen-1", cost="0.25"), attempts=ATTEMPTS)
        await before.ledger.record(record)
        await db.close()

        db = SqliteDatabase(path)
        try:
            after = sqlite_stores_over(db)
            assert await after.keys.by_hash(HASH_1) == full_key()
            assert await balance(after, "acc-a") == Decimal("3.25")
            assert await after.ledger.get("gen-1") == record
            assert await after.accounts.spent("key-1") == Decimal("0.25")
            assert await after.ledger.totals() == UsageTotals(1, 10, 20, Decimal("0.25"))
            await after.ledger.record(record)
            assert await after.accounts.charge("acc-a", "key-1", "gen-1", Decimal("0.25")) is False
            assert await balance(after, "acc-a") == Decimal("3.25")
            assert await after.ledger.totals() == UsageTotals(1, 10, 20, Decimal("0.25"))
        finally:
            await db.close()

    async def test_a_file_of_schema_version_1_is_migrated_and_keeps_its_records(
            self, tmp_path: Path) -> None:
        path = tmp_path / "xrouter.db"
        async with _opened(path) as (_, before):
            await with_accounts(before, "acc-a")
            await before.ledger.record(generation("gen-1", cost="0.25"))
        # Make it the file the first release wrote: no bucket columns, no plans, no IP
        # allow-lists, no residency, version 1.
        _rewind(path, 1, "DROP TABLE account_plans",
                "ALTER TABLE api_keys DROP COLUMN allowed_ips", *_BEFORE_RESIDENCY,
                "ALTER TABLE generations DROP COLUMN cache_write_tokens",
                *(f"ALTER TABLE usage_daily DROP COLUMN {column}"
                  for column in ("cached_tokens", "cache_write_tokens", "reasoning_tokens")))

        async with _opened(path) as (db, after):
            assert await after.ledger.get("gen-1") == generation("gen-1", cost="0.25")
            await after.ledger.record(replace(generation("gen-2", cost="0.5"), cached_tokens=3,
                                              cache_write_tokens=2, reasoning_tokens=7))
            assert await after.ledger.totals() == UsageTotals(2, 20, 40, Decimal("0.75"), 3, 2, 7)
            await after.plans.set("acc-a", Plan("pro"))
            assert await after.plans.get("acc-a") == Plan("pro")
            await after.keys.create(full_key(), HASH_1)
            assert await after.keys.by_hash(HASH_1) == full_key()
            assert await _version(db) == 10

    async def test_a_file_of_schema_version_3_gets_ip_allow_lists_and_keeps_its_keys(
            self, tmp_path: Path) -> None:
        path = tmp_path / "xrouter.db"
        old_key = replace(full_key(), allowed_ips=EVERYWHERE, residency="", pii_guard="",
                          pii_scope="")
        async with _opened(path) as (_, before):
            await with_accounts(before, "acc-a")
            await before.keys.create(old_key, HASH_1)
            await before.plans.set("acc-a", Plan("pro"))
        # The file the previous release wrote: api_keys without allowed_ips, version 3.
        _rewind(path, 3, "ALTER TABLE api_keys DROP COLUMN allowed_ips", *_BEFORE_RESIDENCY,
                *_PLANS_BEFORE_PII, "ALTER TABLE account_plans DROP COLUMN residency")

        async with _opened(path) as (db, after):
            assert await after.keys.by_hash(HASH_1) == old_key  # usable from any address
            assert await after.plans.get("acc-a") == Plan("pro")
            await after.keys.update(full_key())
            assert await after.keys.by_hash(HASH_1) == full_key()
            assert await _version(db) == 10

    async def test_a_file_of_schema_version_4_gets_residency_and_keeps_its_records(
            self, tmp_path: Path) -> None:
        path = tmp_path / "xrouter.db"
        await _written(path, Plan("pro", Limits(requests_per_minute=7)), generation("gen-1", cost="0.25"))
        # The file the previous release wrote: no residency of keys and plans, no jurisdiction
        # of generations, version 4.
        _rewind(path, 4, *_BEFORE_RESIDENCY, *_PLANS_BEFORE_PII,
                "ALTER TABLE account_plans DROP COLUMN residency")

        async with _opened(path) as (db, after):
            assert await _version(db) == 10
            # No policy of its own: it follows its account's (none).
            assert await after.keys.by_hash(HASH_1) == NO_POLICY
            assert await after.plans.get("acc-a") == Plan("pro", Limits(requests_per_minute=7))
            assert await after.ledger.get("gen-1") == generation("gen-1", cost="0.25")
            await after.plans.set("acc-a", Plan("pro", residency="ru"))
            await after.keys.update(replace(NO_POLICY, residency="any"))
            assert await after.keys.by_hash(HASH_1) == replace(
                NO_POLICY, residency="any", account_residency="ru")
            served = replace(generation("gen-2", cost="0.5"), jurisdiction="ru")
            await after.ledger.record(served)
            assert await after.ledger.get("gen-2") == served

    async def test_a_file_of_schema_version_5_gets_the_pii_guard_and_keeps_its_plans(
            self, tmp_path: Path) -> None:
        path = tmp_path / "xrouter.db"
        await _written(path, Plan("pro", Limits(requests_per_minute=7), "ru"))
        # The file the previous release wrote: no personal-data guard policy, version 5.
        _rewind(path, 5, *_BEFORE_PII, *_PLANS_BEFORE_PII)

        async with _opened(path) as (db, after):
            assert await _version(db) == 10
            assert await after.keys.by_hash(HASH_1) == replace(NO_POLICY, account_residency="ru")
            assert await after.plans.get("acc-a") == Plan("pro", Limits(requests_per_minute=7), "ru")
            await after.plans.set("acc-a", Plan("pro", residency="ru", pii_guard="block",
                                                pii_scope="always"))
            await after.keys.update(replace(NO_POLICY, pii_guard="mask"))
            key = await after.keys.by_hash(HASH_1)
            assert key == replace(NO_POLICY, pii_guard="mask", account_residency="ru",
                                  account_pii_guard="block", account_pii_scope="always")
            assert key.pii_policy == PiiPolicy("mask", "always", "key")
            with pytest.raises(DatabaseUnavailable):  # the CHECK constraint refuses it
                await db.write(lambda c: c.execute("UPDATE api_keys SET pii_guard = 'redact'"))

    async def test_the_loop_keeps_ticking_while_500_records_wait_for_the_disk(
            self, sqlite_db: SqliteDatabase) -> None:
        stores = sqlite_stores_over(sqlite_db)
        await with_accounts(stores, "acc-a")
        # Another writer (the operator's CLI, say) holds the write lock for two seconds: every
        # record waits for it (busy_timeout), and must do so off the loop. Waiting on the loop
        # would stop it for the whole two seconds; the bound below leaves a loaded CI machine half
        # of that (the loop's usual gap here is 10 ms).
        locked = threading.Event()
        released: list[float] = []

        def hold_the_lock() -> None:
            other = sqlite3.connect(sqlite_db.path, isolation_level=None)
            other.execute("BEGIN IMMEDIATE")
            locked.set()
            time.sleep(2.0)
            released.append(time.perf_counter())
            other.execute("COMMIT")
            other.close()
        holder = threading.Thread(target=hold_the_lock)
        holder.start()
        locked.wait()
        ticks: list[float] = []
        done = asyncio.Event()

        async def heartbeat() -> None:
            while not done.is_set():
                ticks.append(time.perf_counter())
                await asyncio.sleep(0.01)
        beating = asyncio.create_task(heartbeat())
        start = time.perf_counter()
        try:
            async with asyncio.timeout(10):
                await asyncio.gather(*(stores.ledger.record(generation(f"gen-{i}", cost="0.01"))
                                       for i in range(500)))
        finally:
            elapsed = time.perf_counter() - start
            done.set()
            await beating
            holder.join()
        assert start + elapsed >= released[0]  # the records waited for the lock
        assert await stores.ledger.totals() == UsageTotals(500, 5000, 10000, Decimal(5))
        beats = [start, *ticks, start + elapsed]
        assert max(b - a for a, b in itertools.pairwise(beats)) < 1.0

    async def test_a_lock_held_past_the_busy_timeout_is_unavailable(self, tmp_path: Path) -> None:
        db = SqliteDatabase(tmp_path / "xrouter.db", busy_timeout=0.05)
        try:
            stores = sqlite_stores_over(db)
            await with_accounts(stores, "acc-a")
            other = sqlite3.connect(db.path, isolation_level=None)
            other.execute("BEGIN IMMEDIATE")
            with pytest.raises(Unavailable):
                await stores.accounts.charge("acc-a", "key-1", "gen-1", Decimal(1))
            assert await balance(stores, "acc-a") == 0  # readers are not blocked (WAL)
            other.execute("COMMIT")
            other.close()
            assert await stores.accounts.charge("acc-a", "key-1", "gen-1", Decimal(1)) is True
        finally:
            await db.close()

    async def test_an_unopenable_file_is_unavailable(self, tmp_path: Path) -> None:
        db = SqliteDatabase(tmp_path / "no-such-directory" / "xrouter.db")
        try:
            with pytest.raises(Unavailable):
                await db.open()
        finally:
            await db.close()

    async def test_every_call_runs_on_one_worker_thread(self, sqlite_db: SqliteDatabase) -> None:
        threads = await asyncio.gather(*(sqlite_db.read(lambda conn: threading.get_ident())
                                         for _ in range(20)))
        assert len(set(threads)) == 1
        assert threads[0] != threading.get_ident()

    async def test_a_write_commits_on_the_loops_thread_when_the_lock_is_free(
            self, sqlite_db: SqliteDatabase) -> None:
        def where_and_pragmas(conn: sqlite3.Connection) -> tuple[object, ...]:
            return (threading.get_ident(), *(conn.execute(f"PRAGMA {name}").fetchone()[0]
                                             for name in ("journal_mode", "synchronous",
                                                          "foreign_keys", "wal_autocheckpoint")))
        await sqlite_db.open()
        # No checkpoint on the loop (it waits for the disk): the worker thread makes them.
        assert await sqlite_db.write(where_and_pragmas) == (threading.get_ident(), "wal", 1, 1, 0)

    async def test_writes_that_keep_arriving_share_one_commit(
            self, sqlite_db: SqliteDatabase, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(sqlite_db_module, "GATHER_ITERATIONS", 3)
        statements: list[str] = []
        await sqlite_db.write(lambda conn: conn.execute("CREATE TABLE t (v INTEGER)"))
        await sqlite_db.write(lambda conn: conn.set_trace_callback(statements.append))
        statements.clear()  # that write's own COMMIT

        async def write_after(iterations: int, value: int) -> None:
            for _ in range(iterations):
                await asyncio.sleep(0)  # one loop iteration
            await sqlite_db.write(lambda conn: conn.execute("INSERT INTO t VALUES (?)", (value,)))
        # Two writes in one iteration, then one in each of the next three: the batch
        # waits while each iteration brings more, then commits them all at once.
        arrivals = [0, 0, 1, 2, 3]
        await asyncio.gather(*(write_after(at, i) for i, at in enumerate(arrivals)))
        assert statements.count("COMMIT") == 1
        # One iteration more and a write misses the batch; a lone write commits at once.
        statements.clear()
        await asyncio.gather(*(write_after(at, i) for i, at in enumerate([*arrivals, 4])))
        assert statements.count("COMMIT") == 2
        statements.clear()
        await write_after(0, -1)
        assert statements.count("COMMIT") == 1
        assert await sqlite_db.read(lambda conn: conn.execute("SELECT count(*) FROM t")
                                    .fetchone()[0]) == 2 * len(arrivals) + 2

    async def test_checkpoints_keep_the_wal_file_small(self, sqlite_db: SqliteDatabase,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(sqlite_db_module, "CHECKPOINT_EVERY", 20)
        await sqlite_db.write(lambda conn: conn.execute("CREATE TABLE t (v TEXT)"))
        wal = Path(f"{sqlite_db.path}-wal")
        sizes = []
        for _ in range(10):
            for _ in range(20):  # one commit each, 8 KB: two or three pages of WAL
                await sqlite_db.write(lambda conn: conn.execute("INSERT INTO t VALUES (?)",
                                                                ("x" * 8192,)))
            # In the worker thread, after the checkpoint queued before it: the WAL's size then.
            sizes.append(await sqlite_db.read(lambda conn: wal.stat().st_size))
        # Without checkpoints the WAL would grow by each 20 commits' worth (ten times the first
        # size at the end); with one every 20 commits it is reused from its start.
        assert max(sizes) < 2 * sizes[0]
        assert await sqlite_db.read(lambda conn: conn.execute("SELECT count(*) FROM t")
                                    .fetchone()[0]) == 200

    async def test_the_connection_uses_wal_and_synchronous_normal(
            self, sqlite_db: SqliteDatabase) -> None:
        def pragmas(conn: sqlite3.Connection) -> tuple[object, ...]:
            return tuple(conn.execute(f"PRAGMA {name}").fetchone()[0] for name in (
                "journal_mode", "synchronous", "busy_timeout", "foreign_keys"))
        assert await sqlite_db.read(pragmas) == ("wal", 1, 5000, 1)

    async def test_money_is_stored_as_integers_never_as_real(self, sqlite_db: SqliteDatabase) -> None:
        stores = sqlite_stores_over(sqlite_db)
        await with_accounts(stores, "acc-a")
        await stores.keys.create(full_key(), HASH_1)
        await stores.accounts.top_up("acc-a", Decimal("0.1"), "r")
        await stores.accounts.charge("acc-a", "key-1", "gen-1", Decimal("0.2"))
        await stores.ledger.record(generation("gen-1", cost="0.2"))
        types = await sqlite_db.read(lambda conn: conn.execute(
            "SELECT (SELECT typeof(balance) FROM accounts), (SELECT typeof(credit_limit) FROM api_keys),"
            " (SELECT group_concat(DISTINCT typeof(amount)) FROM credit_entries),"
            " (SELECT typeof(cost) FROM generations), (SELECT typeof(cost) FROM usage_daily),"
            " (SELECT typeof(spent) FROM key_spent)"
        ).fetchone())
        assert types == ("integer",) * 6

    async def test_a_closed_database_refuses_calls(self, sqlite_db: SqliteDatabase) -> None:
        stores = sqlite_stores_over(sqlite_db)
        await with_accounts(stores, "acc-a")
        await sqlite_db.close()
        await sqlite_db.close()
        with pytest.raises(InternalError):
            await stores.accounts.get("acc-a")

    async def test_a_file_of_schema_version_6_gets_currencies_and_keeps_its_records(
            self, tmp_path: Path) -> None:
        path = tmp_path / "xrouter.db"
        async with _opened(path) as (_, before):
            await with_accounts(before, "acc-a")
            await before.ledger.record(replace(generation("gen-1", cost="0.25"),
                                               jurisdiction="ru"))
        # The file the release before currencies wrote: no currency (nor VAT) columns, version 6.
        _rewind(path, 6, *_BEFORE_CURRENCIES)

        async with _opened(path) as (db, after):
            assert await _version(db) == 10
            assert await after.ledger.get("gen-1") == replace(
                generation("gen-1", cost="0.25"), jurisdiction="ru")  # in RUB, as it was
            usd = replace(generation("gen-2", cost="0.925"), price_currency="USD",
                          fx_rate=Decimal("92.5"), cost_original=Decimal("0.01"),
                          fx_date=date(2026, 12, 5))
            await after.ledger.record(usd)
            assert await after.ledger.get("gen-2") == usd

    async def test_a_file_of_schema_version_7_gets_vat_and_its_history_stays_net(
            self, tmp_path: Path) -> None:
        path = tmp_path / "xrouter.db"
        async with _opened(path) as (_, before):
            await with_accounts(before, "acc-a")
            await before.ledger.record(generation("gen-1", cost="0.25"))
        # The file the previous release wrote: no VAT anywhere, version 7.
        _rewind(path, 7, *_BEFORE_VAT)

        async with _opened(path) as (db, after):
            assert await _version(db) == 10
            old = await after.ledger.get("gen-1")
            assert old == generation("gen-1", cost="0.25")
            assert old is not None and (old.cost_net, old.vat, old.vat_rate) == (
                Decimal("0.25"), Decimal(0), Decimal(0))
            assert await db.read(lambda c: c.execute(
                "SELECT cost, cost_net, vat, vat_rate FROM generations").fetchall()) == [
                    (25_000_000, 25_000_000, 0, 0)]
            taxed = replace(generation("gen-2", cost="0.61"), vat=Decimal("0.11"),
                            vat_rate=Decimal("0.22"))
            await after.ledger.record(taxed)
            assert await after.ledger.get("gen-2") == taxed
            totals = await after.ledger.totals()
            assert (totals.cost, totals.vat, totals.cost_net) == (
                Decimal("0.86"), Decimal("0.11"), Decimal("0.75"))

    async def test_a_file_of_schema_version_8_gets_outage_allowances_and_keeps_its_plans(
            self, tmp_path: Path) -> None:
        path = tmp_path / "xrouter.db"
        await _written(path, Plan("pro", Limits(requests_per_minute=7), "ru", "mask"))
        # The file the previous release wrote: plans without an outage allowance, version 8.
        _rewind(path, 8, "ALTER TABLE account_plans DROP COLUMN outage_allowance")

        async with _opened(path) as (db, after):
            assert await _version(db) == 10
            plan = Plan("pro", Limits(requests_per_minute=7), "ru", "mask")
            assert await after.plans.get("acc-a") == plan  # the global setting applies
            key = replace(NO_POLICY, account_residency="ru", account_pii_guard="mask")
            assert await after.keys.by_hash(HASH_1) == key
            await after.plans.set("acc-a", replace(plan, outage_allowance=Decimal("0.75")))
            assert await after.keys.by_hash(HASH_1) == replace(
                key, account_outage_allowance=Decimal("0.75"))

    async def test_a_file_of_schema_version_9_gets_sessions_and_keeps_its_keys(
            self, tmp_path: Path) -> None:
        path = tmp_path / "xrouter.db"
        await _written(path, Plan("pro"))
        # The file the previous release wrote: no sessions, no OAuth codes, version 9.
        _rewind(path, 9, "DROP TRIGGER api_keys_disabled_ends_sessions", "DROP TABLE sessions",
                "DROP TABLE auth_codes")
        async with _opened(path) as (db, after):
            key = await after.keys.by_hash(HASH_1)
            assert key == NO_POLICY
            await after.sessions.create("f" * 64, Session(key, 1.0, 2.0))
            assert await after.sessions.by_hash("f" * 64) == Session(key, 1.0, 2.0)
            await after.keys.update(replace(key, disabled=True))
            assert await after.sessions.by_hash("f" * 64) is None  # the trigger is there
            assert await _version(db) == 10

    async def test_a_file_from_a_later_version_is_refused(self, tmp_path: Path) -> None:
        path = tmp_path / "xrouter.db"
        newer = sqlite3.connect(path, isolation_level=None)
        newer.execute("PRAGMA user_version = 11")
        newer.close()
        db = SqliteDatabase(path)
        try:
            with pytest.raises(InternalError, match=r"schema version 11; this XRouter knows 10$"):
                await db.open()
        finally:
            await db.close()
