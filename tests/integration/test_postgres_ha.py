"""The PostgreSQL schema on a real primary + synchronous standby: migrations (also concurrent and
through the `xrouter` CLI), replication of schema and rows, the ledger invariant, exactly-once
generations, and a pool that finds the promoted standby on its own after the primary dies."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from tests.infra.pg_fixtures import postgres_ha, postgres_ha_disposable  # noqa: F401 - fixtures
from tests.infra.postgres_ha import PostgresHA, free_ports
from tests.integration.store_factories import generation as stored_generation
from xrouter_router.cli import main
from xrouter_router.domain.addresses import EVERYWHERE, AllowList
from xrouter_router.domain.errors import DatabaseUnavailable
from xrouter_router.domain.fx import Rate
from xrouter_router.domain.pii.policy import PiiPolicy
from xrouter_router.domain.plans import Plan
from xrouter_router.domain.sessions import Session
from xrouter_router.storage.sql.migrate import bundled, migrate
from xrouter_router.storage.sql.pg import PgDatabase, PgKeyStore, PgUsageLedger
from xrouter_router.storage.sql.pg_fx import PgRateStore
from xrouter_router.storage.sql.pg_plans import PgPlanStore
from xrouter_router.storage.sql.pg_sessions import PgSessionStore
from xrouter_router.storage.sql.postgres import pool

TABLES = {"accounts", "api_keys", "credit_entries", "generations", "generation_ids", "usage_daily",
          "key_spend", "schema_migrations", "account_plans", "fx_rates", "sessions", "auth_codes"}
FAILOVER_BOUND = 15.0  # seconds from promotion to the first write through the old pool


@dataclass(frozen=True)
class Database:
    primary: str
    standby: str


@pytest.fixture
def db(postgres_ha: PostgresHA) -> Iterator[Database]:  # noqa: F811
    """A fresh, empty database on the session's pair."""
    name = f"xr_{uuid.uuid4().hex[:12]}"
    postgres_ha.create_database(name)
    yield Database(postgres_ha.conninfo(0, name), postgres_ha.conninfo(1, name))


VERSIONS = "SELECT version FROM schema_migrations ORDER BY version"


async def query(conninfo: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        cursor = await conn.execute(sql, params or None)
        return await cursor.fetchall() if cursor.description else []


def generation(gen_id: str, *, account: str = "acct-1", cost: str = "0.25",
               created_at: datetime | None = None) -> Jsonb:
    return Jsonb({
        "id": gen_id, "created_at": (created_at or datetime.now(UTC)).isoformat(), "key_id": "key-1",
        "account_id": account, "model": "gpt-4o-mini", "provider": "openai", "streamed": True,
        "prompt_tokens": 12, "completion_tokens": 30, "cached_tokens": 0, "reasoning_tokens": 0,
        "counts_native": True, "cost": cost, "latency_ms": 120, "generation_ms": 900,
        "finish_reason": "stop", "status": "ok", "attempts": [{"provider": "openai", "status": "ok"}],
    })


async def record(conn: psycopg.AsyncConnection[Any], gen: Jsonb) -> bool:
    """The documented way to record a generation: exactly once per id."""
    cursor = await conn.execute("SELECT xrouter_record_generation(%s)", (gen,))
    row = await cursor.fetchone()
    assert row is not None
    return bool(row[0])


def month_partitions(now: datetime, months: int) -> set[str]:
    first = now.replace(day=1)
    names = set()
    for i in range(months):
        year, month = divmod(first.month - 1 + i, 12)
        names.add(f"generations_{first.year + year:04d}_{month + 1:02d}")
    return names


async def test_migrate_creates_the_schema(db: Database) -> None:
    assert await migrate(db.primary) == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]

    tables = await query(db.primary, "SELECT relname FROM pg_class WHERE relkind IN ('r', 'p') "
                                     "AND relnamespace = 'public'::regnamespace AND NOT relispartition")
    assert {name for (name,) in tables} == TABLES
    partitions = await query(db.primary, "SELECT inhrelid::regclass::text FROM pg_inherits "
                                         "WHERE inhparent = 'generations'::regclass")
    assert {name for (name,) in partitions} == month_partitions(datetime.now(UTC), 2)
    assert await query(db.primary, VERSIONS) == [(1,), (2,), (3,), (4,), (5,), (6,), (7,), (8,),
                                                 (9,), (10,), (11,), (12,), (13,)]
    assert await query(db.primary, "SELECT xrouter_ensure_partitions(3)") == [(1,)]
    assert await query(db.primary, "SELECT xrouter_ensure_partitions(3)") == [(0,)]
    assert await migrate(db.primary) == []


