"""CPU the routing layer adds per request: ChatService.route (statistics snapshot, filters,
balancing) plus the statistics update of one attempt, for a model with N deployments whose
statistics are populated. Prints microseconds per request."""

from __future__ import annotations

import asyncio
import sys
import time
from decimal import Decimal

from xrouter_router.domain.auth import MasterKeyAuthenticator
from xrouter_router.domain.catalog import Catalog, Deployment, Model, Price
from xrouter_router.domain.failover import Failover, FailoverPolicy
from xrouter_router.domain.service import ChatService
from xrouter_router.domain.stats import InMemoryStats
from xrouter_router.domain.types import ChatRequest, Message


async def measure(n_deployments: int, requests: int) -> float:
    deployments = tuple(
        Deployment(f"m@p{i}", f"p{i}", "upstream", Price(Decimal(100 + i), Decimal(200 + 2 * i)),
                   32000, 4096, frozenset({"streaming", "tools"}))
        for i in range(n_deployments))
    catalog = Catalog([Model("m", "m", deployments)])
    stats = InMemoryStats()
    now = time.time()
    for i, d in enumerate(deployments):
        await stats.record(d.id, d.provider, ok=i % 7 != 3, latency_ms=80.0 + i, now=now)
    service = ChatService(catalog, Failover({}, FailoverPolicy(), stats),
                          MasterKeyAuthenticator("k"), idle_timeout=60.0, stats=stats)
    request = ChatRequest("gen-bench", "m", (Message(role="user", content="hello"),))
    for _ in range(1000):
        await service.route(request, commit=True)
    started = time.process_time()
    for _ in range(requests):
        plan = await service.route(request, commit=True)
        first = plan.candidates[0].deployment
        await stats.record(first.id, first.provider, ok=True, latency_ms=90.0, now=now)
    return (time.process_time() - started) / requests * 1e6


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    print(f"{asyncio.run(measure(count, 20_000)):.1f}")
