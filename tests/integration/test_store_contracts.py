"""The KeyStore, AccountStore and UsageLedger contracts, run against every implementation listed in
FACTORIES; then what only the SQLite file does: it survives a reopen and never blocks the loop."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from tests.infra.pg_fixtures import postgres_ha  # noqa: F401 - the session fixture
from tests.infra.postgres_ha import PostgresHA
from xrouter_router.domain.errors import (
    Attempt,
    InternalError,
    InvalidRequest,
    NotFound,
    Unavailable,
)
from xrouter_router.domain.keys import MASTER, ApiKey, Limits
from xrouter_router.domain.ledger import Account, GenerationRecord, UsageRow, UsageTotals
from xrouter_router.domain.ports import AccountStore, KeyStore, UsageLedger
from xrouter_router.storage.migrate import migrate
from xrouter_router.storage.pg import PgAccountStore, PgDatabase, PgKeyStore, PgUsageLedger
from xrouter_router.storage.postgres import pool
from xrouter_router.storage.sqlite import (
    SqliteAccountStore,
    SqliteDatabase,
    SqliteKeyStore,
    SqliteUsageLedger,
)

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


StoresFactory = Callable[[pytest.FixtureRequest], AbstractAsyncContextManager[Stores]]


def sqlite_stores_over(db: SqliteDatabase) -> Stores:
    async def entries_total(account_id: str) -> Decimal:
        units = await db.read(lambda conn: conn.execute(
            "SELECT COALESCE(SUM(amount), 0) FROM credit_entries WHERE account_id = ?",
            (account_id,)).fetchone()[0])
        return Decimal(units).scaleb(-8)
    return Stores(SqliteKeyStore(db), SqliteAccountStore(db), SqliteUsageLedger(db), entries_total)


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
        yield Stores(PgKeyStore(db), PgAccountStore(db), PgUsageLedger(db), entries_total)


# ---------------------------------------------------------------------------------------------
# Every implementation the contracts run against.
FACTORIES: dict[str, StoresFactory] = {
    "sqlite": sqlite_stores,
    "postgres": postgres_stores,
}
# ---------------------------------------------------------------------------------------------


@pytest.fixture(params=sorted(FACTORIES))
async def stores(request: pytest.FixtureRequest) -> AsyncIterator[Stores]:
    async with FACTORIES[request.param](request) as opened:
        yield opened


def full_key(key_id: str = "key-1", account_id: str = "acc-a") -> ApiKey:
    """A key with every field set to something other than its default."""
    return ApiKey(id=key_id, account_id=account_id, tier="pro", prefix="xr-v1-abcd", label="CI bot",
                  limits=Limits(requests_per_minute=7, requests_per_day=70, tokens_per_minute=7000,
                                concurrent=3),
                  credit_limit=Decimal("12.34567891"), allowed_models=("z/last", "a/first"),
                  expires_at=1_900_000_000.25, disabled=True, created_at=1_700_000_000.5)


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


class TestKeyStore:
    async def test_every_field_round_trips_through_get_and_by_hash(self, stores: Stores) -> None:
        await with_accounts(stores, "acc-a")
        key = full_key()
        await stores.keys.create(key, HASH_1)
        assert await stores.keys.get("key-1") == key
        assert await stores.keys.by_hash(HASH_1) == key
        got = await stores.keys.get("key-1")
        assert got is not None and type(got.credit_limit) is Decimal

    async def test_a_key_with_only_defaults_round_trips(self, stores: Stores) -> None:
        await with_accounts(stores, "acc-a")
        key = plain_key("key-1")
        await stores.keys.create(key, HASH_1)
        assert await stores.keys.by_hash(HASH_1) == key

    async def test_unknown_ids_and_hashes_are_none(self, stores: Stores) -> None:
        await with_accounts(stores, "acc-a")
        await stores.keys.create(plain_key("key-1"), HASH_1)
        assert await stores.keys.get("key-2") is None
        assert await stores.keys.by_hash(HASH_2) is None

    async def test_a_duplicate_hash_or_id_is_refused_and_changes_nothing(self, stores: Stores) -> None:
        await with_accounts(stores, "acc-a")
        await stores.keys.create(plain_key("key-1"), HASH_1)
        with pytest.raises(InvalidRequest):
            await stores.keys.create(plain_key("key-2"), HASH_1)
        with pytest.raises(InvalidRequest):
            await stores.keys.create(plain_key("key-1"), HASH_2)
        assert await stores.keys.get("key-2") is None
        assert await stores.keys.by_hash(HASH_2) is None
        assert await stores.keys.by_hash(HASH_1) == plain_key("key-1")

    async def test_a_key_needs_an_existing_account(self, stores: Stores) -> None:
        with pytest.raises(NotFound):
            await stores.keys.create(plain_key("key-1", account_id="nobody"), HASH_1)
        assert await stores.keys.get("key-1") is None

    async def test_the_master_key_is_never_stored(self, stores: Stores) -> None:
        await with_accounts(stores, MASTER.account_id)
        with pytest.raises(InvalidRequest):
            await stores.keys.create(MASTER, HASH_1)
        assert await stores.keys.by_hash(HASH_1) is None

    async def test_list_gives_an_accounts_keys_oldest_first(self, stores: Stores) -> None:
        await with_accounts(stores, "acc-a", "acc-b")
        k1, k2 = plain_key("k1", created_at=30.0), plain_key("k2", created_at=10.0)
        k3 = plain_key("k3", account_id="acc-b", created_at=20.0)
        k0 = plain_key("k0", created_at=30.0)  # same time as k1: then by id
        for key, hashed in ((k1, HASH_1), (k2, HASH_2), (k3, HASH_3), (k0, "d" * 64)):
            await stores.keys.create(key, hashed)
        assert await stores.keys.list("acc-a") == [k2, k0, k1]
        assert await stores.keys.list("acc-b") == [k3]
        assert await stores.keys.list() == [k2, k3, k0, k1]
        assert await stores.keys.list("acc-c") == []

    async def test_update_changes_every_mutable_field(self, stores: Stores) -> None:
        await with_accounts(stores, "acc-a")
        await stores.keys.create(plain_key("key-1"), HASH_1)
        changed = replace(full_key(), created_at=plain_key("key-1").created_at,
                          prefix=plain_key("key-1").prefix)
        await stores.keys.update(changed)
        assert await stores.keys.get("key-1") == changed
        assert await stores.keys.by_hash(HASH_1) == changed
        cleared = plain_key("key-1")
        await stores.keys.update(cleared)
        assert await stores.keys.by_hash(HASH_1) == cleared

    async def test_updating_an_unknown_key_is_not_found(self, stores: Stores) -> None:
        with pytest.raises(NotFound):
            await stores.keys.update(plain_key("key-1"))
        assert await stores.keys.get("key-1") is None

    async def test_delete_removes_the_key_and_frees_its_hash(self, stores: Stores) -> None:
        await with_accounts(stores, "acc-a")
        await stores.keys.create(plain_key("key-1"), HASH_1)
        assert await stores.keys.delete("key-1") is True
        assert await stores.keys.get("key-1") is None
        assert await stores.keys.by_hash(HASH_1) is None
        assert await stores.keys.list("acc-a") == []
        assert await stores.keys.delete("key-1") is False
        await stores.keys.create(plain_key("key-2"), HASH_1)
        assert await stores.keys.by_hash(HASH_1) == plain_key("key-2")


class TestAccountStore:
    async def test_a_new_account_has_a_zero_balance(self, stores: Stores) -> None:
        await stores.accounts.create(Account("acc-a", name="Acme"))
        assert await stores.accounts.get("acc-a") == Account("acc-a", "Acme", Decimal(0))
        assert await stores.accounts.get("acc-b") is None

    async def test_a_duplicate_account_or_an_opening_balance_is_refused(self, stores: Stores) -> None:
        await stores.accounts.create(Account("acc-a", name="Acme"))
        with pytest.raises(InvalidRequest):
            await stores.accounts.create(Account("acc-a", name="Other"))
        with pytest.raises(InvalidRequest):
            await stores.accounts.create(Account("acc-b", balance=Decimal(5)))
        assert await stores.accounts.get("acc-a") == Account("acc-a", "Acme", Decimal(0))
        assert await stores.accounts.get("acc-b") is None

    async def test_top_up_returns_the_exact_new_balance(self, stores: Stores) -> None:
        await with_accounts(stores, "acc-a")
        assert await stores.accounts.top_up("acc-a", Decimal("0.1"), "payment-1") == Decimal("0.1")
        new = await stores.accounts.top_up("acc-a", Decimal("0.2"), "payment-2")
        assert type(new) is Decimal
        assert new == Decimal("0.3")
        assert await balance(stores, "acc-a") == Decimal("0.3")

    async def test_amounts_are_kept_to_1e_8_rounding_half_away_from_zero(self, stores: Stores) -> None:
        await with_accounts(stores, "acc-a")
        assert await stores.accounts.top_up("acc-a", Decimal("0.000000015"), "r") == Decimal("2E-8")
        assert await stores.accounts.charge("acc-a", "key-1", "gen-1", Decimal("5E-9")) is True
        assert await balance(stores, "acc-a") == Decimal("1E-8")

    async def test_unknown_accounts_and_bad_amounts_are_refused(self, stores: Stores) -> None:
        await with_accounts(stores, "acc-a")
        with pytest.raises(NotFound):
            await stores.accounts.top_up("acc-b", Decimal(1), "r")
        with pytest.raises(NotFound):
            await stores.accounts.charge("acc-b", "key-1", "gen-1", Decimal(1))
        for bad in (Decimal(0), Decimal(-1), Decimal("NaN"), Decimal("Infinity")):
            with pytest.raises(InvalidRequest):
                await stores.accounts.top_up("acc-a", bad, "r")
        with pytest.raises(InvalidRequest):
            await stores.accounts.charge("acc-a", "key-1", "gen-1", Decimal("-0.01"))
        assert await balance(stores, "acc-a") == 0
        # the refused charge did not use up its generation id
        assert await stores.accounts.charge("acc-a", "key-1", "gen-1", Decimal("0.01")) is True

    async def test_a_generation_is_charged_once(self, stores: Stores) -> None:
        await with_accounts(stores, "acc-a")
        await stores.accounts.top_up("acc-a", Decimal(10), "r")
        assert await stores.accounts.charge("acc-a", "key-1", "gen-1", Decimal("1.25")) is True
        assert await stores.accounts.charge("acc-a", "key-1", "gen-1", Decimal("1.25")) is False
        assert await stores.accounts.charge("acc-a", "key-1", "gen-1", Decimal("7")) is False
        assert await balance(stores, "acc-a") == Decimal("8.75")

    async def test_a_charge_may_take_the_balance_below_zero(self, stores: Stores) -> None:
        await with_accounts(stores, "acc-a")
        await stores.accounts.top_up("acc-a", Decimal("1"), "r")
        assert await stores.accounts.charge("acc-a", "key-1", "gen-1", Decimal("1.5")) is True
        assert await balance(stores, "acc-a") == Decimal("-0.5")

    async def test_the_balance_is_the_sum_of_the_entries_after_a_mix(self, stores: Stores) -> None:
        await with_accounts(stores, "acc-a", "acc-b")
        await stores.accounts.top_up("acc-a", Decimal("100.00000001"), "r1")
        await stores.accounts.charge("acc-a", "key-1", "gen-1", Decimal("0.33333333"))
        await stores.accounts.top_up("acc-b", Decimal("5"), "r2")
        await stores.accounts.charge("acc-a", "key-1", "gen-2", Decimal("0.66666667"))
        await stores.accounts.charge("acc-a", "key-1", "gen-1", Decimal("0.33333333"))  # a repeat
        await stores.accounts.charge("acc-b", "key-2", "gen-3", Decimal("0"))
        await stores.accounts.top_up("acc-a", Decimal("0.5"), "r3")
        assert await balance(stores, "acc-a") == Decimal("99.50000001")
        assert await balance(stores, "acc-b") == Decimal("5")

    async def test_200_concurrent_charges_debit_exactly_200_times(self, stores: Stores) -> None:
        await with_accounts(stores, "acc-a")
        await stores.accounts.top_up("acc-a", Decimal(5), "r")
        amount = Decimal("0.01000001")
        charged = await asyncio.gather(*(
            stores.accounts.charge("acc-a", f"key-{i % 3}", f"gen-{i}", amount) for i in range(200)))
        assert charged == [True] * 200
        assert await balance(stores, "acc-a") == Decimal(5) - 200 * amount == Decimal("2.999998")
        spent = [await stores.accounts.spent(f"key-{k}") for k in range(3)]
        assert spent == [67 * amount, 67 * amount, 66 * amount]

    async def test_concurrent_repeats_of_one_generation_charge_once(self, stores: Stores) -> None:
        await with_accounts(stores, "acc-a")
        charged = await asyncio.gather(*(
            stores.accounts.charge("acc-a", "key-1", "gen-1", Decimal("0.5")) for _ in range(50)))
        assert sorted(charged) == [False] * 49 + [True]
        assert await balance(stores, "acc-a") == Decimal("-0.5")
        assert await stores.accounts.spent("key-1") == Decimal("0.5")

    async def test_spent_sums_the_keys_charges_across_accounts(self, stores: Stores) -> None:
        await with_accounts(stores, "acc-a", "acc-b")
        charge = stores.accounts.charge
        await charge("acc-a", "key-1", "gen-1", Decimal("0.15"))
        await charge("acc-a", "key-1", "gen-2", Decimal("0.25000001"))
        await charge("acc-a", "key-2", "gen-3", Decimal(9))
        await charge("acc-b", "key-1", "gen-4", Decimal(1))
        await charge("acc-a", "key-1", "gen-1", Decimal("0.15"))  # a repeat
        await charge("acc-a", "key-1", "gen-3", Decimal(5))  # gen-3 was charged through key-2
        await stores.accounts.top_up("acc-a", Decimal(100), "r")
        await stores.ledger.record(generation("gen-5", key="key-1", cost="3"))  # not a charge
        assert await stores.accounts.spent("key-1") == Decimal("1.40000001")
        assert await stores.accounts.spent("key-2") == Decimal(9)
        assert await stores.accounts.spent("key-3") == Decimal(0)


ATTEMPTS = (Attempt(model="m/alpha", provider="p2", deployment="m/alpha@p2", outcome="timeout",
                    latency_ms=3000, error="no answer in 3 s", status=0),
            Attempt(model="m/alpha", provider="p1", deployment="m/alpha@p1", outcome="success",
                    latency_ms=250))


class TestUsageLedger:
    async def test_get_returns_every_field_with_the_attempts(self, stores: Stores) -> None:
        await with_accounts(stores, "acc-a")
        record = GenerationRecord(
            id="gen-1", created_at=DAY1 + 12.5, key_id="key-1", account_id="acc-a", model="m/alpha",
            provider="p1", streamed=True, prompt_tokens=11, completion_tokens=22, cached_tokens=3,
            reasoning_tokens=4, counts_native=False, cost=Decimal("0.00012345"), latency_ms=250,
            generation_ms=900, finish_reason="length", status="stream_error", attempts=ATTEMPTS)
        await stores.ledger.record(record)
        assert await stores.ledger.get("gen-1") == record
        assert await stores.ledger.get("gen-2") is None

    async def test_a_repeated_record_is_ignored(self, stores: Stores) -> None:
        await with_accounts(stores, "acc-a")
        first = generation("gen-1", prompt=10, completion=20, cost="0.5")
        await stores.ledger.record(first)
        await stores.ledger.record(replace(first, prompt_tokens=999, cost=Decimal(7)))
        assert await stores.ledger.get("gen-1") == first
        assert await stores.ledger.totals(key_id="key-1") == UsageTotals(1, 10, 20, Decimal("0.5"))

    async def test_recording_moves_no_money_charging_does(self, stores: Stores) -> None:
        await with_accounts(stores, "acc-a")
        await stores.accounts.top_up("acc-a", Decimal(10), "r")
        await stores.ledger.record(generation("gen-1", cost="1"))
        assert await balance(stores, "acc-a") == Decimal(10)
        assert await stores.accounts.spent("key-1") == Decimal(0)
        assert await stores.accounts.charge("acc-a", "key-1", "gen-1", Decimal(1)) is True
        assert await stores.accounts.charge("acc-a", "key-1", "gen-2", Decimal(2)) is True
        await stores.ledger.record(generation("gen-2", cost="2"))
        assert await balance(stores, "acc-a") == Decimal(7)
        assert await stores.ledger.totals(account_id="acc-a") == UsageTotals(2, 20, 40, Decimal(3))

    async def test_a_generation_of_an_account_without_a_row_is_recorded(self, stores: Stores) -> None:
        # Billing records the master key's generations under its account id "master", which
        # has no account row (and whose requests are never charged).
        record = generation("gen-1", key=MASTER.id, account=MASTER.account_id, cost="0.75")
        await stores.ledger.record(record)
        assert await stores.ledger.get("gen-1") == record
        assert await stores.ledger.totals(account_id=MASTER.account_id) == UsageTotals(
            1, 10, 20, Decimal("0.75"))
        assert await stores.accounts.get(MASTER.account_id) is None

    async def test_concurrent_repeats_of_one_record_count_once(self, stores: Stores) -> None:
        await with_accounts(stores, "acc-a")
        await asyncio.gather(*(stores.ledger.record(generation("gen-1", cost="0.1"))
                               for _ in range(50)))
        assert await stores.ledger.totals() == UsageTotals(1, 10, 20, Decimal("0.1"))

    async def test_totals_by_key_by_account_and_since_a_day(self, stores: Stores) -> None:
        await recorded_usage(stores)
        totals = stores.ledger.totals
        assert await totals(key_id="key-1") == UsageTotals(3, 117, 228, Decimal("0.45000001"))
        assert await totals(account_id="acc-a") == UsageTotals(4, 118, 230, Decimal("0.65000001"))
        assert await totals() == UsageTotals(5, 1118, 2230, Decimal("2.15000001"))
        assert await totals(key_id="key-1", account_id="acc-b") == UsageTotals()
        # since rounds down to its UTC day: gen-3, at 00:30 on day 2, still counts
        assert await totals(account_id="acc-a", since=DAY2 + 43_200) == UsageTotals(
            2, 107, 208, Decimal("0.35"))
        assert await totals(since=DAY3 + 86_400) == UsageTotals()

    async def test_report_groups_by_model(self, stores: Stores) -> None:
        await recorded_usage(stores)
        assert await stores.ledger.report(account_id=None, group_by=("model",), since=DAY1,
                                          until=DAY2 + 86_399) == [
            UsageRow(model="m/alpha", totals=UsageTotals(3, 1110, 2220, Decimal("1.90000001"))),
            UsageRow(model="m/beta", totals=UsageTotals(1, 1, 2, Decimal("0.2"))),
        ]

    async def test_report_groups_by_day_and_model_of_one_account(self, stores: Stores) -> None:
        await recorded_usage(stores)
        assert await stores.ledger.report(account_id="acc-a", group_by=("day", "model"),
                                          since=DAY1 + 5, until=DAY2 + 5) == [
            UsageRow(day="2024-05-01", model="m/alpha",
                     totals=UsageTotals(1, 10, 20, Decimal("0.10000001"))),
            UsageRow(day="2024-05-01", model="m/beta", totals=UsageTotals(1, 1, 2, Decimal("0.2"))),
            UsageRow(day="2024-05-02", model="m/alpha",
                     totals=UsageTotals(1, 100, 200, Decimal("0.3"))),
        ]

    async def test_report_groups_by_key_and_includes_both_ends(self, stores: Stores) -> None:
        await recorded_usage(stores)
        assert await stores.ledger.report(account_id=None, group_by=("key",), since=DAY1,
                                          until=DAY3) == [
            UsageRow(key_id="key-1", totals=UsageTotals(3, 117, 228, Decimal("0.45000001"))),
            UsageRow(key_id="key-2", totals=UsageTotals(1, 1, 2, Decimal("0.2"))),
            UsageRow(key_id="key-3", totals=UsageTotals(1, 1000, 2000, Decimal("1.5"))),
        ]

    async def test_report_groups_by_provider_then_key(self, stores: Stores) -> None:
        await recorded_usage(stores)
        assert await stores.ledger.report(account_id=None, group_by=("provider", "key"),
                                          since=DAY2, until=DAY3) == [
            UsageRow(provider="p1", key_id="key-1", totals=UsageTotals(1, 7, 8, Decimal("0.05"))),
            UsageRow(provider="p1", key_id="key-3", totals=UsageTotals(1, 1000, 2000, Decimal("1.5"))),
            UsageRow(provider="p2", key_id="key-1", totals=UsageTotals(1, 100, 200, Decimal("0.3"))),
        ]

    async def test_report_without_groups_is_one_row_of_totals(self, stores: Stores) -> None:
        await recorded_usage(stores)
        report = stores.ledger.report
        assert await report(account_id="acc-b", group_by=(), since=DAY1, until=DAY3) == [
            UsageRow(totals=UsageTotals(1, 1000, 2000, Decimal("1.5")))]
        assert await report(account_id="acc-c", group_by=(), since=DAY1, until=DAY3) == []
        assert await report(account_id=None, group_by=("model",), since=DAY2, until=DAY1) == []

    async def test_report_refuses_an_unknown_group(self, stores: Stores) -> None:
        with pytest.raises(InvalidRequest):
            await stores.ledger.report(account_id=None, group_by=("model", "colour"), since=DAY1,
                                       until=DAY2)


async def recorded_usage(stores: Stores) -> None:
    """Five generations over three UTC days, two accounts and three keys."""
    await with_accounts(stores, "acc-a", "acc-b")
    for record in (
        generation("gen-1", at=DAY1 + 3600, key="key-1", model="m/alpha", provider="p1",
                   prompt=10, completion=20, cost="0.10000001"),
        generation("gen-2", at=DAY1 + 7200, key="key-2", model="m/beta", provider="p2",
                   prompt=1, completion=2, cost="0.2"),
        generation("gen-3", at=DAY2 + 1800, key="key-1", model="m/alpha", provider="p2",
                   prompt=100, completion=200, cost="0.3"),
        generation("gen-4", at=DAY2 + 3600, key="key-3", account="acc-b", model="m/alpha",
                   provider="p1", prompt=1000, completion=2000, cost="1.5"),
        generation("gen-5", at=DAY3 + 60, key="key-1", model="m/beta", provider="p1",
                   prompt=7, completion=8, cost="0.05"),
    ):
        await stores.ledger.record(record)


@pytest.fixture
async def sqlite_db(tmp_path: Path) -> AsyncIterator[SqliteDatabase]:
    db = SqliteDatabase(tmp_path / "xrouter.db")
    try:
        yield db
    finally:
        await db.close()


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

    async def test_the_loop_keeps_ticking_while_500_records_wait_for_the_disk(
            self, sqlite_db: SqliteDatabase) -> None:
        stores = sqlite_stores_over(sqlite_db)
        await with_accounts(stores, "acc-a")
        # Another writer (the operator's CLI, say) holds the write lock for 300 ms: every record
        # waits for it (busy_timeout), and must do so off the loop.
        locked = threading.Event()

        def hold_the_lock() -> None:
            other = sqlite3.connect(sqlite_db.path, isolation_level=None)
            other.execute("BEGIN IMMEDIATE")
            locked.set()
            time.sleep(0.3)
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
        assert elapsed >= 0.3
        assert await stores.ledger.totals() == UsageTotals(500, 5000, 10000, Decimal(5))
        beats = [start, *ticks, start + elapsed]
        assert max(b - a for a, b in itertools.pairwise(beats)) < 0.1

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