async def test_a_database_of_the_previous_release_gets_ip_allow_lists(db: Database) -> None:
    assert await migrate(db.primary, migrations=bundled()[:5]) == [1, 2, 3, 4, 5]
    async with await psycopg.AsyncConnection.connect(db.primary, autocommit=True) as conn:
        await conn.execute("INSERT INTO accounts (id) VALUES ('acct-1')")
        await conn.execute("INSERT INTO api_keys (id, account_id, key_hash, prefix, tier)"
                           " VALUES ('key-1', 'acct-1', 'h1', 'xr-free-...', 'free')")
    assert await migrate(db.primary) == [6, 7, 8, 9, 10, 11, 12, 13]
    async with pool(db.primary, min_size=1, max_size=1) as connections:
        keys = PgKeyStore(PgDatabase(connections))
        old = await keys.get("key-1")
        assert old is not None and old.allowed_ips == EVERYWHERE  # usable from any address
        await keys.update(replace(old, allowed_ips=AllowList.parse(["192.0.2.0/24"])))
        assert await keys.by_hash("h1") == replace(old,
                                                   allowed_ips=AllowList.parse(["192.0.2.0/24"]))


async def test_a_database_of_the_previous_release_gets_residency(db: Database) -> None:
    assert await migrate(db.primary, migrations=bundled()[:6]) == [1, 2, 3, 4, 5, 6]
    async with await psycopg.AsyncConnection.connect(db.primary, autocommit=True) as conn:
        await conn.execute("INSERT INTO accounts (id) VALUES ('acct-1')")
        await conn.execute("INSERT INTO api_keys (id, account_id, key_hash, prefix, tier)"
                           " VALUES ('key-1', 'acct-1', 'h1', 'xr-free-...', 'free')")
        await conn.execute("INSERT INTO account_plans (account_id, tier) VALUES ('acct-1', 'pro')")
    async with pool(db.primary, min_size=1, max_size=1) as connections:
        # Recorded by the previous release's function, which has no column for it.
        await PgUsageLedger(PgDatabase(connections)).record(
            replace(stored_generation("gen-old"), jurisdiction="ru"))
    assert await migrate(db.primary) == [7, 8, 9, 10, 11, 12, 13]
    async with pool(db.primary, min_size=1, max_size=1) as connections:
        pg = PgDatabase(connections)
        keys, plans, ledger = PgKeyStore(pg), PgPlanStore(pg), PgUsageLedger(pg)
        old = await keys.get("key-1")
        assert old is not None and (old.residency, old.account_residency) == ("", "")
        assert old.pii_policy == PiiPolicy()
        assert await plans.get("acct-1") == Plan("pro")
        await plans.set("acct-1", Plan("pro", residency="ru"))
        await keys.update(replace(old, residency="any"))
        assert await keys.by_hash("h1") == replace(old, residency="any", account_residency="ru")
        assert await ledger.get("gen-old") == stored_generation("gen-old")  # unknown: ""
        await ledger.record(replace(stored_generation("gen-new"), jurisdiction="ru"))
        assert await ledger.get("gen-new") == replace(stored_generation("gen-new"),
                                                      jurisdiction="ru")


