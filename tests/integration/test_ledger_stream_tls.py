"""The ledger's appends through the lane on a Redis Cluster that speaks TLS only (tls-port, TLS
bus and replication, client certificates required): the fast path stays the fast path, every
record reaches PostgreSQL once."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from tests.infra.fixtures import redis_tls_cluster  # noqa: F401 - the session fixture
from tests.infra.pg_fixtures import postgres_ha  # noqa: F401 - the session fixture
from tests.infra.postgres_ha import PostgresHA
from tests.infra.redis_cluster import RedisCluster
from tests.integration.test_ledger_stream import Rig, append_all, generations, rig_on


@pytest.fixture
async def tls_rig(postgres_ha: PostgresHA,  # noqa: F811
                  redis_tls_cluster: RedisCluster) -> AsyncIterator[Rig]:  # noqa: F811
    name = f"xr_{uuid.uuid4().hex[:12]}"
    postgres_ha.create_database(name)
    async with rig_on(postgres_ha.multi_host(name), redis_tls_cluster.url,
                      redis_tls_cluster.client_tls) as opened:
        yield opened


async def test_appends_through_the_lane_over_tls_reach_postgres_once(
        tls_rig: Rig, redis_tls_cluster: RedisCluster) -> None:  # noqa: F811
    ledger = tls_rig.ledger()
    records = generations(200)
    await append_all(ledger, records)
    await append_all(ledger, records[:20])  # repeats: appended again, never stored twice
    consumer = await tls_rig.consumer()
    await tls_rig.drained(consumer)
    assert await tls_rig.rows() == (200, 200, 200, 200)
    assert (consumer.written, consumer.repeated) == (200, 20)
    assert ledger.direct_writes == 0
    # Every append went the lane's way, on TLS connections to every master (the shards span them).
    assert tls_rig.lane.fallbacks == 0
    assert sorted(tls_rig.lane.connected()) == sorted(
        f"127.0.0.1:{port}" for port in redis_tls_cluster.master_ports())
