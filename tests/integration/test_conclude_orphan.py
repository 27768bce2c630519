"""Router.ConcludeOrphan and repeated generation ids on two replicas of the cluster mode (called
over gRPC as the gateway calls them): a generation is recorded and charged once whichever
replica sees it again, and a lost stream is charged at most the request's worst case on the
deployment that served it. (The SIGKILLs themselves: test_router_crash.py.)"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import grpc
import psycopg
import pytest

from tests.fakes.openai_upstream import FakeOpenAI
from tests.infra.fixtures import redis_cluster  # noqa: F401 - the session fixture
from tests.infra.pg_fixtures import postgres_ha  # noqa: F401 - the session fixture
from tests.infra.postgres_ha import PostgresHA
from tests.infra.redis_cluster import RedisCluster
from tests.integration.cluster_support import Cluster, running_cluster
from xrouter.v1 import router_pb2 as pb
from xrouter.v1 import router_pb2_grpc as pb_grpc
from xrouter_common.wire import AUTHORIZATION_KEY
from xrouter_router.domain.billing import cost_of, prompt_bound
from xrouter_router.domain.catalog import Price
from xrouter_router.domain.vat import DEFAULT_VAT
from xrouter_router.transport.convert import request_from_proto

# Records reach PostgreSQL through the ledger consumer: a bound on a loaded machine.
LANDED_BOUND = 30.0


@pytest.fixture
async def cluster(tmp_path: Path, catalog: Path, upstream: FakeOpenAI,
                  postgres_ha: PostgresHA,  # noqa: F811
                  redis_cluster: RedisCluster) -> AsyncIterator[Cluster]:  # noqa: F811
    async with running_cluster(tmp_path, catalog, postgres_ha, redis_cluster) as cluster:
        await cluster.top_up("100")
        yield cluster


def _request(generation_id: str, max_tokens: int = 0) -> pb.ChatRequest:
    request = pb.ChatRequest(generation_id=generation_id, model="test/echo",
                             messages=[pb.Message(role="user", content="hello there")])
    if max_tokens:
        request.max_tokens = max_tokens
    return request


async def _records(cluster: Cluster, *ids: str) -> dict[str, list[tuple[str, Decimal, str]]]:
    """Each generation's records, once every one has some (or LANDED_BOUND passed)."""
    deadline = time.monotonic() + LANDED_BOUND
    while True:
        async with await psycopg.AsyncConnection.connect(cluster.database) as conn:
            cur = await conn.execute("SELECT id, status, cost, finish_reason FROM generations"
                                     " WHERE id = any(%s)", (list(ids),))
            rows = await cur.fetchall()
        found: dict[str, list[tuple[str, Decimal, str]]] = {i: [] for i in ids}
        for gid, status, cost, finish in rows:
            found[gid].append((status, cost, finish))
        if all(found.values()) or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.05)


class _Replicas:
    """A stub on each replica, calling with the key as the gateway does."""

    def __init__(self, cluster: Cluster, key: str) -> None:
        self._channels = [grpc.aio.insecure_channel(f"127.0.0.1:{r.server.port}")
                          for r in cluster.routers]
        self.stubs = [pb_grpc.RouterStub(c) for c in self._channels]
        self.metadata = ((AUTHORIZATION_KEY, f"Bearer {key}"),)

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close()


async def test_a_generation_answered_by_two_replicas_is_recorded_and_charged_once(
        cluster: Cluster) -> None:
    key, _ = await cluster.key()
    replicas = _Replicas(cluster, key)
    twice, marker = "gen-twice-" + uuid.uuid4().hex, "gen-after-" + uuid.uuid4().hex
    try:
        # As a unary call retried on another replica after the first recorded it and died.
        for stub in replicas.stubs:
            await stub.Chat(_request(twice), metadata=replicas.metadata, timeout=20)
        await replicas.stubs[1].Chat(_request(marker), metadata=replicas.metadata, timeout=20)
    finally:
        await replicas.close()
    found = await _records(cluster, twice, marker)
    assert [s for s, _, _ in found[twice]] == ["success"]
    charged = found[twice][0][1] + found[marker][0][1]
    assert await cluster.balance(Decimal(100) - charged) == Decimal(100) - charged


async def test_an_orphan_is_charged_at_most_its_worst_case_and_once(cluster: Cluster) -> None:
    key, _ = await cluster.key()
    replicas = _Replicas(cluster, key)
    lost, answered = "gen-lost-" + uuid.uuid4().hex, "gen-answered-" + uuid.uuid4().hex
    request = _request(lost, max_tokens=16)
    orphan = pb.OrphanRequest(request=request, deployment="test/echo@fake",
                              relayed_text="word " * 2000, finish_reason="stop")
    try:
        first = await replicas.stubs[0].ConcludeOrphan(orphan, metadata=replicas.metadata,
                                                       timeout=20)
        again = await replicas.stubs[1].ConcludeOrphan(orphan, metadata=replicas.metadata,
                                                       timeout=20)
        await replicas.stubs[0].Chat(_request(answered), metadata=replicas.metadata, timeout=20)
        # A generation that has a record (however fresh) is not concluded again.
        recorded = await replicas.stubs[1].ConcludeOrphan(
            pb.OrphanRequest(request=_request(answered), deployment="test/echo@fake",
                             relayed_text="echo"), metadata=replicas.metadata, timeout=20)
    finally:
        await replicas.close()
    # 2000 words cost far more than 16 completion tokens: the cap is the worst case.
    worst = cost_of(prompt_bound(request_from_proto(request)), 16, Price(Decimal(100),
                    Decimal(200)), DEFAULT_VAT.rate_at(time.time()))
    assert (first.recorded, Decimal(first.cost)) == (True, worst)
    assert (again.recorded, again.cost, recorded.recorded, recorded.cost) == (False, "0",
                                                                            False, "0")
    found = await _records(cluster, lost, answered)
    assert found[lost] == [("router_lost", worst, "stop")]
    assert cluster.routers[0].metrics.registry.get_sample_value(
        "xrouter_router_generations_total", {"model": "test/echo", "provider": "fake",
                                             "outcome": "router_lost", "streamed": "true"}) == 1
    assert [s for s, _, _ in found[answered]] == ["success"]
    charged = worst + found[answered][0][1]
    assert await cluster.balance(Decimal(100) - charged) == Decimal(100) - charged