async def test_a_database_of_the_previous_release_gets_the_pii_guard(db: Database) -> None:
    assert await migrate(db.primary, migrations=bundled()[:7]) == [1, 2, 3, 4, 5, 6, 7]
    async with await psycopg.AsyncConnection.connect(db.primary, autocommit=True) as conn:
        await conn.execute("INSERT INTO accounts (id) VALUES ('acct-1')")
        await conn.execute("INSERT INTO api_keys (id, account_id, key_hash, prefix, tier, residency)"
                           " VALUES ('key-1', 'acct-1', 'h1', 'xr-free-...', 'free', 'ru')")
        await conn.execute("INSERT INTO account_plans (account_id, tier) VALUES ('acct-1', 'pro')")
    assert await migrate(db.primary) == [8, 9, 10, 11, 12, 13]
    async with pool(db.primary, min_size=1, max_size=1) as connections:
        pg = PgDatabase(connections)
        keys, plans = PgKeyStore(pg), PgPlanStore(pg)
        old = await keys.get("key-1")
        assert old is not None and old.residency == "ru" and old.pii_policy == PiiPolicy()
        assert await plans.get("acct-1") == Plan("pro")
        await plans.set("acct-1", Plan("pro", pii_guard="block", pii_scope="always"))
        await keys.update(replace(old, pii_guard="mask"))
        assert await keys.by_hash("h1") == replace(old, pii_guard="mask", account_pii_guard="block",
                                                   account_pii_scope="always")
        assert await plans.get("acct-1") == Plan("pro", pii_guard="block", pii_scope="always")
    async with await psycopg.AsyncConnection.connect(db.primary, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.CheckViolation):
            await conn.execute("UPDATE api_keys SET pii_guard = 'redact'")


async def test_a_database_of_the_previous_release_gets_currencies(db: Database) -> None:
    assert await migrate(db.primary, migrations=bundled()[:8]) == [1, 2, 3, 4, 5, 6, 7, 8]
    async with pool(db.primary, min_size=1, max_size=1) as connections:
        # Recorded by the previous release's function: in RUB, with no currency columns.
        await PgUsageLedger(PgDatabase(connections)).record(stored_generation("gen-old"))
    assert await migrate(db.primary) == [9, 10, 11, 12, 13]
    usd = replace(stored_generation("gen-usd"), price_currency="USD", fx_rate=Decimal("92.5"),
                  cost_original=Decimal("0.01"), fx_date=date(2026, 12, 5))
    rate = Rate("USD", Decimal("92.5"), date(2026, 12, 5), "cbr")
    async with pool(db.primary, min_size=1, max_size=1) as connections:
        pg = PgDatabase(connections)
        ledger, rates = PgUsageLedger(pg), PgRateStore(pg)
        assert await ledger.get("gen-old") == stored_generation("gen-old")  # RUB, as it was
        await ledger.record(usd)
        assert await ledger.get("gen-usd") == usd
        await rates.save([rate], 1.0)
        assert await rates.load() == [rate]


async def test_a_database_of_the_previous_release_gets_vat_and_its_history_stays_net(
        db: Database) -> None:
    assert await migrate(db.primary, migrations=bundled()[:9]) == [1, 2, 3, 4, 5, 6, 7, 8, 9]
    async with pool(db.primary, min_size=1, max_size=1) as connections:
        # Recorded by the previous release's function, which has no VAT columns.
        await PgUsageLedger(PgDatabase(connections)).record(
            replace(stored_generation("gen-old"), cost=Decimal("0.5")))
    assert await migrate(db.primary) == [10, 11, 12, 13]
    assert await query(db.primary, "SELECT cost, cost_net, vat, vat_rate FROM generations") \
        == [(Decimal("0.5"), Decimal("0.5"), Decimal(0), Decimal(0))]
    async with pool(db.primary, min_size=1, max_size=1) as connections:
        ledger = PgUsageLedger(PgDatabase(connections))
        assert await ledger.get("gen-old") == replace(stored_generation("gen-old"),
                                                      cost=Decimal("0.5"))
        taxed = replace(stored_generation("gen-new"), cost=Decimal("1.22"), vat=Decimal("0.22"),
                        vat_rate=Decimal("0.22"))
        await ledger.record(taxed)
        assert await ledger.get("gen-new") == taxed
        totals = await ledger.totals()
        assert (totals.cost, totals.vat) == (Decimal("1.72"), Decimal("0.22"))


