"""The ledger's durable write path on a real Redis Cluster and a real PostgreSQL primary + synchronous
standby: StreamLedger appends, LedgerConsumer writes to PostgreSQL, and every generation record ends
up there exactly once, through repeats, rival consumers, a consumer that dies before acknowledging,
a PostgreSQL outage and a failover under load."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import Decimal
from typing import Any

import orjson
import psycopg
import pytest
from redis.asyncio.cluster import RedisCluster as Client

from tests.infra.fixtures import redis_cluster  # noqa: F401 - the session fixture
from tests.infra.pg_fixtures import postgres_ha, postgres_ha_disposable  # noqa: F401 - fixtures
from tests.infra.postgres_ha import PostgresHA, free_ports
from tests.infra.redis_cluster import RedisCluster
from tests.support import until
from xrouter_common.tls import CertFiles
from xrouter_router.domain.errors import Attempt, Unavailable
from xrouter_router.domain.ledger import GenerationRecord, UsageTotals
from xrouter_router.storage.record_codec import generation_document
from xrouter_router.storage.redis.clients import cluster_client, tls_options
from xrouter_router.storage.redis.lane import Lane
from xrouter_router.storage.redis.ledger_consumer import LedgerConsumer
from xrouter_router.storage.redis.ledger_stream import FIELD, GROUP, StreamLayout, StreamLedger
from xrouter_router.storage.sql.migrate import migrate
from xrouter_router.storage.sql.pg import PgDatabase, PgUsageLedger
from xrouter_router.storage.sql.postgres import pool

SHARDS = 8
DRAIN_BOUND = 30.0  # seconds for a backlog to reach zero once PostgreSQL takes writes


def generation(gen_id: str, *, at: float | None = None, cost: str = "0.01") -> GenerationRecord:
    """Times to the microsecond, as PostgreSQL keeps them."""
    return GenerationRecord(
        id=gen_id, created_at=round(time.time(), 6) if at is None else at, key_id="key-1",
        account_id="acc-a", model="m/alpha", provider="p1", streamed=False, prompt_tokens=10,
        completion_tokens=20, cached_tokens=3, reasoning_tokens=4, cache_write_tokens=5,
        counts_native=True, cost=Decimal(cost), latency_ms=5, generation_ms=50,
        finish_reason="stop", status="success",
        attempts=(Attempt(model="m/alpha", provider="p1", deployment="m/alpha@p1",
                          outcome="success", latency_ms=5),))


def generations(count: int, prefix: str = "gen") -> list[GenerationRecord]:
    return [generation(f"{prefix}-{i}") for i in range(count)]


@dataclass
class Rig:
    """A fresh database and a fresh key prefix in Redis; consumers built on demand."""

    client: Client
    pg: PgUsageLedger
    layout: StreamLayout
    conninfo: str
    client_url: str
    consumers: list[LedgerConsumer]
    lane: Lane

    def ledger(self, **options: Any) -> StreamLedger:
        """Appending through the lane, as the router does, unless `lane` says otherwise."""
        # A generous WAIT: on a loaded CI machine a 100 ms replica timeout sends some records
        # straight to PostgreSQL, which is correct but would make the exact counts below timing-bound.
        return StreamLedger(self.client, self.pg, self.layout,
                            **{"replica_timeout": 5.0, "lane": self.lane, **options})

    async def consumer(self, pg: Any = None, **options: Any) -> LedgerConsumer:
        settings: dict[str, Any] = {"block": 0.2, "linger": 0.01, "backoff": 0.05,
                                    "max_backoff": 0.5, **options}
        consumer = LedgerConsumer(self.client, pg or self.pg, self.layout, **settings)
        await consumer.start()
        self.consumers.append(consumer)
        return consumer

    async def rows(self) -> tuple[int, int, int, int]:
        """(generations, distinct ids, generation_ids, requests in the rollup), read on the node
        that accepts writes now."""
        async with await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True) as conn:
            cursor = await conn.execute(
                "SELECT (SELECT count(*) FROM generations), (SELECT count(DISTINCT id) FROM generations),"
                " (SELECT count(*) FROM generation_ids),"
                " (SELECT coalesce(sum(requests), 0)::bigint FROM usage_daily)")
            row = await cursor.fetchone()
        assert row is not None
        return (int(row[0]), int(row[1]), int(row[2]), int(row[3]))

    async def drained(self, consumer: LedgerConsumer, bound: float = DRAIN_BOUND) -> None:
        await until(lambda: backlog_is(consumer, 0), bound, "an empty backlog")


async def backlog_is(consumer: LedgerConsumer, expected: int) -> bool:
    try:
        return await consumer.backlog() == expected
    except Unavailable:
        return False


async def append_all(ledger: StreamLedger, records: Sequence[GenerationRecord],
                     concurrency: int = 32) -> None:
    gate = asyncio.Semaphore(concurrency)

    async def one(record: GenerationRecord) -> None:
        async with gate:
            await ledger.record(record)
    await asyncio.gather(*(one(r) for r in records))


@contextlib.asynccontextmanager
async def rig_on(conninfo: str, redis_url: str, tls: CertFiles | None = None) -> AsyncIterator[Rig]:
    await migrate(conninfo, wait=10)
    client = cluster_client(redis_url, **tls_options(tls))
    async with pool(conninfo, min_size=1, max_size=4, timeout=2.0) as connections:
        rig = Rig(client, PgUsageLedger(PgDatabase(connections)),
                  StreamLayout(shards=SHARDS, prefix=f"t{uuid.uuid4().hex[:10]}"), conninfo,
                  redis_url, [], Lane(client))
        try:
            yield rig
        finally:
            for consumer in rig.consumers:
                await consumer.stop()
            await rig.lane.close()
            await client.aclose()


@pytest.fixture
async def rig(postgres_ha: PostgresHA, redis_cluster: RedisCluster) -> AsyncIterator[Rig]:  # noqa: F811
    name = f"xr_{uuid.uuid4().hex[:12]}"
    postgres_ha.create_database(name)
    async with rig_on(postgres_ha.multi_host(name), redis_cluster.url) as opened:
        yield opened


class HangsAfterWriting:
    """A consumer's PostgreSQL that commits the first batch, then never answers: the replica
    died between its commit and its XACK."""

    def __init__(self, pg: PgUsageLedger) -> None:
        self._pg = pg
        self.committed = asyncio.Event()

    async def record_many(self, records: Sequence[GenerationRecord]) -> int:
        if not self.committed.is_set():
            await self._pg.record_many(records)
            self.committed.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


@pytest.mark.parametrize("through", ["lane", "client"])
async def test_records_reach_postgres_exactly_once(rig: Rig, through: str) -> None:
    ledger = rig.ledger() if through == "lane" else rig.ledger(lane=None)
    records = generations(300)
    await append_all(ledger, records)
    await append_all(ledger, records[:50])  # repeats: appended again, never stored twice
    consumer = await rig.consumer()
    await rig.drained(consumer)
    assert await rig.rows() == (300, 300, 300, 300)
    assert (consumer.written, consumer.repeated) == (300, 50)
    assert await ledger.totals(key_id="key-1") == UsageTotals(300, 3000, 6000, Decimal(3),
                                                              900, 1500, 1200)
    assert await ledger.get("gen-7") == await rig.pg.get("gen-7") == records[7]
    assert consumer.last_flush_at > 0 and consumer.last_flush_seconds > 0
    assert ledger.direct_writes == 0
    assert (rig.lane.fallbacks, bool(rig.lane.connected())) == (0, through == "lane")


async def test_get_finds_a_record_as_soon_as_record_returns(rig: Rig) -> None:
    ledger = rig.ledger()
    record = generation("gen-1", at=1_714_521_612.5)  # May 2024: a partition made on demand
    await ledger.record(record)
    assert await ledger.get("gen-1") == record
    assert await rig.pg.get("gen-1") is None  # no consumer yet: only in Redis
    assert await ledger.get("gen-2") is None
    consumer = await rig.consumer()
    await rig.drained(consumer)
    assert await rig.client.exists(rig.layout.recent(rig.layout.shard("gen-1"), "gen-1")) == 0
    assert await ledger.get("gen-1") == await rig.pg.get("gen-1") == record


async def test_two_consumers_never_write_a_record_twice(rig: Rig) -> None:
    first, second = await rig.consumer(), await rig.consumer()
    ledger = rig.ledger()
    await asyncio.gather(append_all(ledger, generations(600, "a"), concurrency=16),
                         append_all(ledger, generations(600, "b"), concurrency=16))
    await rig.drained(first)
    assert await rig.rows() == (1200, 1200, 1200, 1200)
    assert first.written + second.written == 1200
    assert first.written > 0 and second.written > 0
    assert first.repeated == second.repeated == 0


async def test_what_a_dead_consumer_left_pending_is_claimed_and_written_once(rig: Rig) -> None:
    ledger = rig.ledger()
    doomed = HangsAfterWriting(rig.pg)
    dying = await rig.consumer(doomed, grace=0.1)
    await append_all(ledger, generations(200))
    await asyncio.wait_for(doomed.committed.wait(), 10)
    committed = (await rig.rows())[0]
    assert 0 < committed <= 200
    await dying.stop()  # gives up within its grace: its entries stay pending, unacknowledged
    assert await dying.backlog() == 200

    rescuer = await rig.consumer(claim_idle=1.0)
    await rig.drained(rescuer)
    assert await rig.rows() == (200, 200, 200, 200)
    assert rescuer.written == 200 - committed
    assert rescuer.repeated >= committed


# A replica of its own: appends records (and consumes them) until told it may die.
REPLICA = """
import asyncio, sys, time
from decimal import Decimal
from xrouter_router.domain.ledger import GenerationRecord
from xrouter_router.storage.redis.ledger_consumer import LedgerConsumer
from xrouter_router.storage.redis.ledger_stream import StreamLayout, StreamLedger
from xrouter_router.storage.sql.pg import PgDatabase, PgUsageLedger
from xrouter_router.storage.sql.postgres import pool
from xrouter_router.storage.redis.clients import cluster_client

