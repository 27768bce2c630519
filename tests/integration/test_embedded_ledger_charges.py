"""The embedded mode's charges travel with the generation records, as the cluster mode's do
(test_ledger_charges.py): SqliteUsageLedger(charge=True) debits each new record's account in
the record's own transaction, exactly once per generation id, and a request's conclusion is
then one write (InProcessCreditGuard(ledger_charges=True) makes no database call)."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest

from tests.integration.test_ledger_stream import generation
from xrouter_router.domain.errors import InsufficientCredits, InvalidRequest
from xrouter_router.domain.keys import MASTER, ApiKey
from xrouter_router.domain.ledger import Account, GenerationRecord
from xrouter_router.storage.memory import InProcessCreditGuard
from xrouter_router.storage.sql.sqlite import SqliteAccountStore, SqliteUsageLedger
from xrouter_router.storage.sql.sqlite_db import SqliteDatabase

D = Decimal


@pytest.fixture
async def books(tmp_path: Path) -> AsyncIterator[tuple[SqliteUsageLedger, SqliteAccountStore, Path]]:
    path = tmp_path / "xrouter.sqlite3"
    db = SqliteDatabase(path)
    accounts = SqliteAccountStore(db)
    for account_id in ("acc-a", "acc-b"):
        await accounts.create(Account(account_id))
        await accounts.top_up(account_id, D("10"), f"start-{account_id}")
    yield SqliteUsageLedger(db, charge=True), accounts, path
    await db.close()


def of(gen_id: str, account_id: str, key_id: str, cost: str) -> GenerationRecord:
    return replace(generation(gen_id, cost=cost), account_id=account_id, key_id=key_id)


async def balances(accounts: SqliteAccountStore) -> tuple[Decimal, Decimal]:
    a, b = await accounts.get("acc-a"), await accounts.get("acc-b")
    assert a is not None and b is not None
    return a.balance, b.balance


async def test_each_record_debits_its_account_once(
        books: tuple[SqliteUsageLedger, SqliteAccountStore, Path]) -> None:
    ledger, accounts, path = books
    batch = [of("g-a1", "acc-a", "k1", "0.01"), of("g-a2", "acc-a", "k1", "0.01"),
             of("g-a3", "acc-a", "k3", "0.00000001"), of("g-b1", "acc-b", "k2", "0.02"),
             of("g-b2", "acc-b", "k2", "0.02"), of("g-free", "acc-a", "k1", "0"),
             of("g-master", MASTER.account_id, MASTER.id, "0.05")]
    for record in batch:
        await ledger.record(record)
    assert await balances(accounts) == (D("9.97999999"), D("9.96"))
    assert (await accounts.spent("k1"), await accounts.spent("k2")) == (D("0.02"), D("0.04"))
    for record in batch:  # a repeated record moves nothing
        await ledger.record(record)
    # A generation charged before (by AccountStore.charge) is not charged again.
    assert await accounts.charge("acc-a", "k1", "g-pre", D("0.50"))
    await ledger.record(of("g-pre", "acc-a", "k1", "0.50"))
    assert await balances(accounts) == (D("9.47999999"), D("9.96"))
    # The double entry holds: the usage entries are the generations' costs (the master key's
    # and free ones excepted), and each balance is its entries.
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT g.account_id, sum(g.cost), (SELECT -sum(amount) FROM credit_entries c"
            " WHERE c.account_id = g.account_id AND kind = 'usage')"
            " FROM generations g WHERE g.key_id <> 'master' GROUP BY 1 ORDER BY 1").fetchall()
        entries = conn.execute("SELECT account_id, sum(amount) FROM credit_entries"
                               " GROUP BY 1 ORDER BY 1").fetchall()
        stored = conn.execute("SELECT id, balance FROM accounts ORDER BY 1").fetchall()
    assert rows == [("acc-a", 52000001, 52000001), ("acc-b", 4000000, 4000000)]
    assert entries == stored


async def test_a_charge_to_no_account_refuses_the_record(
        books: tuple[SqliteUsageLedger, SqliteAccountStore, Path]) -> None:
    ledger, accounts, _ = books
    with pytest.raises(InvalidRequest, match="a charge for no account 'acc-ghost'"):
        await ledger.record(of("g-ghost", "acc-ghost", "k9", "0.01"))
    assert await ledger.get("g-ghost") is None  # one transaction: nothing was written
    assert await balances(accounts) == (D("10"), D("10"))


async def test_the_guard_settles_without_charging_again(
        books: tuple[SqliteUsageLedger, SqliteAccountStore, Path]) -> None:
    """The guard, told the ledger charges, reserves and settles against its cached balance and
    leaves the database alone: the account is debited once, by the record."""
    ledger, accounts, _ = books
    guard = InProcessCreditGuard(accounts, ledger_charges=True, refresh=3600.0)
    key = ApiKey(id="k1", account_id="acc-a", tier="max", prefix="k1")
    reservation = await guard.reserve(key, "g-1", D("2"))
    await ledger.record(of("g-1", "acc-a", "k1", "1.5"))
    await guard.settle(reservation, D("1.5"))
    assert await balances(accounts) == (D("8.5"), D("10"))
    assert guard.reserved("acc-a") == D(0)
    # The cached balance took the cost: 8.5 left, so 8.5 can be reserved and not a kopeck more.
    assert (await guard.reserve(key, "g-2", D("8.5"))).amount == D("8.5")
    with pytest.raises(InsufficientCredits):
        await guard.reserve(key, "g-3", D("0.01"))