async def test_a_database_of_the_previous_release_gets_outage_allowances(db: Database) -> None:
    assert await migrate(db.primary, migrations=bundled()[:10]) == list(range(1, 11))
    async with await psycopg.AsyncConnection.connect(db.primary, autocommit=True) as conn:
        await conn.execute("INSERT INTO accounts (id) VALUES ('acct-1')")
        await conn.execute("INSERT INTO api_keys (id, account_id, key_hash, prefix, tier)"
                           " VALUES ('key-1', 'acct-1', 'h1', 'xr-free-...', 'free')")
        await conn.execute("INSERT INTO account_plans (account_id, tier, residency)"
                           " VALUES ('acct-1', 'pro', 'ru')")
    assert await migrate(db.primary) == [11, 12, 13]
    async with pool(db.primary, min_size=1, max_size=1) as connections:
        pg = PgDatabase(connections)
        keys, plans = PgKeyStore(pg), PgPlanStore(pg)
        old = await keys.get("key-1")
        # A plan set before follows the global setting.
        assert old is not None and old.account_outage_allowance is None
        assert await plans.get("acct-1") == Plan("pro", residency="ru")
        await plans.set("acct-1", Plan("pro", residency="ru", outage_allowance=Decimal("2.5")))
        assert await keys.by_hash("h1") == replace(old, account_outage_allowance=Decimal("2.5"))
    async with await psycopg.AsyncConnection.connect(db.primary, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.CheckViolation):
            await conn.execute("UPDATE account_plans SET outage_allowance = -1")


async def test_a_database_of_the_previous_release_gets_sessions(db: Database) -> None:
    assert await migrate(db.primary, migrations=bundled()[:11]) == list(range(1, 12))
    async with await psycopg.AsyncConnection.connect(db.primary, autocommit=True) as conn:
        await conn.execute("INSERT INTO accounts (id) VALUES ('acct-1')")
        await conn.execute("INSERT INTO api_keys (id, account_id, key_hash, prefix, tier)"
                           " VALUES ('key-1', 'acct-1', 'h1', 'xr-free-...', 'free')")
    assert await migrate(db.primary) == [12, 13]
    async with pool(db.primary, min_size=1, max_size=1) as connections:
        pg = PgDatabase(connections)
        keys, sessions = PgKeyStore(pg), PgSessionStore(pg)
        key = await keys.get("key-1")
        assert key is not None
        await sessions.create("s1", Session(key, 1.0, 2.0))
        assert await sessions.by_hash("s1") == Session(key, 1.0, 2.0)
        await keys.update(replace(key, disabled=True))
        assert await sessions.by_hash("s1") is None  # the trigger ended it


async def test_concurrent_runners_apply_once(db: Database) -> None:
    results = await asyncio.gather(migrate(db.primary), migrate(db.primary))
    assert sorted(results) == [[], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]]
    assert await query(db.primary, VERSIONS) == [(1,), (2,), (3,), (4,), (5,), (6,), (7,), (8,),
                                                 (9,), (10,), (11,), (12,), (13,)]


async def test_the_standby_has_the_schema_and_committed_rows(
        db: Database, postgres_ha: PostgresHA) -> None:  # noqa: F811
    await migrate(db.primary)
    async with await psycopg.AsyncConnection.connect(db.primary, autocommit=True) as conn:
        # `on` (the server's setting) makes a commit wait until the standby has flushed it, so a
        # failover loses nothing; remote_apply also waits until it is visible to the standby's readers.
        await conn.execute("SET synchronous_commit = remote_apply")
        await conn.execute("INSERT INTO accounts (id, name) VALUES ('acct-1', 'Ada')")
    assert await query(db.standby, "SELECT id, name, balance FROM accounts") == [
        ("acct-1", "Ada", Decimal(0))]
    assert await query(db.standby, VERSIONS) == [(1,), (2,), (3,), (4,), (5,), (6,), (7,),
                                                 (8,), (9,), (10,), (11,), (12,), (13,)]
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        await query(db.standby, "INSERT INTO accounts (id) VALUES ('acct-2')")
    admin = postgres_ha.conninfo(0, "postgres", "postgres")  # replication state is for superusers
    sync = await query(admin, "SELECT application_name, state, sync_state FROM pg_stat_replication")
    assert sync == [("standby1", "streaming", "sync")]


