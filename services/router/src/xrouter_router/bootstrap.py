"""The router's one composition root: settings in, a ready-to-start application out."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp

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
from xrouter_router.transport.server import GrpcServer
from xrouter_router.transport.servicer import RouterServicer


@dataclass(slots=True)
class RouterApp:
    server: GrpcServer
    providers: Mapping[str, ChatProvider]
    session: aiohttp.ClientSession

    async def start(self) -> None:
        await self.server.start()

    async def stop(self, grace: float) -> None:
        await self.server.stop(grace)
        for provider in self.providers.values():
            await provider.close()
        await self.session.close()


def build_providers(config: catalog_file.CatalogConfig,
                    session: aiohttp.ClientSession) -> dict[str, ChatProvider]:
    return {p.name: build_provider(p, session) for p in config.providers}


def build(settings: RouterSettings) -> RouterApp:
    """Must run inside the event loop that will serve (aiohttp and grpc.aio bind to it)."""
    config = catalog_file.load(settings.catalog_path)
    session = new_session(connect_timeout=settings.connect_timeout, pool_size=settings.pool_size)
    providers = build_providers(config, session)
    stats = InMemoryStats()
    failover = Failover(providers, FailoverPolicy(settings.attempt_timeout, settings.max_attempts),
                        stats)
    service = ChatService(config.catalog, failover, MasterKeyAuthenticator(settings.master_key),
                          idle_timeout=settings.stream_idle_timeout, stats=stats,
                          counter=Cl100kCounter())
    server = GrpcServer(RouterServicer(service, [p.name for p in config.providers]),
                        settings.listen)
    return RouterApp(server, providers, session)