async def main(conninfo: str, url: str, prefix: str, shards: int, count: int) -> None:
    client = cluster_client(url)
    async with pool(conninfo, min_size=1, max_size=2) as connections:
        pg = PgUsageLedger(PgDatabase(connections))
        layout = StreamLayout(shards=shards, prefix=prefix)
        consumer = LedgerConsumer(client, pg, layout, block=0.2, linger=0.01)
        await consumer.start()
        ledger = StreamLedger(client, pg, layout)
        for start in range(0, count, 50):
            await asyncio.gather(*(ledger.record(GenerationRecord(
                f"gen-{i}", round(time.time(), 6), "key-1", "acc-a", "m/alpha", "p1", False, 10, 20,
                0, 0, True, Decimal("0.01"), 5, 50, "stop", "success"))
                for i in range(start, start + 50)))
        print("appended", consumer.written, flush=True)
        await asyncio.sleep(60)

asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])))
"""


async def test_a_replica_killed_right_after_answering_loses_nothing(rig: Rig) -> None:
    replica = await asyncio.create_subprocess_exec(
        sys.executable, "-c", REPLICA, rig.conninfo, rig.client_url, rig.layout.prefix,
        str(rig.layout.shards), "1000", stdout=subprocess.PIPE)
    try:
        assert replica.stdout is not None
        line = await asyncio.wait_for(replica.stdout.readline(), 30)
    finally:
        replica.kill()  # SIGKILL: whatever it read and did not acknowledge stays pending
        await replica.wait()
    assert line.startswith(b"appended ")
    rescuer = await rig.consumer(claim_idle=1.0)
    await rig.drained(rescuer)
    assert await rig.rows() == (1000, 1000, 1000, 1000)


async def test_redis_down_falls_back_to_postgres_then_unavailable(rig: Rig) -> None:
    dead_redis = cluster_client(f"redis://127.0.0.1:{free_ports(1)[0]}")
    try:
        ledger = StreamLedger(dead_redis, rig.pg, rig.layout)
        record = generation("gen-1")
        await ledger.record(record)
        assert ledger.direct_writes == 1
        assert await ledger.get("gen-1") == record
        assert await rig.rows() == (1, 1, 1, 1)
        async with pool(f"host=127.0.0.1 port={free_ports(1)[0]} dbname=x user=x connect_timeout=1",
                        min_size=0, max_size=1, timeout=0.5) as nowhere:
            unreachable = StreamLedger(dead_redis, PgUsageLedger(PgDatabase(nowhere)), rig.layout)
            with pytest.raises(Unavailable):
                await unreachable.record(generation("gen-2"))
    finally:
        await dead_redis.aclose()


async def test_an_entry_that_is_not_a_record_is_dead_lettered_and_blocks_nothing(rig: Rig) -> None:
    ledger = rig.ledger()
    await append_all(ledger, generations(20))
    stream = rig.layout.stream(3)
    await rig.client.xadd(stream, {b"r": b"{not json"})
    consumer = await rig.consumer()
    await rig.drained(consumer)
    assert await rig.rows() == (20, 20, 20, 20)
    assert consumer.dead_lettered == 1
    dead: Any = await rig.client.xrange(rig.layout.dead(3))
    assert [fields[b"r"] for _, fields in dead] == [b"{not json"]


async def test_a_document_written_before_the_cache_write_bucket_is_recorded_with_zero(
        rig: Rig) -> None:
    record = generation("gen-old")
    old = generation_document(record)
    del old["cache_write_tokens"]  # what a router of the previous release appended
    stream = rig.layout.stream(rig.layout.shard("gen-old"))
    await rig.client.xadd(stream, {FIELD: orjson.dumps(old)})
    consumer = await rig.consumer()
    await rig.drained(consumer)
    assert (consumer.written, consumer.dead_lettered) == (1, 0)
    assert await rig.pg.get("gen-old") == replace(record, cache_write_tokens=0)


async def test_the_jurisdiction_crosses_the_stream_and_older_documents_record_none(
        rig: Rig) -> None:
    served, older = replace(generation("gen-ru"), jurisdiction="ru"), generation("gen-old")
    old = generation_document(older)
    del old["jurisdiction"]  # what a router of the previous release appended
    for doc in (generation_document(served), old):
        stream = rig.layout.stream(rig.layout.shard(str(doc["id"])))
        await rig.client.xadd(stream, {FIELD: orjson.dumps(doc)})
    consumer = await rig.consumer()
    await rig.drained(consumer)
    assert (consumer.written, consumer.dead_lettered) == (2, 0)
    assert await rig.pg.get("gen-ru") == served
    assert await rig.pg.get("gen-old") == older


async def test_a_converted_cost_crosses_the_stream_with_its_currency_rate_and_original(
        rig: Rig) -> None:
    usd = replace(generation("gen-usd", cost="0.04859030"), price_currency="USD",
                  fx_rate=Decimal("92.5001"), cost_original=Decimal("0.0005253"),
                  fx_date=date(2026, 12, 5))
    rub = generation("gen-rub")
    assert "fx_rate" not in generation_document(rub)  # RUB documents keep their old shape
    for doc in (generation_document(usd), generation_document(rub)):
        stream = rig.layout.stream(rig.layout.shard(str(doc["id"])))
        await rig.client.xadd(stream, {FIELD: orjson.dumps(doc)})
    consumer = await rig.consumer()
    await rig.drained(consumer)
    assert (consumer.written, consumer.dead_lettered) == (2, 0)
    assert await rig.pg.get("gen-usd") == usd
    assert await rig.pg.get("gen-rub") == rub


async def test_vat_crosses_the_stream_and_older_documents_record_none(rig: Rig) -> None:
    taxed = replace(generation("gen-vat", cost="1.22"), vat=Decimal("0.22"),
                    vat_rate=Decimal("0.22"))
    older = generation("gen-old", cost="0.5")
    old = generation_document(older)
    for name in ("cost_net", "vat", "vat_rate"):
        del old[name]  # what a router of the previous release appended
    assert {k: generation_document(taxed)[k] for k in ("cost", "cost_net", "vat", "vat_rate")} \
        == {"cost": "1.22000000", "cost_net": "1.00000000", "vat": "0.22000000",
            "vat_rate": "0.22"}
    for doc in (generation_document(taxed), old):
        stream = rig.layout.stream(rig.layout.shard(str(doc["id"])))
        await rig.client.xadd(stream, {FIELD: orjson.dumps(doc)})
    consumer = await rig.consumer()
    await rig.drained(consumer)
    assert (consumer.written, consumer.dead_lettered) == (2, 0)
    assert await rig.pg.get("gen-vat") == taxed
    assert await rig.pg.get("gen-old") == older
    async with await psycopg.AsyncConnection.connect(rig.conninfo, autocommit=True) as conn:
        cursor = await conn.execute("SELECT id, cost, cost_net, vat, vat_rate FROM generations"
                                    " ORDER BY id")
        rows = await cursor.fetchall()
    assert rows == [("gen-old", Decimal("0.5"), Decimal("0.5"), Decimal(0), Decimal(0)),
                    ("gen-vat", Decimal("1.22"), Decimal(1), Decimal("0.22"), Decimal("0.22"))]

async def test_postgres_down_for_seconds_loses_nothing(
        postgres_ha_disposable: PostgresHA, redis_cluster: RedisCluster) -> None:  # noqa: F811
    cluster = postgres_ha_disposable
    async with rig_on(cluster.multi_host(), redis_cluster.url) as rig:
        consumer = await rig.consumer()
        ledger = rig.ledger()
        await append_all(ledger, generations(10, "before"))
        await rig.drained(consumer)
        await asyncio.to_thread(cluster.stop_primary)
        await append_all(ledger, generations(500, "during"))
        assert ledger.direct_writes == 0  # Redis took them all
        await asyncio.sleep(2.0)
        assert await consumer.backlog() == 500  # nothing can be written meanwhile
        await asyncio.to_thread(cluster.promote_standby)
        await rig.drained(consumer)
        assert await rig.rows() == (510, 510, 510, 510)
        assert consumer.failures > 0


async def test_a_failover_under_load_loses_and_duplicates_nothing(
        postgres_ha_disposable: PostgresHA, redis_cluster: RedisCluster) -> None:  # noqa: F811
    cluster = postgres_ha_disposable
    async with rig_on(cluster.multi_host(), redis_cluster.url) as rig:
        consumers = [await rig.consumer(), await rig.consumer()]
        ledger = rig.ledger()
        records = generations(2000)
        load = Load(ledger, records)
        loading = await load.paused(consumers)
        await asyncio.to_thread(cluster.stop_primary, kill=True)
        load.resume()  # the other 1,500 are appended while there is no primary, and after
        await asyncio.to_thread(cluster.promote_standby)
        await loading
        assert load.appended_before_resume == 500  # the primary died mid-load, by construction
        await rig.drained(consumers[0])
        assert await rig.rows() == (2000, 2000, 2000, 2000)
        assert ledger.direct_writes == 0


@dataclass
class Load:
    """`records` appended 50 at a time; the load stops after `pause_at` of them until the test
    has done what it wanted done mid-load (killed a server) and calls resume()."""

    ledger: StreamLedger
    records: Sequence[GenerationRecord]
    pause_at: int = 500
    appended: int = 0
    appended_before_resume: int = -1
    _at_pause: asyncio.Event = field(default_factory=asyncio.Event)
    _resumed: asyncio.Event = field(default_factory=asyncio.Event)

    async def paused(self, consumers: Sequence[LedgerConsumer]) -> asyncio.Task[None]:
        """The load's task, once it has paused at `pause_at` records and the consumers have
        written 200 of them."""
        loading = asyncio.create_task(self._run())
        await asyncio.wait_for(self._at_pause.wait(), 60)
        await until(lambda: written_at_least(consumers, 200), 60, "200 records written")
        return loading

    def resume(self) -> None:
        self.appended_before_resume = self.appended
        self._resumed.set()

    async def _run(self) -> None:
        for start in range(0, len(self.records), 50):
            if start == self.pause_at:
                self._at_pause.set()
                await self._resumed.wait()
            await append_all(self.ledger, self.records[start:start + 50])
            self.appended = start + 50


async def as_true(value: bool) -> bool:
    return value


async def written_at_least(consumers: Sequence[LedgerConsumer], count: int) -> bool:
    return sum(c.written for c in consumers) >= count


def test_the_layout_spreads_shards_over_every_master(redis_cluster: RedisCluster) -> None:  # noqa: F811
    layout = StreamLayout()
    masters = {redis_cluster.master_of(layout.stream(s)) for s in range(layout.shards)}
    assert len(masters) == 3
    shards = {layout.shard(f"gen-{i}") for i in range(1000)}
    assert shards == set(range(layout.shards))
    assert GROUP == "xrouter-ledger"