async def test_reconcile_finds_a_balance_written_around_the_ledger(db: Database) -> None:
    await migrate(db.primary)
    async with await psycopg.AsyncConnection.connect(db.primary, autocommit=True) as conn:
        await conn.execute("INSERT INTO accounts (id) VALUES ('acct-1'), ('acct-2')")
        top_up = "SELECT xrouter_post_credit(%s, %s, 'top_up', NULL, 'invoice 7')"
        cursor = await conn.execute(top_up, ("acct-1", Decimal(10)))
        assert await cursor.fetchall() == [(Decimal("10.00000000"),)]  # the new balance
        await conn.execute(top_up, ("acct-2", Decimal("2.5")))
        assert await record(conn, generation("gen-a", cost="0.25"))
        assert await record(conn, generation("gen-b", account="acct-2", cost="0.125"))
        assert await query(db.primary, "SELECT * FROM xrouter_reconcile()") == []
        assert await query(db.primary, "SELECT id, balance FROM accounts ORDER BY id") == [
            ("acct-1", Decimal("9.75000000")), ("acct-2", Decimal("2.37500000"))]

        await conn.execute("UPDATE accounts SET balance = balance + 1 WHERE id = 'acct-2'")
    assert await query(db.primary, "SELECT * FROM xrouter_reconcile()") == [
        ("acct-2", Decimal("3.37500000"), Decimal("2.37500000"), Decimal("1.00000000"))]


async def test_a_generation_is_recorded_once(db: Database) -> None:
    await migrate(db.primary)
    first = datetime.now(UTC)
    async with await psycopg.AsyncConnection.connect(db.primary, autocommit=True) as conn:
        await conn.execute("INSERT INTO accounts (id) VALUES ('acct-1')")
        await conn.execute("SELECT xrouter_post_credit('acct-1', 5, 'top_up')")
        assert await record(conn, generation("gen-dup", created_at=first))
        assert not await record(conn, generation("gen-dup", created_at=first))
        # A retry with another timestamp (another partition) is the same generation.
        assert not await record(conn, generation("gen-dup", created_at=first + timedelta(days=31)))

    async def racer() -> bool:
        async with await psycopg.AsyncConnection.connect(db.primary) as conn:
            recorded = await record(conn, generation("gen-race"))
            await asyncio.sleep(0.1)  # both transactions open at once: the loser waits, then skips
            await conn.commit()
            return recorded
    assert sorted(await asyncio.gather(racer(), racer())) == [False, True]

    assert await query(db.primary, "SELECT id, count(*) FROM generations GROUP BY id ORDER BY id") == [
        ("gen-dup", 1), ("gen-race", 1)]
    assert await query(db.primary, "SELECT day, account_id, key_id, model, provider, requests, "
                                   "prompt_tokens, completion_tokens, cost FROM usage_daily") == [
        (first.date(), "acct-1", "key-1", "gpt-4o-mini", "openai", 2, 24, 60, Decimal("0.50000000"))]
    assert await query(db.primary, "SELECT generation_id, amount FROM credit_entries WHERE kind = 'usage' "
                                   "ORDER BY generation_id") == [
        ("gen-dup", Decimal("-0.25000000")), ("gen-race", Decimal("-0.25000000"))]
    assert await query(db.primary, "SELECT balance FROM accounts") == [(Decimal("4.50000000"),)]


def test_cli_migrates_and_reports(db: Database, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["migrate", "--database-url", db.primary, "--wait", "5"]) == 0
    assert main(["migrate", "--database-url", db.primary]) == 0
    assert capsys.readouterr().out == (
        "applied migrations: 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13\nschema is up to date\n")


def test_cli_gives_up_on_an_unreachable_database(monkeypatch: pytest.MonkeyPatch) -> None:
    (port,) = free_ports(1)
    monkeypatch.setenv("XROUTER_DATABASE_URL", f"host=127.0.0.1 port={port} dbname=xrouter user=xrouter")
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "xrouter_router.cli", "migrate", "--wait", "1.5"],
                          capture_output=True, text=True, timeout=30, check=False)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.startswith("xrouter migrate: no database after 1.5s: ")
    assert "Connection refused" in done.stderr
    assert 1.5 <= time.monotonic() - started < 10


