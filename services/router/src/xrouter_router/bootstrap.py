"""The router's one composition root: settings in, a ready-to-start application out."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field

import aiohttp
from prometheus_client import CollectorRegistry
from prometheus_client.registry import REGISTRY

from xrouter_common.loop_lag import watch_loop_lag
from xrouter_router import catalog_file
from xrouter_router.domain.auth import MasterKeyAuthenticator
from xrouter_router.domain.failover import Failover, FailoverPolicy
from xrouter_router.domain.ports import ChatProvider
from xrouter_router.domain.service import ChatService
from xrouter_router.domain.stats import InMemoryStats
from xrouter_router.providers.http import new_session
from xrouter_router.providers.registry import build_provider
from xrouter_router.providers.tokenizer import Cl100kCounter
from xrouter_router.settings import RouterSettings
from xrouter_router.telemetry import RouterMetrics
from xrouter_router.transport.server import GrpcServer
from xrouter_router.transport.servicer import RouterServicer


@dataclass(slots=True)
class RouterApp:
    server: GrpcServer
    providers: Mapping[str, ChatProvider]
    session: aiohttp.ClientSession
    metrics: RouterMetrics
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self) -> None:
        await self.server.start()
        self._tasks.append(asyncio.ensure_future(watch_loop_lag(self.metrics.loop_lag)))

    async def stop(self, grace: float) -> None:
        for task in self._tasks:
            task.cancel()
        await self.server.stop(grace)
        for provider in self.providers.values():
            await provider.close()
        await self.session.close()


def build_providers(config: catalog_file.CatalogConfig,
                    session: aiohttp.ClientSession) -> dict[str, ChatProvider]:
    return {p.name: build_provider(p, session) for p in config.providers}


def build(settings: RouterSettings, registry: CollectorRegistry = REGISTRY) -> RouterApp:
    """Must run inside the event loop that will serve (aiohttp and grpc.aio bind to it)."""
    metrics = RouterMetrics(registry)
    config = catalog_file.load(settings.catalog_path)
    session = new_session(connect_timeout=settings.connect_timeout, pool_size=settings.pool_size)
    providers = build_providers(config, session)
    stats = InMemoryStats()
    failover = Failover(providers, FailoverPolicy(settings.attempt_timeout, settings.max_attempts),
                        stats, observer=metrics)
    service = ChatService(config.catalog, failover, MasterKeyAuthenticator(settings.master_key),
                          idle_timeout=settings.stream_idle_timeout, stats=stats,
                          counter=Cl100kCounter(), observer=metrics)
    server = GrpcServer(RouterServicer(service, [p.name for p in config.providers]),
                        settings.listen)
    return RouterApp(server, providers, session, metrics)
