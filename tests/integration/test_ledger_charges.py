"""The cluster mode's charges travel with the generation records: PgUsageLedger(charge=True)
debits each record's account in the record's own transaction, exactly once per generation id,
and the ledger consumer tells the credit guard (on_stored) only once PostgreSQL has them; real
PostgreSQL primary + synchronous standby, real Redis Cluster."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal

import psycopg
import pytest

from tests.infra.fixtures import redis_cluster  # noqa: F401 - the session fixture
from tests.infra.pg_fixtures import postgres_ha  # noqa: F401 - the fixture
from tests.integration.test_ledger_stream import Rig, append_all, generation, rig  # noqa: F401
from xrouter_router.domain.errors import InvalidRequest
from xrouter_router.domain.keys import MASTER
from xrouter_router.domain.ledger import Account, GenerationRecord
from xrouter_router.storage.sql.pg import PgAccountStore, PgDatabase, PgUsageLedger
from xrouter_router.storage.sql.postgres import pool

D = Decimal


@dataclass
class Books:
    ledger: PgUsageLedger
    accounts: PgAccountStore
    conninfo: str

    async def balance(self, account_id: str) -> Decimal:
        account = await self.accounts.get(account_id)
        assert account is not None
        return account.balance

    async def query(self, sql: str) -> list[tuple[object, ...]]:
        async with await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True) as conn:
            return list(await (await conn.execute(sql)).fetchall())


@contextlib.asynccontextmanager
async def books_on(conninfo: str) -> AsyncIterator[Books]:
    async with pool(conninfo, min_size=1, max_size=4, timeout=2.0) as connections:
        database = PgDatabase(connections)
        books = Books(PgUsageLedger(database, charge=True), PgAccountStore(database), conninfo)
        for account_id in ("acc-a", "acc-b"):
            await books.accounts.create(Account(account_id))
            await books.accounts.top_up(account_id, D("10"), f"start-{account_id}")
        yield books


@pytest.fixture
async def books(rig: Rig) -> AsyncIterator[Books]:  # noqa: F811
    async with books_on(rig.conninfo) as opened:
        yield opened


def of(gen_id: str, account_id: str, key_id: str, cost: str) -> GenerationRecord:
    return replace(generation(gen_id, cost=cost), account_id=account_id, key_id=key_id)


async def test_each_record_debits_its_account_once(books: Books) -> None:
    batch = [of("g-a1", "acc-a", "k1", "0.01"), of("g-a2", "acc-a", "k1", "0.01"),
             of("g-a3", "acc-a", "k3", "0.00000001"), of("g-b1", "acc-b", "k2", "0.02"),
             of("g-b2", "acc-b", "k2", "0.02"), of("g-free", "acc-a", "k1", "0"),
             of("g-master", MASTER.account_id, MASTER.id, "0.05")]
    assert await books.ledger.record_many(batch) == 7
    assert (await books.balance("acc-a"), await books.balance("acc-b")) == (
        D("9.97999999"), D("9.96"))
    assert await books.accounts.spent("k1") == D("0.02")
    assert await books.accounts.spent("k2") == D("0.04")
    # A repeated batch (a claimed one) moves nothing; a generation charged before is not
    # charged again.
    assert await books.ledger.record_many(batch) == 0
    assert await books.accounts.charge("acc-a", "k1", "g-pre", D("0.50"))
    assert await books.ledger.record_many([of("g-pre", "acc-a", "k1", "0.50")]) == 1
    assert (await books.balance("acc-a"), await books.balance("acc-b")) == (
        D("9.47999999"), D("9.96"))
    # The double entry holds: balances and spends are their entries, and the usage entries are
    # the generations' costs (the master key's and free ones excepted).
    assert await books.query("SELECT * FROM xrouter_reconcile()") == []
    assert await books.query("SELECT * FROM xrouter_reconcile_key_spend()") == []
    assert await books.query(
        "SELECT g.account_id, sum(g.cost), (SELECT -sum(amount) FROM credit_entries c"
        " WHERE c.account_id = g.account_id AND kind = 'usage')"
        " FROM generations g WHERE g.key_id <> 'master' GROUP BY 1 ORDER BY 1") == [
        ("acc-a", D("0.52000001"), D("0.52000001")), ("acc-b", D("0.04"), D("0.04"))]


async def test_a_charge_to_no_account_refuses_the_batch(books: Books) -> None:
    ghost = of("g-ghost", "acc-ghost", "k9", "0.01")
    with pytest.raises(InvalidRequest, match="a charge for no account 'acc-ghost'"):
        await books.ledger.record_many([of("g-ok", "acc-a", "k1", "0.01"), ghost])
    assert await books.ledger.get("g-ok") is None  # one transaction: nothing was written
    assert await books.balance("acc-a") == D("10")
    assert await books.ledger.record_many([of("g-ok", "acc-a", "k1", "0.01")]) == 1


class Told:
    """on_stored: what the consumer said PostgreSQL holds, failing the first `fail` times."""

    def __init__(self, books: Books, fail: int = 0) -> None:
        self.books = books
        self.fail = fail
        self.batches: list[list[str]] = []
        self.charged_before_told: list[bool] = []

    async def __call__(self, records: Sequence[GenerationRecord]) -> None:
        # Told only once the charges are committed.
        rows = await self.books.query(
            "SELECT count(*) FROM credit_entries WHERE generation_id = ANY (ARRAY["
            + ",".join(f"'{r.id}'" for r in records) + "])")
        self.charged_before_told.append(rows[0][0] == len(records))
        self.batches.append(sorted(r.id for r in records))
        if self.fail > 0:
            self.fail -= 1
            raise ConnectionError("Redis went away")


async def test_the_consumer_tells_the_guard_after_commit_and_repeats_when_that_fails(
        rig: Rig, books: Books) -> None:  # noqa: F811
    told = Told(books, fail=1)
    records = [of(f"g-{i}", "acc-a", "k1", "0.01") for i in range(40)]
    await append_all(rig.ledger(), records)
    consumer = await rig.consumer(books.ledger, on_stored=told, claim_idle=1.0, batch=100)
    await rig.drained(consumer)
    # The first batch's notice failed: left pending, claimed, written again (nothing new), told.
    everything = sorted(r.id for r in records)
    assert sorted({i for batch in told.batches for i in batch}) == everything
    assert sum(len(b) for b in told.batches) > len(records)  # the failed ones were repeated
    assert all(told.charged_before_told)
    assert await books.balance("acc-a") == D("9.60")
    assert await rig.rows() == (40, 40, 40, 40)
