"""Degraded-mode metrics of the accounting stack: Redis errors and the policy answers given
instead (rate limits failing open, credit checks failing closed), whether PostgreSQL answers,
and the ledger's backlog in Redis (generation records, with their charges, not yet in
PostgreSQL). Read when Prometheus scrapes,
except the backlog, which needs Redis and is sampled in the background."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Protocol, runtime_checkable

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from xrouter_router.domain.outage import OutageAllowance
from xrouter_router.storage.timing import Latency

log = logging.getLogger(__name__)


@runtime_checkable
class Degradable(Protocol):
    """A Redis-backed component: `errors` Redis failures, `degraded` answers by its policy."""

    @property
    def errors(self) -> int: ...

    @property
    def degraded(self) -> int: ...


@runtime_checkable
class Laned(Protocol):
    """A component whose request-path commands take the lane (storage/redis/lane.py)."""

    @property
    def lane_fallbacks(self) -> int: ...


@runtime_checkable
class KeyCache(Protocol):
    hits: int
    misses: int

    @property
    def sizes(self) -> tuple[int, int]: ...


@runtime_checkable
class Flushing(Protocol):
    last_flush_seconds: float


@runtime_checkable
class Timed(Protocol):
    latency: Latency


@runtime_checkable
class AccountReads(Protocol):
    """The account reads' cache (domain/read_cache.py)."""

    served: int

    def __len__(self) -> int: ...


@runtime_checkable
class Database(Protocol):
    errors: int

    @property
    def down(self) -> bool: ...


