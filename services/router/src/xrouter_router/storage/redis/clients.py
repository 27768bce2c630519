"""The router's Redis Cluster clients (redis-py's own `redis.asyncio.cluster.RedisCluster`).

A process holds two, sharing one command table: `requests` for the request path (the credit
guard and the limiter, the ledger's appends; their hot commands travel on lanes of their own,
storage/redis/lane.py, which take only the topology and the fallbacks from the client) and
`background` for the work off the request path (the ledger consumer, key revocations, the shared
statistics). Each client keeps its own map of the 16,384 slots, its own node objects and
connection pools: about 1.2 MB of an idle router each. One client per component (five) cost
3 MB more than two (docs/performance.md, issue 16); redis-py's pools give every command in
flight a connection of its own, so the components sharing a client do not wait for each other.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from redis._parsers.commands import AsyncCommandsParser
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from xrouter_common.tls import CertFiles

log = logging.getLogger(__name__)


def tls_options(tls: CertFiles | None) -> dict[str, Any]:
    """redis-py's TLS arguments for a rediss:// URL (the lane builds its context from them)."""
    if tls is None:
        return {}
    return {key: str(path) for key, path in (("ssl_ca_certs", tls.ca), ("ssl_certfile", tls.cert),
                                             ("ssl_keyfile", tls.key)) if path is not None}


def cluster_client(url: str, *, commands: AsyncCommandsParser | None = None,
                   **options: Any) -> RedisCluster:
    """A cluster client whose timeouts bound a hung Redis (the URL's query string may override
    them). It retries little: the store's writer retries on its own, in order. For a rediss://
    URL, pass **tls_options(...). `commands`: a command table (command_table()) shared with the
    process's other clients."""
    settings: dict[str, Any] = {"socket_timeout": 1.0, "socket_connect_timeout": 1.0,
                                "retry": Retry(ExponentialBackoff(cap=0.5, base=0.05), 2)}
    client = RedisCluster.from_url(url, **{**settings, **options})
    if commands is not None:
        client.commands_parser = commands
    return client


def command_table() -> AsyncCommandsParser:
    """The table of Redis commands and their key positions that a cluster client fills from
    COMMAND when it starts (redis-py keeps one per client, 0.7 MB here): one for all of a
    process's clients. Each client's start refills it, which only replaces it with the same."""
    return AsyncCommandsParser()


@dataclass(frozen=True, slots=True)
class ClusterClients:
    requests: RedisCluster
    background: RedisCluster

    @classmethod
    def connect(cls, url: str, tls: CertFiles | None = None) -> ClusterClients:
        """The two clients (not connected until initialize() or their first command)."""
        table, options = command_table(), tls_options(tls)
        return cls(cluster_client(url, commands=table, **options),
                   cluster_client(url, commands=table, **options))

    async def initialize(self, timeout: float = 5.0) -> None:
        """Slot discovery at start, not inside the first requests: lazily, under a burst it
        outlasts the limiter's per-call timeout, and redis-py 8.1 misroutes commands sent
        meanwhile. Redis down at start is not fatal: each component's own policy covers it."""
        try:
            async with asyncio.timeout(timeout):
                await asyncio.gather(self.requests.initialize(), self.background.initialize())
        except Exception as exc:  # noqa: BLE001 - any failure here only means "not yet"
            log.warning("Redis Cluster not reachable at start (%s); its components degrade "
                        "until it is", type(exc).__name__)

    async def aclose(self) -> None:
        await self.requests.aclose()
        await self.background.aclose()
