"""The router's one composition root: settings in, a ready-to-start application out."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp
from prometheus_client import CollectorRegistry
from prometheus_client.registry import REGISTRY

from xrouter_common.loop_lag import watch_loop_lag
from xrouter_router import accounting_metrics, catalog_file, provider_keys
from xrouter_router.accounting_metrics import AccountingCollector, sample_backlog
from xrouter_router.accounting_stack import AccountingStack, build_accounting
from xrouter_router.domain.accounts_service import AccountsService
from xrouter_router.domain.auth import KeyAuthenticator
from xrouter_router.domain.billing import Billing
from xrouter_router.domain.catalog import Catalog
from xrouter_router.domain.failover import Failover, FailoverPolicy
from xrouter_router.domain.plans import Plan
from xrouter_router.domain.ports import ChatProvider
from xrouter_router.domain.service import ChatService
from xrouter_router.domain.stats import InMemoryStats
from xrouter_router.domain.sticky import StickyRoutes
from xrouter_router.providers.http import new_session
from xrouter_router.providers.registry import build_provider
from xrouter_router.providers.tokenizer import Cl100kCounter
from xrouter_router.settings import RouterSettings
from xrouter_router.storage import tasks
from xrouter_router.telemetry import RouterMetrics
from xrouter_router.tracing import OtelSpans
from xrouter_router.transport.accounts_servicer import AccountsServicer
from xrouter_router.transport.redact import Redactor
from xrouter_router.transport.server import GrpcServer
from xrouter_router.transport.servicer import RouterServicer

if TYPE_CHECKING:
    from xrouter_router.storage.redis.stats import RedisStats


@dataclass(slots=True)
class RouterApp:
    server: GrpcServer
    providers: Mapping[str, ChatProvider]
    session: aiohttp.ClientSession
    metrics: RouterMetrics
    accounting: AccountingStack
    shared_stats: RedisStats | None = None
    accounting_metrics: AccountingCollector | None = None
    billing: Billing | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self) -> None:
        for start in self.accounting.starts:
            await start()
        await self.server.start()
        self._tasks.append(asyncio.ensure_future(watch_loop_lag(self.metrics.loop_lag)))
        if self.accounting.backlog is not None and self.accounting_metrics is not None:
            self._tasks.append(asyncio.ensure_future(
                sample_backlog(self.accounting_metrics, self.accounting.backlog)))

    async def stop(self, grace: float) -> None:
        await tasks.stop(self._tasks)
        await self.server.stop(grace)
        if self.shared_stats is not None:
            await self.shared_stats.close()
        for provider in self.providers.values():
            await provider.close()
        await self.session.close()
        if self.billing is not None:
            await self.billing.drain()  # the cancelled requests' releases, then the stores
        for stop in self.accounting.stops:
            await stop()


def build_providers(config: catalog_file.CatalogConfig,
                    session: aiohttp.ClientSession) -> dict[str, ChatProvider]:
    return {p.name: build_provider(p, session) for p in config.providers}


def build_stats(redis_url: str, catalog: Catalog) -> InMemoryStats | RedisStats:
    """Shared through Redis Cluster when it is configured, in-process otherwise (then the
    Redis client is not even imported)."""
    if not redis_url:
        return InMemoryStats()
    from xrouter_router.storage.redis.stats import RedisStats, cluster_client

    deployments = {d.id: d.provider for m in catalog.models for d in m.deployments}
    return RedisStats(cluster_client(redis_url), deployments)


def key_secret(settings: RouterSettings) -> bytes:
    """The HMAC secret for key hashes: XROUTER_KEY_SECRET, or (embedded mode) one created once
    in the data directory, readable by the owner only."""
    if settings.key_secret:
        return settings.key_secret.encode()
    path = settings.data_dir / "key.secret"
    if not path.exists():
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_hex(32), encoding="ascii")
    return path.read_text(encoding="ascii").strip().encode()


def build(settings: RouterSettings, registry: CollectorRegistry = REGISTRY,
          tracer: Any | None = None) -> RouterApp:
    """Must run inside the event loop that will serve (aiohttp and grpc.aio bind to it).
    `tracer` is an OpenTelemetry tracer, or None when tracing is off."""
    metrics = RouterMetrics(registry)
    counter = Cl100kCounter()
    config = catalog_file.load(settings.catalog_path,
                               provider_keys.environment(settings.provider_keys_file))
    session = new_session(connect_timeout=settings.connect_timeout, pool_size=settings.pool_size)
    providers = build_providers(config, session)
    stats = build_stats(settings.redis_url, config.catalog)
    failover = Failover(providers, FailoverPolicy(settings.attempt_timeout, settings.max_attempts),
                        stats, observer=metrics,
                        tracer=OtelSpans(tracer) if tracer is not None else None)
    stack = build_accounting(settings)
    secret = key_secret(settings)
    auth = KeyAuthenticator(stack.keys, secret=secret, master_key=settings.master_key,
                            ttl=settings.key_cache_ttl, size=settings.key_cache_size,
                            negative_size=settings.key_cache_negative_size)
    if stack.listen is not None:
        stack.listen(auth.forget)
    billing = Billing(stack.meter, stack.ledger)
    sticky = StickyRoutes(ttl=settings.prompt_affinity,
                          size=10_000 if settings.prompt_affinity > 0 else 0)
    service = ChatService(config.catalog, failover, auth,
                          idle_timeout=settings.stream_idle_timeout, stats=stats,
                          counter=counter, observer=metrics, billing=billing, sticky=sticky)
    servicer = RouterServicer(service, [p.name for p in config.providers], tracer=tracer,
                              request_log=settings.request_log,
                              redactor=Redactor(p.api_key for p in config.providers))
    accounts_servicer = AccountsServicer(
        AccountsService(stack.keys, stack.accounts, stack.ledger, auth, secret=secret,
                        plans=stack.plans, default_plan=Plan(settings.default_plan_tier),
                        balance_changed=stack.balance_changed, announce=stack.announce), auth)
    server = GrpcServer(servicer, settings.listen, accounts_servicer)
    collector = accounting_metrics.register(registry, {"limits": stack.limiter,
                                                       "credits": stack.guard, "keys": auth,
                                                       **stack.observed})
    return RouterApp(server, providers, session, metrics, stack,
                     shared_stats=None if isinstance(stats, InMemoryStats) else stats,
                     accounting_metrics=collector, billing=billing)