class AccountingCollector(Collector):
    def __init__(self, components: dict[str, object]) -> None:
        self._components = {name: c for name, c in components.items() if isinstance(c, Degradable)}
        self._laned = {name: c for name, c in components.items() if isinstance(c, Laned)}
        self._caches = [c for c in components.values() if isinstance(c, KeyCache)]
        self._flushing = [c for c in components.values() if isinstance(c, Flushing)]
        self._databases = [c for c in components.values() if isinstance(c, Database)]
        self._reads = [c for c in components.values() if isinstance(c, AccountReads)]
        self._allowances = [a for c in components.values()
                            if isinstance(a := getattr(c, "allowance", None), OutageAllowance)]
        self._timed = {name: c for name, c in components.items()
                       if isinstance(c, Timed) and isinstance(c.latency, Latency)}
        self.backlog: int | None = None

    def collect(self) -> Iterator[Metric]:
        errors = CounterMetricFamily("xrouter_router_redis_errors",
                                     "Redis calls that failed or timed out, by component",
                                     labels=["component"])
        degraded = CounterMetricFamily(
            "xrouter_router_degraded_decisions",
            "Answers given by the degraded-mode policy while Redis failed (limits: admitted "
            "uncounted when failing open; credits: refused with 503 when failing closed)",
            labels=["component"])
        for name, component in sorted(self._components.items()):
            errors.add_metric([name], component.errors)
            degraded.add_metric([name], component.degraded)
        yield errors
        yield degraded
        yield from self._outage()
        if self._laned:
            fallbacks = CounterMetricFamily(
                "xrouter_router_redis_lane_fallbacks",
                "Request-path Redis commands the lane left to redis-py's cluster client (a moved "
                "slot, a failover, a lost connection), by component", labels=["component"])
            for name, laned in sorted(self._laned.items()):
                fallbacks.add_metric([name], laned.lane_fallbacks)
            yield fallbacks
        if self._caches:
            lookups = CounterMetricFamily(
                "xrouter_router_key_cache_lookups",
                "API key lookups by the router's cache: hit, or miss (a database read)",
                labels=["result"])
            lookups.add_metric(["hit"], sum(c.hits for c in self._caches))
            lookups.add_metric(["miss"], sum(c.misses for c in self._caches))
            yield lookups
            entries = GaugeMetricFamily(
                "xrouter_router_key_cache_entries",
                "Entries of the key cache: known keys, and unknown (mistyped or forged) key "
                "hashes; each table is bounded (XROUTER_KEY_CACHE_SIZE, "
                "XROUTER_KEY_CACHE_NEGATIVE_SIZE)", labels=["table"])
            entries.add_metric(["known"], sum(c.sizes[0] for c in self._caches))
            entries.add_metric(["unknown"], sum(c.sizes[1] for c in self._caches))
            yield entries
        yield from self._account_reads()
        for consumer in self._flushing:
            yield GaugeMetricFamily("xrouter_router_ledger_flush_seconds",
                                    "How long the ledger consumer's last batch took to write "
                                    "to PostgreSQL and acknowledge", value=consumer.last_flush_seconds)
        for database in self._databases:
            yield GaugeMetricFamily("xrouter_router_database_up",
                                    "1 while PostgreSQL answers, 0 while calls fail fast "
                                    "because it does not", value=0.0 if database.down else 1.0)
            yield CounterMetricFamily("xrouter_router_database_errors",
                                      "PostgreSQL calls that failed (connection, failover, "
                                      "timeout, server error; not requests refused as invalid)",
                                      value=database.errors)
        redis = HistogramMetricFamily(
            "xrouter_router_redis_call_seconds",
            "Redis calls by component (limits and credits: one script each; ledger: an append "
            "with its replication wait; consumer: a batch's acknowledgement)",
            labels=["component"])
        postgres = HistogramMetricFamily(
            "xrouter_router_database_call_seconds",
            "PostgreSQL calls: a pooled connection (waiting for one included) and its transaction")
        for name, timed in sorted(self._timed.items()):
            if isinstance(timed, Database):
                postgres.add_metric([], timed.latency.buckets(), timed.latency.total)
            else:
                redis.add_metric([name], timed.latency.buckets(), timed.latency.total)
        if redis.samples:
            yield redis
        if postgres.samples:
            yield postgres
        if self.backlog is not None:
            yield GaugeMetricFamily("xrouter_router_ledger_backlog",
                                    "Generation records in the Redis stream ledger not yet "
                                    "written to PostgreSQL (nor their charges)", value=self.backlog)


    def _account_reads(self) -> Iterator[Metric]:
        for reads in self._reads:
            yield CounterMetricFamily(
                "xrouter_router_stale_account_reads",
                "/v1/credits and /v1/key answered from the calling key's last good read "
                "because the database was unavailable", value=reads.served)
            yield GaugeMetricFamily("xrouter_router_account_read_cache_entries",
                                    "Last good account reads kept for while the database is "
                                    "away (bounded)", value=len(reads))

    def _outage(self) -> Iterator[Metric]:
        for allowance in self._allowances:
            yield GaugeMetricFamily(
                "xrouter_router_credits_outage_allowance_used_rub",
                "RUB of the outage allowance (XROUTER_CREDITS_OUTAGE_ALLOWANCE) that paid "
                "requests hold or spent on this replica while Redis cannot check credits; per "
                "account at most the allowance, so the overspend is bounded by allowance x "
                "replicas", value=float(allowance.used))
            outcomes = CounterMetricFamily(
                "xrouter_router_credits_outage_requests",
                "Paid requests decided by the outage allowance while Redis could not check "
                "credits: admitted, or refused because the account's allowance was spent",
                labels=["outcome"])
            outcomes.add_metric(["admitted"], allowance.admitted)
            outcomes.add_metric(["refused"], allowance.refused)
            yield outcomes

def register(registry: CollectorRegistry, components: dict[str, object]) -> AccountingCollector:
    collector = AccountingCollector(components)
    registry.register(collector)
    return collector


async def sample_backlog(collector: AccountingCollector, backlog: Callable[[], Awaitable[int]],
                         every: float = 5.0) -> None:
    """Keeps collector.backlog current; an unreachable Redis leaves the last value."""
    while True:
        with contextlib.suppress(Exception):
            collector.backlog = await backlog()
        await asyncio.sleep(every)
