"""The StatsStore contract, against InMemoryStats and against RedisStats on a real Redis Cluster;
then what only the shared store does: replicas see each other's outcomes, updates are atomic,
a master failover and a whole-cluster outage never reach the caller."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.infra.fixtures import killed, redis_cluster  # noqa: F401 - fixtures
from tests.infra.redis_cluster import RedisCluster
from tests.integration.conftest import Stack
from tests.support import UPSTREAM_ENV
from xrouter_router import catalog_file
from xrouter_router.domain.stats import BreakerPolicy, DeploymentStats, InMemoryStats, StatsStore
from xrouter_router.storage.redis.clients import cluster_client
from xrouter_router.storage.redis.stats import UPDATE_SCRIPT, RedisStats

POLICY = BreakerPolicy(failures_to_open=3, cooldown=10.0, recent_window=5.0)
DEPLOYMENTS = {"a": "p1", "b": "p2", "c": "p1"}
WAIT = 10.0  # generous bound for a flush that must complete


def _prefix() -> str:
    return f"xr-test-{uuid.uuid4().hex[:10]}"


def redis_stats(cluster: RedisCluster, prefix: str, **options: Any) -> RedisStats:
    client_options = {k: options.pop(k) for k in ("socket_timeout", "socket_connect_timeout")
                      if k in options}
    return RedisStats(cluster_client(cluster.url, **client_options), DEPLOYMENTS, POLICY,
                      prefix=prefix, **{"read_timeout": 5.0, **options})


@dataclass
class Subject:
    """A store under test; for RedisStats also a fresh replica that reads only what Redis holds."""

    store: StatsStore
    reader: RedisStats | None = None
    closers: list[RedisStats] = field(default_factory=list)

    async def snapshots(self, *ids: str) -> list[Mapping[str, DeploymentStats]]:
        views = [await self.store.snapshot(iter(ids))]
        if self.reader is not None:
            assert isinstance(self.store, RedisStats)
            await asyncio.wait_for(self.store.flush(), WAIT)
            views.append(await self.reader.snapshot(ids))
        return views

    async def alls(self) -> list[Mapping[str, DeploymentStats]]:
        views = [await self.store.all()]
        if self.reader is not None:
            assert isinstance(self.store, RedisStats)
            await asyncio.wait_for(self.store.flush(), WAIT)
            views.append(await self.reader.all())
        return views

    async def one(self, deployment: str) -> DeploymentStats:
        """The deployment's statistics, the same in every view."""
        views = await self.snapshots(deployment)
        assert all(v == views[0] for v in views), views
        return views[0][deployment]

    async def record(self, deployment: str, *, ok: bool, now: float,
                     latency_ms: float | None = None) -> None:
        await self.store.record(deployment, DEPLOYMENTS[deployment], ok=ok, latency_ms=latency_ms,
                                now=now)


@pytest.fixture(params=["memory", "redis"])
async def subject(request: pytest.FixtureRequest) -> AsyncIterator[Subject]:
    if request.param == "memory":
        yield Subject(InMemoryStats(POLICY))
        return
    cluster: RedisCluster = request.getfixturevalue("redis_cluster")
    prefix = _prefix()
    store = redis_stats(cluster, prefix)
    reader = redis_stats(cluster, prefix, cache_ttl=0.0)
    try:
        yield Subject(store, reader)
    finally:
        await store.close()
        await reader.close()


# -- the contract ----------------------------------------------------------------------------


async def test_nothing_recorded_nothing_shown(subject: Subject) -> None:
    assert all(view == {} for view in await subject.snapshots("a", "b"))
    assert all(view == {} for view in await subject.alls())
    await subject.store.record_throughput("a", 100.0)  # no statistics yet: nothing to update
    assert all(view == {} for view in await subject.snapshots("a"))


async def test_ewma_latency_and_success(subject: Subject) -> None:
    await subject.record("a", ok=True, latency_ms=100.0, now=1.0)
    assert await subject.one("a") == DeploymentStats(provider="p1", samples=1, latency_ms=100.0,
                                                     success=1.0, updated=1.0)
    await subject.record("a", ok=True, latency_ms=200.0, now=2.0)
    # A failure's latency says nothing about the deployment's speed.
    await subject.record("a", ok=False, latency_ms=999.0, now=3.0)
    assert await subject.one("a") == DeploymentStats(
        provider="p1", samples=3, latency_ms=100.0 + 0.3 * (200.0 - 100.0),
        success=1.0 + 0.3 * (0.0 - 1.0), failures=1, last_failure=3.0, updated=3.0)
    await subject.record("a", ok=True, latency_ms=70.0, now=4.0)
    await subject.record("a", ok=True, latency_ms=None, now=5.0)
    latency = 130.0 + 0.3 * (70.0 - 130.0)
    success = 0.7 + 0.3 * (1.0 - 0.7)
    success = success + 0.3 * (1.0 - success)
    assert await subject.one("a") == DeploymentStats(
        provider="p1", samples=5, latency_ms=latency, success=success, failures=0,
        last_failure=3.0, updated=5.0)


