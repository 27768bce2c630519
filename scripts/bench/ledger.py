"""The ledger's write path on this machine, as the cluster mode runs it: generations through
StreamLedger (Redis Cluster) into PostgreSQL (primary + synchronous standby, fsync on) by one
LedgerConsumer, each record with its charge (PgUsageLedger(charge=True)) and the credit guard
told after each batch (RedisCreditGuard.applied). Measures the append rate, the flush rate and
the two together, end to end; and, for comparison, one transaction per record straight into
PostgreSQL. Checks at the end that every account was debited by exactly its records' costs.
Starts its own Redis Cluster and PostgreSQL pair.

    .venv/bin/python scripts/bench/ledger.py [generations]   (default 20000)
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import psycopg
import uvloop

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # tests.infra: the same Redis Cluster and PostgreSQL pair as the tests

from tests.infra.postgres_ha import DurablePostgresHA, PostgresHA  # noqa: E402
from tests.infra.redis_cluster import RedisCluster  # noqa: E402
from xrouter_router.domain.ledger import Account, GenerationRecord  # noqa: E402
from xrouter_router.storage.redis.clients import cluster_client  # noqa: E402
from xrouter_router.storage.redis.credits import RedisCreditGuard  # noqa: E402
from xrouter_router.storage.redis.lane import Lane  # noqa: E402
from xrouter_router.storage.redis.ledger_consumer import LedgerConsumer  # noqa: E402
from xrouter_router.storage.redis.ledger_stream import StreamLayout, StreamLedger  # noqa: E402
from xrouter_router.storage.sql.migrate import migrate  # noqa: E402
from xrouter_router.storage.sql.pg import PgAccountStore, PgDatabase, PgUsageLedger  # noqa: E402
from xrouter_router.storage.sql.postgres import pool  # noqa: E402

TARGET = 2000.0  # generations/s into PostgreSQL (issue 3)
CONCURRENCY = 64  # record() calls in flight, as concurrent requests would make them
DIRECT = 2000  # records for the one-transaction-per-record comparison
ACCOUNTS = 10
COST = Decimal("0.00123456")
START = Decimal(1_000_000)


@dataclass(frozen=True)
class Row:
    phase: str
    count: int
    seconds: float
    note: str = ""

    @property
    def rate(self) -> float:
        return self.count / self.seconds


def generations(count: int, prefix: str) -> list[GenerationRecord]:
    now = time.time()
    return [GenerationRecord(
        id=f"{prefix}-{i}", created_at=round(now + i * 1e-3, 6), key_id=f"key-{i % 50}",
        account_id=f"acc-{i % ACCOUNTS}", model=("m/alpha", "m/beta", "m/gamma")[i % 3],
        provider=("p1", "p2")[i % 2], streamed=i % 2 == 0, prompt_tokens=100 + i % 400,
        completion_tokens=200 + i % 300, cached_tokens=0, reasoning_tokens=0, counts_native=True,
        cost=COST, latency_ms=120, generation_ms=900, finish_reason="stop",
        status="success") for i in range(count)]


async def timed_all(write: Callable[[GenerationRecord], Awaitable[None]],
                    records: Sequence[GenerationRecord], concurrency: int) -> list[float]:
    """Each record through `write`, `concurrency` at a time; the latency of each, in seconds."""
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []

    async def one(record: GenerationRecord) -> None:
        async with gate:
            started = time.perf_counter()
            await write(record)
            latencies.append(time.perf_counter() - started)
    await asyncio.gather(*(one(r) for r in records))
    return latencies


def latency_note(latencies: list[float]) -> str:
    cuts = statistics.quantiles(latencies, n=100)
    return f"record() p50 {cuts[49] * 1e3:.1f} ms, p99 {cuts[98] * 1e3:.1f} ms"


async def drained(consumer: LedgerConsumer) -> None:
    while True:
        if await consumer.backlog() == 0:
            return
        await asyncio.sleep(0.01)


async def count_rows(conninfo: str) -> int:
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        row = await (await conn.execute("SELECT count(*) FROM generation_ids")).fetchone()
    assert row is not None
    return int(row[0])


async def measure(count: int, postgres: PostgresHA, redis: RedisCluster) -> list[Row]:
    conninfo = postgres.multi_host()
    await migrate(conninfo, wait=10)
    client = cluster_client(redis.url)
    rows: list[Row] = []
    async with pool(conninfo, min_size=2, max_size=4) as connections:
        database = PgDatabase(connections)
        accounts = PgAccountStore(database)
        for i in range(ACCOUNTS):
            await accounts.create(Account(f"acc-{i}"))
            await accounts.top_up(f"acc-{i}", START, "bench")
        pg = PgUsageLedger(database, charge=True)
        guard = RedisCreditGuard(client, accounts)
        lane = Lane(client)  # the appends take it, as in the router
        ledger = StreamLedger(client, pg, StreamLayout(), lane=lane, on_stored=guard.applied)
        consumer = LedgerConsumer(client, pg, StreamLayout(), on_stored=guard.applied)
        await ledger.record(generations(1, "warm-up")[0])

        started = time.perf_counter()
        latencies = await timed_all(ledger.record, generations(count, "a"), CONCURRENCY)
        rows.append(Row(f"append: record() into Redis ({CONCURRENCY} in flight)", count,
                        time.perf_counter() - started, latency_note(latencies)))

        started = time.perf_counter()
        await consumer.start()
        await drained(consumer)
        rows.append(Row("flush: backlog into PostgreSQL (1 consumer)", count + 1,
                        time.perf_counter() - started,
                        f"last batch {consumer.last_flush_seconds * 1e3:.0f} ms"))

        started = time.perf_counter()
        latencies = await timed_all(ledger.record, generations(count, "b"), CONCURRENCY)
        appended = time.perf_counter() - started
        await drained(consumer)
        rows.append(Row("end to end: append + flush together", count, time.perf_counter() - started,
                        f"appends done after {appended:.2f} s; {latency_note(latencies)}"))
        await consumer.stop()
        await lane.close()
        assert lane.fallbacks == 0, f"{lane.fallbacks} appends went through redis-py"

        started = time.perf_counter()
        latencies = await timed_all(pg.record, generations(DIRECT, "c"), 4)
        rows.append(Row("for comparison: PgUsageLedger.record(), 1 transaction each (4 in flight)",
                        DIRECT, time.perf_counter() - started, latency_note(latencies)))
        assert ledger.direct_writes == 0, "Redis refused appends"
        charged = [START - (await accounts.get(f"acc-{i}") or Account("")).balance
                   for i in range(ACCOUNTS)]
    await client.aclose()
    stored = await count_rows(conninfo)
    total = 2 * count + 1 + DIRECT
    assert stored == total, f"PostgreSQL has {stored} generations"
    assert sum(charged) == COST * total, f"charged {sum(charged)}, not {COST * total}"
    return rows


def table(rows: list[Row]) -> str:
    width = max(len(r.phase) for r in rows)
    lines = [f"{'phase':<{width}}  {'generations':>11}  {'seconds':>7}  {'gen/s':>8}  notes",
             f"{'-' * width}  {'-' * 11}  {'-' * 7}  {'-' * 8}  -----"]
    lines += [f"{r.phase:<{width}}  {r.count:>11}  {r.seconds:>7.2f}  {r.rate:>8.0f}  {r.note}"
              for r in rows]
    return "\n".join(lines)


def main() -> int:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    redis = RedisCluster().start()
    try:
        postgres = DurablePostgresHA().start()
        try:
            rows = uvloop.run(measure(count, postgres, redis))
        finally:
            postgres.stop()
    finally:
        redis.stop()
    print(table(rows))
    end_to_end = rows[2].rate
    verdict = "meets" if end_to_end >= TARGET else "MISSES"
    print(f"\nend to end {end_to_end:.0f} generations/s {verdict} the target of {TARGET:.0f}/s "
          "(PostgreSQL fsync on, synchronous standby; Redis Cluster 3+3; one process)")
    return 0 if end_to_end >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