def test_cli_needs_a_database_url(monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("XROUTER_DATABASE_URL", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        main(["migrate"])
    assert exit_info.value.code == 2
    assert "no database: pass --database-url or set XROUTER_DATABASE_URL" in capsys.readouterr().err


@dataclass
class Writer:
    """Records generations gen-0, gen-1, ... through a pool, one at a time, retrying each id until it
    is acknowledged: the outcome of a commit cut off by the crash is unknown, and the retry of the same
    id is what makes it exactly once either way."""

    writes: AsyncConnectionPool
    acked: list[int] = field(default_factory=list)  # the port that acknowledged each generation

    async def run(self, until: asyncio.Event) -> None:
        while not until.is_set():
            gen_id = f"gen-{len(self.acked)}"
            try:
                async with self.writes.connection() as conn:  # commits on the way out
                    await record(conn, generation(gen_id, cost="0.01"))
                    port = int(conn.info.port)
                self.acked.append(port)
            except (psycopg.OperationalError, PoolTimeout):
                await asyncio.sleep(0.02)

    async def wait_acked(self, count: int, bound: float) -> None:
        deadline = time.monotonic() + bound
        while len(self.acked) < count:
            assert time.monotonic() < deadline, f"{len(self.acked)} of {count} writes after {bound}s"
            await asyncio.sleep(0.01)


async def test_writes_survive_a_failover(postgres_ha_disposable: PostgresHA) -> None:  # noqa: F811
    cluster = postgres_ha_disposable
    assert await migrate(cluster.multi_host(), wait=5) == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]
    async with pool(cluster.multi_host(), min_size=2, max_size=4, timeout=2.0) as writes:
        async with writes.connection() as conn:
            await conn.execute("INSERT INTO accounts (id) VALUES ('acct-1')")
            await conn.execute("SELECT xrouter_post_credit('acct-1', 5, 'top_up')")
        writer, stop = Writer(writes), asyncio.Event()
        task = asyncio.create_task(writer.run(stop))
        try:
            await writer.wait_acked(20, 60.0)
            await asyncio.to_thread(cluster.stop_primary, kill=True)
            killed = len(writer.acked)
            await asyncio.to_thread(cluster.promote_standby)
            await writer.wait_acked(killed + 1, FAILOVER_BOUND)
            await writer.wait_acked(killed + 20, 60.0)
        finally:
            stop.set()
            await task
    # The one write in flight when the primary was killed may have been acknowledged by it (its
    # reply already on the way) and counted after `killed` was read: the acknowledgements switch
    # from the old primary to the promoted standby once, at `killed` or one later.
    switch = writer.acked.index(cluster.ports[1])
    assert switch in (killed, killed + 1)
    assert set(writer.acked[:switch]) == {cluster.ports[0]}
    assert set(writer.acked[switch:]) == {cluster.ports[1]}

    # Every acknowledged commit had reached the standby; every retried id was recorded once.
    total = len(writer.acked)
    recorded = await query(cluster.standby, "SELECT id FROM generations")
    assert sorted(gen_id for (gen_id,) in recorded) == sorted(f"gen-{i}" for i in range(total))
    assert await query(cluster.standby, "SELECT requests FROM usage_daily") == [(total,)]
    assert await query(cluster.standby, "SELECT * FROM xrouter_reconcile()") == []
    assert await query(cluster.standby, "SELECT balance FROM accounts") == [
        (Decimal(5) - Decimal("0.01") * total,)]


async def _until(check: Any, bound: float, what: str) -> float:
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < bound, f"no {what} after {bound}s"
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def test_the_watcher_sees_an_outage_and_a_promotion_without_waiting_on_the_pool(
        postgres_ha_disposable: PostgresHA) -> None:  # noqa: F811
    """The database's watcher probes a connection of its own: it marks PostgreSQL down when the
    primary stops, with no caller waiting out the pool's timeout (30 s here, so only the watcher
    can explain a detection within the bound), and up again once the standby is promoted."""
    cluster = postgres_ha_disposable
    await migrate(cluster.multi_host(), wait=5)
    async with pool(cluster.multi_host(), min_size=1, max_size=2, timeout=30.0) as connections:
        database = PgDatabase(connections, probe_every=0.5)
        database.watch(cluster.multi_host())
        try:
            await asyncio.sleep(0.6)  # one probe at least, against a live primary
            assert not database.down
            await asyncio.to_thread(cluster.stop_primary)
            noticed = await _until(lambda: database.down, 10.0, "outage noticed")
            with pytest.raises(DatabaseUnavailable):
                async with database.connection():  # fails fast now: no 30 s wait
                    pass
            await asyncio.to_thread(cluster.promote_standby)
            recovered = await _until(lambda: not database.down, 10.0, "recovery noticed")
            assert await database.fetchone("SELECT 1") == (1,)
        finally:
            await database.close()
    print(f"watcher: outage noticed after {noticed:.2f}s, recovery {recovered:.2f}s after promotion")