async def test_breaker_opens_after_three_retryable_failures(subject: Subject) -> None:
    await subject.record("a", ok=False, now=10.0)
    await subject.record("a", ok=False, now=11.0)
    two = await subject.one("a")
    assert (two.failures, two.open_since, two.breaker(11.0, POLICY)) == (2, None, "closed")
    assert two.health(11.0, POLICY) == "recently_failed"
    await subject.record("a", ok=False, now=12.0)
    three = await subject.one("a")
    assert (three.failures, three.open_since) == (3, 12.0)
    assert three.breaker(21.9, POLICY) == "open"
    assert three.breaker(22.0, POLICY) == "half_open"
    await subject.record("a", ok=False, now=13.0)  # while open: the breaker keeps its start
    four = await subject.one("a")
    assert (four.failures, four.open_since, four.last_failure) == (4, 12.0, 13.0)


async def test_half_open_failure_reopens(subject: Subject) -> None:
    for now in (10.0, 11.0, 12.0):
        await subject.record("a", ok=False, now=now)
    await subject.record("a", ok=False, now=22.5)  # the probe after the cool-down fails
    stats = await subject.one("a")
    assert (stats.failures, stats.open_since, stats.last_failure) == (4, 22.5, 22.5)
    assert stats.breaker(32.0, POLICY) == "open"
    assert stats.breaker(32.5, POLICY) == "half_open"


async def test_success_closes_the_breaker(subject: Subject) -> None:
    for now in (10.0, 11.0, 12.0):
        await subject.record("a", ok=False, now=now)
    await subject.record("a", ok=True, latency_ms=50.0, now=23.0)
    success = 0.0 + 0.3 * (0.0 - 0.0)
    success = success + 0.3 * (0.0 - success)
    success = success + 0.3 * (1.0 - success)
    assert await subject.one("a") == DeploymentStats(
        provider="p1", samples=4, latency_ms=50.0, success=success, failures=0, open_since=None,
        last_failure=12.0, updated=23.0)
    assert (await subject.one("a")).health(23.0, POLICY) == "healthy"


async def test_throughput_ewma(subject: Subject) -> None:
    await subject.record("a", ok=True, latency_ms=10.0, now=1.0)
    await subject.store.record_throughput("a", 50.0)
    await subject.store.record_throughput("a", 80.0)
    assert await subject.one("a") == DeploymentStats(
        provider="p1", samples=1, latency_ms=10.0, throughput=50.0 + 0.3 * (80.0 - 50.0),
        success=1.0, updated=1.0)


async def test_snapshot_and_all_contents(subject: Subject) -> None:
    await subject.record("a", ok=True, latency_ms=10.0, now=1.0)
    await subject.record("b", ok=False, now=2.0)
    a = DeploymentStats(provider="p1", samples=1, latency_ms=10.0, success=1.0, updated=1.0)
    b = DeploymentStats(provider="p2", samples=1, success=0.0, failures=1, last_failure=2.0,
                        updated=2.0)
    assert all(view == {"a": a} for view in await subject.snapshots("a", "c"))
    assert all(view == {"a": a, "b": b} for view in await subject.snapshots("a", "b", "c"))
    assert all(view == {"a": a, "b": b} for view in await subject.alls())


# -- only the shared store -------------------------------------------------------------------


@pytest.fixture
def prefix() -> str:
    return _prefix()


@pytest.fixture
async def replicas(redis_cluster: RedisCluster, prefix: str) -> AsyncIterator[list[RedisStats]]:  # noqa: F811
    stores = [redis_stats(redis_cluster, prefix, cache_ttl=0.6) for _ in range(3)]
    try:
        yield stores
    finally:
        for store in stores:
            await store.close()


