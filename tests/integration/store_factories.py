"""What the store contract tests share: the SQLite and PostgreSQL factories listed in FACTORIES,
the `stores` fixture that runs a test once per factory, and the keys, generations and accounts
the tests build (import the fixture into each test module, as with tests/infra/pg_fixtures.py)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from tests.infra.postgres_ha import PostgresHA
from xrouter_router.domain.addresses import AllowList
from xrouter_router.domain.errors import Attempt
from xrouter_router.domain.keys import ApiKey, Limits
from xrouter_router.domain.ledger import Account, GenerationRecord
from xrouter_router.domain.ports import (
    AccountStore,
    AuthCodeStore,
    KeyStore,
    Listings,
    PlanStore,
    RateStore,
    SessionStore,
    UsageLedger,
)
from xrouter_router.storage.sql.migrate import migrate
from xrouter_router.storage.sql.pg import PgAccountStore, PgDatabase, PgKeyStore, PgUsageLedger
from xrouter_router.storage.sql.pg_fx import PgRateStore
from xrouter_router.storage.sql.pg_listings import PgListings
from xrouter_router.storage.sql.pg_oauth import PgAuthCodeStore
from xrouter_router.storage.sql.pg_plans import PgPlanStore
from xrouter_router.storage.sql.pg_sessions import PgSessionStore
from xrouter_router.storage.sql.postgres import pool
from xrouter_router.storage.sql.sqlite import SqliteAccountStore, SqliteKeyStore, SqliteUsageLedger
from xrouter_router.storage.sql.sqlite_db import SqliteDatabase
from xrouter_router.storage.sql.sqlite_fx import SqliteRateStore
from xrouter_router.storage.sql.sqlite_listings import SqliteListings
from xrouter_router.storage.sql.sqlite_oauth import SqliteAuthCodeStore
from xrouter_router.storage.sql.sqlite_plans import SqlitePlanStore
from xrouter_router.storage.sql.sqlite_sessions import SqliteSessionStore

DAY1 = datetime(2024, 5, 1, tzinfo=UTC).timestamp()
DAY2 = DAY1 + 86_400
DAY3 = DAY2 + 86_400
HASH_1, HASH_2, HASH_3 = "a" * 64, "b" * 64, "c" * 64


@dataclass(frozen=True)
class Stores:
    """The three stores of one implementation over one fresh database."""

    keys: KeyStore
    accounts: AccountStore
    ledger: UsageLedger
    # The sum of an account's credit entries, read from the implementation's own tables: the
    # ports expose only the balance, which must always equal it.
    entries_total: Callable[[str], Awaitable[Decimal]]
    plans: PlanStore
    rates: RateStore
    listings: Listings
    sessions: SessionStore
    codes: AuthCodeStore


StoresFactory = Callable[[pytest.FixtureRequest], AbstractAsyncContextManager[Stores]]


def sqlite_stores_over(db: SqliteDatabase) -> Stores:
    async def entries_total(account_id: str) -> Decimal:
        units = await db.read(lambda conn: conn.execute(
            "SELECT COALESCE(SUM(amount), 0) FROM credit_entries WHERE account_id = ?",
            (account_id,)).fetchone()[0])
        return Decimal(units).scaleb(-8)
    return Stores(SqliteKeyStore(db), SqliteAccountStore(db), SqliteUsageLedger(db), entries_total,
                  SqlitePlanStore(db), SqliteRateStore(db), SqliteListings(db),
                  SqliteSessionStore(db), SqliteAuthCodeStore(db))


@asynccontextmanager
async def sqlite_stores(request: pytest.FixtureRequest) -> AsyncIterator[Stores]:
    tmp_path: Path = request.getfixturevalue("tmp_path")
    db = SqliteDatabase(tmp_path / "xrouter.db")
    await db.open()
    try:
        yield sqlite_stores_over(db)
    finally:
        await db.close()


@asynccontextmanager
async def postgres_stores(request: pytest.FixtureRequest) -> AsyncIterator[Stores]:
    """A fresh, migrated database on the session's primary + synchronous standby."""
    cluster: PostgresHA = request.getfixturevalue("postgres_ha")
    name = f"xr_{uuid.uuid4().hex[:12]}"
    cluster.create_database(name)
    conninfo = cluster.multi_host(name)
    await migrate(conninfo)
    async with pool(conninfo, min_size=1, max_size=8) as connections:
        db = PgDatabase(connections)

        async def entries_total(account_id: str) -> Decimal:
            row = await db.fetchone("SELECT coalesce(sum(amount), 0) FROM credit_entries"
                                    " WHERE account_id = %s", (account_id,))
            assert row is not None
            return Decimal(row[0])
        yield Stores(PgKeyStore(db), PgAccountStore(db), PgUsageLedger(db), entries_total,
                     PgPlanStore(db), PgRateStore(db), PgListings(db), PgSessionStore(db),
                     PgAuthCodeStore(db))


