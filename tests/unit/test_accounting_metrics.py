"""The degraded-mode metrics read the accounting components when Prometheus scrapes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import CollectorRegistry

from xrouter_router import accounting_metrics
from xrouter_router.bootstrap import build
from xrouter_router.settings import RouterSettings
from xrouter_router.storage.timing import Latency


@dataclass
class Component:
    errors: int = 0
    degraded: int = 0


def test_counts_and_gauges_per_component() -> None:
    registry = CollectorRegistry()
    limits, credits = Component(errors=3, degraded=2), Component(errors=1, degraded=1)
    collector = accounting_metrics.register(registry, {"limits": limits, "credits": credits,
                                                       "plain": object()})
    value = registry.get_sample_value
    assert value("xrouter_router_redis_errors_total", {"component": "limits"}) == 3
    assert value("xrouter_router_degraded_decisions_total", {"component": "credits"}) == 1
    assert value("xrouter_router_redis_errors_total", {"component": "plain"}) is None
    assert value("xrouter_router_ledger_backlog") is None  # embedded mode: no stream ledger
    limits.degraded, collector.backlog = 7, 12
    assert value("xrouter_router_degraded_decisions_total", {"component": "limits"}) == 7
    assert value("xrouter_router_ledger_backlog") == 12


@dataclass
class Laned:
    lane_fallbacks: int = 0


def test_lane_fallbacks_per_component() -> None:
    registry = CollectorRegistry()
    credits, ledger = Laned(4), Laned()
    accounting_metrics.register(registry, {"credits": credits, "ledger": ledger, "plain": object()})
    value = registry.get_sample_value
    assert value("xrouter_router_redis_lane_fallbacks_total", {"component": "credits"}) == 4
    assert value("xrouter_router_redis_lane_fallbacks_total", {"component": "ledger"}) == 0
    assert value("xrouter_router_redis_lane_fallbacks_total", {"component": "plain"}) is None
    ledger.lane_fallbacks = 2
    assert value("xrouter_router_redis_lane_fallbacks_total", {"component": "ledger"}) == 2


def test_no_lane_no_fallback_metric() -> None:
    registry = CollectorRegistry()
    accounting_metrics.register(registry, {"limits": Component()})
    assert registry.get_sample_value("xrouter_router_redis_lane_fallbacks_total",
                                     {"component": "limits"}) is None


@dataclass
class Cache:
    hits: int = 0
    misses: int = 0
    sizes: tuple[int, int] = (0, 0)


@dataclass
class Consumer:
    last_flush_seconds: float = 0.0


@dataclass
class Database:
    down: bool = False
    errors: int = 0


def test_key_cache_ledger_flush_and_database_state() -> None:
    registry = CollectorRegistry()
    cache, consumer, database = Cache(40, 2, (7, 1000)), Consumer(0.012), Database()
    accounting_metrics.register(registry, {"keys": cache, "consumer": consumer,
                                           "database": database})
    value = registry.get_sample_value
    assert value("xrouter_router_key_cache_lookups_total", {"result": "hit"}) == 40
    assert value("xrouter_router_key_cache_lookups_total", {"result": "miss"}) == 2
    assert value("xrouter_router_key_cache_entries", {"table": "known"}) == 7
    assert value("xrouter_router_key_cache_entries", {"table": "unknown"}) == 1000
    assert value("xrouter_router_ledger_flush_seconds") == 0.012
    assert value("xrouter_router_database_up") == 1.0
    assert value("xrouter_router_database_errors_total") == 0
    database.down, database.errors, cache.hits = True, 3, 41
    assert value("xrouter_router_database_up") == 0.0
    assert value("xrouter_router_database_errors_total") == 3
    assert value("xrouter_router_key_cache_lookups_total", {"result": "hit"}) == 41
    assert value("xrouter_router_redis_errors_total", {"component": "keys"}) is None


async def test_an_embedded_router_exports_its_key_cache(tmp_path: Path) -> None:
    # Port 0: build() binds the gRPC port, and the default (50051) may be taken on the machine.
    settings = RouterSettings.from_env({"XROUTER_MASTER_KEY": "m", "XROUTER_DATA_DIR": str(tmp_path),
                                        "XROUTER_ROUTER_LISTEN": "127.0.0.1:0"})
    registry = CollectorRegistry()
    app = build(settings, registry=registry)
    await app.session.close()
    value = registry.get_sample_value
    assert value("xrouter_router_key_cache_lookups_total", {"result": "miss"}) == 0
    assert value("xrouter_router_key_cache_entries", {"table": "known"}) == 0
    assert value("xrouter_router_key_cache_entries", {"table": "unknown"}) == 0
    assert value("xrouter_router_database_up") is None  # SQLite: no such gauge


@dataclass
class TimedComponent(Component):
    latency: Latency = field(default_factory=Latency)


@dataclass
class TimedDatabase(Database):
    latency: Latency = field(default_factory=Latency)


def test_redis_and_database_call_latencies_as_histograms() -> None:
    registry = CollectorRegistry()
    credits, database = TimedComponent(), TimedDatabase()
    accounting_metrics.register(registry, {"credits": credits, "database": database})
    value = registry.get_sample_value
    assert value("xrouter_router_redis_call_seconds_count", {"component": "credits"}) == 0
    for seconds in (0.0002, 0.0004, 0.003, 7.0):
        credits.latency.observe(seconds)
    database.latency.observe(0.001)  # on a bound: counted in that bucket (le)
    redis = {"component": "credits"}
    assert value("xrouter_router_redis_call_seconds_bucket", {**redis, "le": "0.0001"}) == 0
    assert value("xrouter_router_redis_call_seconds_bucket", {**redis, "le": "0.00025"}) == 1
    assert value("xrouter_router_redis_call_seconds_bucket", {**redis, "le": "0.0005"}) == 2
    assert value("xrouter_router_redis_call_seconds_bucket", {**redis, "le": "0.005"}) == 3
    assert value("xrouter_router_redis_call_seconds_bucket", {**redis, "le": "5.0"}) == 3
    assert value("xrouter_router_redis_call_seconds_bucket", {**redis, "le": "+Inf"}) == 4
    assert value("xrouter_router_redis_call_seconds_count", redis) == 4
    assert value("xrouter_router_redis_call_seconds_sum", redis) == 0.0002 + 0.0004 + 0.003 + 7.0
    assert value("xrouter_router_database_call_seconds_bucket", {"le": "0.00025"}) == 0
    assert value("xrouter_router_database_call_seconds_bucket", {"le": "0.001"}) == 1
    assert value("xrouter_router_database_call_seconds_count") == 1
    assert value("xrouter_router_redis_call_seconds_count", {"component": "database"}) is None