async def test_replicas_see_each_others_outcomes_after_the_cache_ttl(replicas: list[RedisStats]) -> None:
    one, two, _ = replicas
    assert await two.snapshot(["a"]) == {}
    for now in (10.0, 11.0, 12.0):
        await one.record("a", "p1", ok=False, latency_ms=None, now=now)
    await asyncio.wait_for(one.flush(), WAIT)
    assert await two.snapshot(["a"]) == {}  # served from its cache
    await asyncio.sleep(0.6)
    opened = (await two.snapshot(["a"]))["a"]
    assert (opened.samples, opened.failures, opened.breaker(12.0, POLICY)) == (3, 3, "open")
    # Its own outcome shows at once, on top of what the other replica did.
    await two.record("a", "p1", ok=True, latency_ms=40.0, now=23.0)
    closed = (await two.snapshot(["a"]))["a"]
    assert (closed.samples, closed.failures, closed.open_since, closed.latency_ms) == (4, 0, None, 40.0)
    await asyncio.wait_for(two.flush(), WAIT)
    await asyncio.sleep(0.6)
    assert await one.snapshot(["a"]) == {"a": closed}
    assert await one.all() == {"a": closed}


async def test_concurrent_records_from_two_replicas_are_atomic(replicas: list[RedisStats]) -> None:
    one, two, reader = replicas
    await asyncio.gather(*(store.record("a", "p1", ok=True, latency_ms=100.0, now=float(i))
                           for i in range(200) for store in (one, two)))
    await asyncio.wait_for(asyncio.gather(one.flush(), two.flush()), WAIT)
    stats = (await reader.snapshot(["a"]))["a"]
    assert (stats.samples, stats.latency_ms, stats.success, stats.updated) == (400, 100.0, 1.0, 199.0)
    assert one.errors == two.errors == 0


async def test_scripts_lost_by_the_nodes_are_loaded_again(redis_cluster: RedisCluster,  # noqa: F811
                                                          replicas: list[RedisStats]) -> None:
    store, _, reader = replicas
    await store.record("a", "p1", ok=True, latency_ms=10.0, now=1.0)
    await asyncio.wait_for(store.flush(), WAIT)
    for port in redis_cluster.master_ports():  # as on a promoted replica or a restarted node
        with redis.Redis(port=port) as node:
            node.script_flush()
    await store.record("a", "p1", ok=True, latency_ms=10.0, now=2.0)
    await asyncio.wait_for(store.flush(), WAIT)
    assert (await reader.snapshot(["a"]))["a"].samples == 2
    assert store.errors == 0
    with redis.Redis(port=redis_cluster.master_of(store.key("a"))) as node:
        assert node.script_exists(UPDATE_SCRIPT.sha) == [True]


async def test_master_failover_mid_load(redis_cluster: RedisCluster, prefix: str,  # noqa: F811
                                        killed: list[int]) -> None:  # noqa: F811
    store = redis_stats(redis_cluster, prefix, cache_ttl=0.05, read_timeout=0.1, retry_after=0.2,
                        socket_timeout=0.5, socket_connect_timeout=0.5)
    reader = redis_stats(redis_cluster, prefix, cache_ttl=0.0)
    stop = asyncio.Event()
    calls = 0

    async def load() -> None:
        nonlocal calls
        while not stop.is_set():
            for d in ("a", "b", "c"):
                await store.record(d, DEPLOYMENTS[d], ok=True, latency_ms=10.0, now=time.time())
            await store.snapshot(["a", "b", "c"])
            calls += 1
            await asyncio.sleep(0.005)

    async def calls_reach(count: int) -> None:
        deadline = time.monotonic() + 60
        while calls < count and not loading.done():
            assert time.monotonic() < deadline, f"fewer than {count} calls after 60 s"
            await asyncio.sleep(0.01)

    try:
        loading = asyncio.create_task(load())
        await calls_reach(10)
        port = redis_cluster.master_of(store.key("a"))
        replica = redis_cluster.hold_failover(port)  # the test decides when the outage ends
        redis_cluster.kill_master(port)
        killed.append(port)
        await calls_reach(calls + 10)  # the load goes on while the master is dead
        await asyncio.to_thread(redis_cluster.take_over, replica)
        await calls_reach(calls + 10)  # and after the failover
        stop.set()
        await loading  # no exception reached the caller
        assert calls >= 30
        await asyncio.wait_for(store.flush(), WAIT)
        before = (await reader.snapshot(["a"]))["a"].samples
        for i in range(20):
            await store.record("a", "p1", ok=True, latency_ms=10.0, now=float(i))
        await asyncio.wait_for(store.flush(), WAIT)
        assert (await reader.snapshot(["a"]))["a"].samples == before + 20
        promoted = redis_cluster.master_of(store.key("a"))
        assert promoted != port
        with redis.Redis(port=promoted) as node:  # the script was loaded again on the new master
            assert node.script_exists(UPDATE_SCRIPT.sha) == [True]
    finally:
        await store.close()
        await reader.close()