# ---------------------------------------------------------------------------------------------
# Every implementation the contracts run against.
FACTORIES: dict[str, StoresFactory] = {
    "sqlite": sqlite_stores,
    "postgres": postgres_stores,
}
# ---------------------------------------------------------------------------------------------


# Named apart from the `stores` argument of the tests it feeds, so importing it shadows nothing.
@pytest.fixture(params=sorted(FACTORIES), name="stores")
async def stores_fixture(request: pytest.FixtureRequest) -> AsyncIterator[Stores]:
    async with FACTORIES[request.param](request) as opened:
        yield opened


def full_key(key_id: str = "key-1", account_id: str = "acc-a") -> ApiKey:
    """A key with every field set to something other than its default."""
    return ApiKey(id=key_id, account_id=account_id, tier="pro", prefix="xr-v1-abcd", label="CI bot",
                  limits=Limits(requests_per_minute=7, requests_per_day=70, tokens_per_minute=7000,
                                concurrent=3),
                  credit_limit=Decimal("12.34567891"), allowed_models=("z/last", "a/first"),
                  allowed_ips=AllowList.parse(["2001:db8::/32", "192.0.2.0/24", "198.51.100.7"]),
                  expires_at=1_900_000_000.25, disabled=True, created_at=1_700_000_000.5,
                  residency="ru", pii_guard="mask", pii_scope="always")


def plain_key(key_id: str, account_id: str = "acc-a", created_at: float = 1_700_000_000.0) -> ApiKey:
    return ApiKey(id=key_id, account_id=account_id, tier="free", prefix=f"xr-{key_id}",
                  created_at=created_at)


def generation(gen_id: str, *, at: float = DAY1 + 60, key: str = "key-1", account: str = "acc-a",
               model: str = "m/alpha", provider: str = "p1", prompt: int = 10, completion: int = 20,
               cost: str = "0") -> GenerationRecord:
    return GenerationRecord(
        id=gen_id, created_at=at, key_id=key, account_id=account, model=model, provider=provider,
        streamed=False, prompt_tokens=prompt, completion_tokens=completion, cached_tokens=0,
        reasoning_tokens=0, counts_native=True, cost=Decimal(cost), latency_ms=1, generation_ms=2,
        finish_reason="stop", status="success")


async def with_accounts(stores: Stores, *ids: str) -> None:
    for account_id in ids:
        await stores.accounts.create(Account(account_id, name=f"name of {account_id}"))


async def balance(stores: Stores, account_id: str) -> Decimal:
    account = await stores.accounts.get(account_id)
    assert account is not None
    assert account.balance == await stores.entries_total(account_id)
    return account.balance


ATTEMPTS = (Attempt(model="m/alpha", provider="p2", deployment="m/alpha@p2", outcome="timeout",
                    latency_ms=3000, error="no answer in 3 s", status=0),
            Attempt(model="m/alpha", provider="p1", deployment="m/alpha@p1", outcome="success",
                    latency_ms=250))

