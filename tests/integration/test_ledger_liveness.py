"""Liveness of the stream ledger's consumers: a killed replica's records are taken over when its
heartbeat key expires, and a consumer that stops cleanly hands its records over at once."""

from __future__ import annotations

import asyncio
import subprocess
import sys

from tests.infra.fixtures import redis_cluster  # noqa: F401 - the session fixture
from tests.infra.pg_fixtures import postgres_ha  # noqa: F401 - the session fixture
from tests.integration.test_ledger_stream import (  # noqa: F401 - rig is the fixture
    HangsAfterWriting,
    Rig,
    append_all,
    generations,
    rig,
)

# A replica whose consumer takes records and never writes them (its database hangs): once its
# first batch is stuck, it says so, then waits to be killed.
HANGING_REPLICA = """
import asyncio, sys, time
from decimal import Decimal
from xrouter_router.domain.ledger import GenerationRecord
from xrouter_router.storage.redis.ledger_consumer import LedgerConsumer
from xrouter_router.storage.redis.ledger_stream import StreamLayout, StreamLedger
from xrouter_router.storage.redis.clients import ClusterClients
from xrouter_router.storage.redis.lane import Lane

class Hangs:
    def __init__(self) -> None:
        self.called = asyncio.Event()
    async def record_many(self, records):
        self.called.set()
        await asyncio.Event().wait()
    async def record(self, record):
        raise RuntimeError("not reached: Redis is up")

async def main(url: str, prefix: str, shards: int, count: int) -> None:
    # As the router: the consumer on the background client, the appends on the lane of the
    # requests client. On one client, a command of the consumer that fails makes redis-py
    # disconnect the node's free connections in tasks that run later, by when an append may
    # have taken one: that append fails too, and goes to PostgreSQL (here: raises).
    clients = ClusterClients.connect(url)
    await clients.initialize()
    layout = StreamLayout(shards=shards, prefix=prefix)
    pg = Hangs()
    consumer = LedgerConsumer(clients.background, pg, layout, block=0.2, linger=0.01, heartbeat=1.0)
    await consumer.start()
    ledger = StreamLedger(clients.requests, pg, layout, lane=Lane(clients.requests),
                          replica_timeout=5.0)
    await asyncio.gather(*(ledger.record(GenerationRecord(
        f"gen-{i}", round(time.time(), 6), "key-1", "acc-a", "m/alpha", "p1", False, 10, 20,
        0, 0, True, Decimal("0.01"), 5, 50, "stop", "success")) for i in range(count)))
    await asyncio.wait_for(pg.called.wait(), 30)
    print("stuck", flush=True)
    await asyncio.sleep(600)

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
"""


async def test_a_killed_replicas_records_are_taken_over_when_its_heartbeat_expires(rig: Rig) -> None:  # noqa: F811
    """What a SIGKILLed replica's consumer held is taken over once its liveness key expires
    (1 s here), not after the idle-time backstop (10 minutes here, so only the heartbeat path
    can explain the result), and written exactly once."""
    replica = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HANGING_REPLICA, rig.client_url, rig.layout.prefix,
        str(rig.layout.shards), "300", stdout=subprocess.PIPE)
    try:
        assert replica.stdout is not None
        line = await asyncio.wait_for(replica.stdout.readline(), 60)
    finally:
        replica.kill()  # SIGKILL: its liveness key is not deleted, it expires
        await replica.wait()
    assert line == b"stuck\n"
    held = 0
    for shard in range(rig.layout.shards):
        summary = await rig.client.xpending(rig.layout.stream(shard), "xrouter-ledger")
        held += sum(int(c["pending"]) for c in summary["consumers"] or ())
    assert held > 0  # its first batch at least, stuck in the hanging write

    survivor = await rig.consumer(claim_idle=600.0, heartbeat=1.0)
    await rig.drained(survivor, bound=120)  # the backstop alone would need 600 s
    assert await rig.rows() == (300, 300, 300, 300)
    assert (survivor.rescued, survivor.written, survivor.repeated) == (held, 300, 0)


async def test_a_consumer_that_stops_cleanly_leaves_its_records_to_be_taken_at_once(rig: Rig) -> None:  # noqa: F811
    ledger = rig.ledger()
    doomed = HangsAfterWriting(rig.pg)
    dying = await rig.consumer(doomed, grace=0.1, heartbeat=60.0)
    await append_all(ledger, generations(50))
    await asyncio.wait_for(doomed.committed.wait(), 10)
    await dying.stop()  # deletes its liveness key: no 60 s wait for it to expire
    survivor = await rig.consumer(claim_idle=600.0, heartbeat=60.0)
    await rig.drained(survivor, bound=30)  # neither the TTL (60 s) nor the backstop (600 s)
    assert await rig.rows() == (50, 50, 50, 50)
    assert survivor.rescued > 0
