"""The stream ledger through a Redis master's death: appends through the lane, as the router
makes them, two consumers, and the master of some shards killed mid-load."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

from tests.infra.fixtures import killed, redis_cluster  # noqa: F401 - fixtures
from tests.infra.pg_fixtures import postgres_ha  # noqa: F401 - the session fixture
from tests.infra.postgres_ha import PostgresHA
from tests.infra.redis_cluster import RedisCluster
from tests.integration.test_ledger_stream import (
    Load,
    Rig,
    append_all,
    as_true,
    generation,
    generations,
    rig_on,
)
from tests.support import until
from xrouter_router.storage.redis.ledger_stream import StreamLedger


async def test_a_redis_master_killed_under_load_loses_and_duplicates_nothing(
        postgres_ha: PostgresHA, redis_cluster: RedisCluster,  # noqa: F811
        killed: list[int]) -> None:  # noqa: F811
    name = f"xr_{uuid.uuid4().hex[:12]}"
    postgres_ha.create_database(name)
    async with rig_on(postgres_ha.multi_host(name), redis_cluster.url) as rig:
        consumers = [await rig.consumer(), await rig.consumer()]
        ledger = rig.ledger()
        records = generations(2100)
        load = Load(ledger, records[:2000])
        loading = await load.paused(consumers)
        port = redis_cluster.master_of(rig.layout.stream(0))
        replica = redis_cluster.hold_failover(port)  # the test, not the clock, ends the outage
        redis_cluster.kill_master(port)
        killed.append(port)
        load.resume()
        # Appends to the dead master's shards fail over to PostgreSQL while it has no successor.
        await until(lambda: as_true(ledger.direct_writes > 0), 60, "a direct write")
        await asyncio.to_thread(redis_cluster.take_over, replica)
        await loading
        assert load.appended_before_resume == 500  # the master died mid-load, by construction
        await append_all(ledger, records[2000:])  # after the failover, every shard has a master
        await rig.drained(consumers[0])
        assert await rig.rows() == (2100, 2100, 2100, 2100)
        # The lane lost the master (its appends then went through redis-py, or straight to
        # PostgreSQL while the shard had no master), and came back to the promoted one.
        assert rig.lane.fallbacks > 0 and ledger.direct_writes > 0
        promoted = redis_cluster.master_of(rig.layout.stream(0))
        assert f"127.0.0.1:{promoted}" in rig.lane.connected()


@contextlib.asynccontextmanager
async def with_paused_replica(pg: PostgresHA, cluster: RedisCluster,
                              **options: Any) -> AsyncIterator[tuple[Rig, int, int, StreamLedger]]:
    """A rig on a fresh database, the master of shard 0 and its replica (the test pauses it),
    and a ledger through the lane. Its WAIT is 2 s: the paused replica never answers it, and the
    healthy ones always do (on a loaded machine 100 ms is sometimes too short for them, which
    would make the counts depend on the machine's speed)."""
    name = f"xr_{uuid.uuid4().hex[:12]}"
    pg.create_database(name)
    async with rig_on(pg.multi_host(name), cluster.url) as rig:
        master = cluster.master_of(rig.layout.stream(0))
        ledger = StreamLedger(rig.client, rig.pg, rig.layout, lane=rig.lane,
                              replica_timeout=2.0, timeout=5.0, **options)
        yield rig, master, cluster.replica_of(master), ledger
    await asyncio.to_thread(cluster.wait_healthy)


async def test_a_master_without_a_live_replica_costs_one_wait_not_every_append(
        postgres_ha: PostgresHA, redis_cluster: RedisCluster) -> None:  # noqa: F811
    """The replica of one master stops acknowledging: the first append to that master waits
    for it (and times out), the others skip the WAIT while the background probe finds no replica,
    and every record still reaches PostgreSQL exactly once: those of that master off the request
    path at once, and through the consumer."""
    async with with_paused_replica(postgres_ha, redis_cluster) as (rig, master, replica, ledger):
        records = generations(120)
        on_master = [r for r in records
                     if redis_cluster.master_of(rig.layout.stream(rig.layout.shard(r.id))) == master]
        assert on_master and len(on_master) < len(records)
        redis_cluster.pause(replica)
        try:
            await append_all(ledger, records, concurrency=1)  # one at a time: one WAIT exactly
            await ledger.settle()
        finally:
            redis_cluster.resume(replica)
            await ledger.close()
        assert (ledger.replica_timeouts, ledger.deferred_writes) == (1, len(on_master))
        assert ledger.direct_writes == 0
        consumer = await rig.consumer()
        await rig.drained(consumer)
        assert await rig.rows() == (120, 120, 120, 120)
        assert consumer.written == len(records) - len(on_master)
        assert consumer.repeated == len(on_master)


async def test_while_a_master_has_no_replica_only_the_first_appends_wait_however_many_probes(
        postgres_ha: PostgresHA, redis_cluster: RedisCluster) -> None:  # noqa: F811
    """Concurrent appends, and probes every 50 ms: the appends in flight when the replica stopped
    acknowledging wait (at most the concurrency), then none does, through three probes that the
    replica does not confirm (each on a connection of its own, so no append queues behind its
    WAIT). Once the replica is back, a probe confirms it and the appends wait for it again."""
    async with with_paused_replica(postgres_ha, redis_cluster, probe_every=0.05) as (
            rig, _, replica, ledger):
        stop = asyncio.Event()
        appended = 0

        async def load(worker: int) -> None:
            nonlocal appended
            for i in range(100_000):
                if stop.is_set():
                    return
                await ledger.record(generation(f"w{worker}-{i}"))
                appended += 1

        redis_cluster.pause(replica)
        try:
            loading = asyncio.gather(*(load(w) for w in range(8)))
            await until(lambda: as_true(ledger.probe_timeouts >= 3), 60, "three probes")
            at_third_probe = appended
            await until(lambda: as_true(appended >= at_third_probe + 50), 60, "more appends")
            assert ledger.replica_timeouts <= 8
            timeouts_while_marked = ledger.replica_timeouts
        finally:
            redis_cluster.resume(replica)
        # A probe confirms the replica: the appends wait for it again (and it answers them).
        await until(lambda: as_true(not ledger.unreplicated()), 60, "a confirmed probe")
        stop.set()
        await loading
        await ledger.settle()
        await ledger.close()
        assert ledger.replica_timeouts == timeouts_while_marked
        consumer = await rig.consumer()
        await rig.drained(consumer)
        assert await rig.rows() == (appended, appended, appended, appended)