async def _bounded(call: Any, limit: float = 3.0) -> Any:
    """The call's result, asserting it did not hang: the store bounds its Redis calls at
    0.1-0.2 s; the limit is 15x that for a loaded machine, far below a hang's forever."""
    started = time.monotonic()
    result = await call
    assert time.monotonic() - started < limit
    return result


async def test_a_hung_then_stopped_cluster_never_reaches_the_caller(
        caplog: pytest.LogCaptureFixture) -> None:
    cluster = await asyncio.to_thread(RedisCluster().start)
    store = redis_stats(cluster, _prefix(), cache_ttl=0.05, read_timeout=0.1, retry_after=0.2,
                        drain_timeout=0.5, socket_timeout=0.2, socket_connect_timeout=0.2)
    try:
        await store.record("a", "p1", ok=True, latency_ms=10.0, now=1.0)
        await asyncio.wait_for(store.flush(), WAIT)
        expected = (await store.snapshot(["a"]))["a"]

        cluster.freeze()  # connections stay open, nothing answers
        await _bounded(store.record("a", "p1", ok=False, latency_ms=None, now=2.0))
        deadline = time.monotonic() + WAIT
        while store.errors == 0 and time.monotonic() < deadline:
            shown = await _bounded(store.snapshot(["a"]))
            assert shown["a"].samples == 2  # this replica's own view, outcome included
            await asyncio.sleep(0.05)
        assert store.errors > 0

        cluster.thaw()  # the queued outcome reaches Redis without anyone's help
        await asyncio.wait_for(store.flush(), WAIT)
        await asyncio.sleep(0.3)
        assert (await store.snapshot(["a"]))["a"].samples == 2

        cluster.stop()
        errors = store.errors
        for now in (3.0, 4.0, 5.0):
            await _bounded(store.record("a", "p1", ok=False, latency_ms=None, now=now))
        opened = (await _bounded(store.snapshot(["a"])))["a"]
        assert (opened.samples, opened.failures, opened.open_since) == (5, 4, 4.0)
        assert opened.latency_ms == expected.latency_ms
        assert (await _bounded(store.all()))["a"] == opened
        deadline = time.monotonic() + WAIT
        while store.errors == errors and time.monotonic() < deadline:
            await _bounded(store.snapshot(["a"]))
            await asyncio.sleep(0.05)
        assert store.errors > errors
        await _bounded(store.close(), limit=5.0)
        warnings = [r for r in caplog.records
                    if r.levelno == logging.WARNING and "Redis unavailable" in r.getMessage()]
        assert len(warnings) == 1  # at most one a minute, however many errors
    finally:
        await store.close()
        cluster.stop()


# -- the router, wired to the cluster ---------------------------------------------------------


@pytest.fixture
def router_overrides(redis_cluster: RedisCluster) -> dict[str, object]:  # noqa: F811
    return {"redis_url": redis_cluster.url}


async def test_the_router_shares_its_statistics_through_redis(
        stack: Stack, catalog: Path, redis_cluster: RedisCluster) -> None:  # noqa: F811
    model = catalog_file.load(catalog, UPSTREAM_ENV).catalog.resolve("test/failover")
    failing, serving = model.deployments  # fake-500 first, then an echo on fake2
    reader = RedisStats(cluster_client(redis_cluster.url), {d.id: d.provider for d in model.deployments},
                        cache_ttl=0.0, read_timeout=5.0)
    try:
        with redis.RedisCluster.from_url(redis_cluster.url) as admin:
            admin.delete(reader.key(failing.id), reader.key(serving.id))
        resp = await stack.chat({"model": "test/failover",
                                 "messages": [{"role": "user", "content": "hello"}]})
        assert resp.status_code == 200
        deadline = time.monotonic() + WAIT
        shown = await reader.snapshot([failing.id, serving.id])
        while len(shown) < 2 and time.monotonic() < deadline:  # the router writes in the background
            await asyncio.sleep(0.02)
            shown = await reader.snapshot([failing.id, serving.id])
        bad, good = shown[failing.id], shown[serving.id]
        assert (bad.provider, bad.samples, bad.success, bad.failures) == ("fake", 1, 0.0, 1)
        assert (good.provider, good.samples, good.success, good.failures) == ("fake2", 1, 1.0, 0)
    finally:
        await reader.close()
