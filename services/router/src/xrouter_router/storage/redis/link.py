"""What the Redis Cluster limits, credits and revocations share: the version in their keys and
scripts, RedisDown, and Link, the bounded, failure-counting calls of one cluster client."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from redis.asyncio.cluster import RedisCluster

from xrouter_router.storage.redis.lane import Lane
from xrouter_router.storage.redis.stats import Script
from xrouter_router.storage.timing import Latency

log = logging.getLogger(__name__)
T = TypeVar("T")

# Part of every key and script: bump it with any change of a script or of the key layout, so
# that replicas of two releases never apply two versions to the same data.
VERSION = "v2"  # v2: charges travel with the ledger records (credit script states)
WARN_EVERY = 60.0
INFLIGHT = 32  # commands of one component at once: well inside the client's 100 per node
_NEVER = float("-inf")


class RedisDown(Exception):
    """Redis did not answer (in time): the caller applies its degraded-mode policy."""


class Link:
    """One client's calls, each bounded by `timeout`. A failure is counted, logged at most once a
    minute, and leaves Redis alone for `retry_after` seconds, so that a hung cluster costs the
    request path one timeout, not one per request. At most `inflight` commands are on their
    way at once (the cluster client refuses, rather than queues, a command beyond its pool of
    connections per node); the others queue within their timeout. Scripts lost by a node (a
    promoted replica, a restarted node: script caches are not replicated) are loaded again
    with EVAL. Scripts go through `lane` when given (storage/redis/lane.py), else the client."""

    def __init__(self, client: RedisCluster, what: str, degraded: str, *, timeout: float,
                 retry_after: float, inflight: int = INFLIGHT, lane: Lane | None = None) -> None:
        self.client = client
        self.lane = lane or Lane(client, enabled=False)
        self._slots = asyncio.Semaphore(inflight)
        self._init_lock = asyncio.Lock()
        self._ready = False
        self._what = what
        self._degraded = degraded
        self._timeout = timeout
        self._retry_after = retry_after
        self._down_until = _NEVER
        self._warned = _NEVER
        self._failing = False
        self.errors = 0
        self.degraded = 0
        self.latency = Latency()  # of the calls that reached the client

    async def script(self, script: Script, keys: Sequence[str], args: Sequence[str | int]) -> Any:
        return await self.call(lambda: self.lane.script(script, keys, args))

    async def call(self, command: Callable[[], Awaitable[T]]) -> T:
        """The command's reply, or RedisDown (lower-layer errors are translated here only)."""
        try:
            async with asyncio.timeout(self._timeout), self._slots:
                if time.monotonic() < self._down_until:
                    raise RedisDown(f"{self._what}: Redis marked unavailable")
                if not self._ready:
                    await self._initialize()
                started = time.perf_counter()
                try:
                    reply = await command()
                finally:
                    self.latency.observe(time.perf_counter() - started)
        except RedisDown:
            raise
        except Exception as exc:  # whatever fails inside the client is Redis failing
            # (redis-py 8.1 even raises AttributeError from connections that a topology refresh
            # closed under a concurrent command): the policy answers, never a 500.
            self.failed(exc)
            raise RedisDown(f"{self._what}: {type(exc).__name__}: {exc}") from exc
        if self._failing:
            self._failing = False
            log.info("%s: Redis reachable again after %d errors", self._what, self.errors)
        return reply

    async def _initialize(self) -> None:
        """Learn the cluster's topology once, before commands run concurrently: redis-py's
        cluster client races its own first refresh with concurrent first commands."""
        async with self._init_lock:
            if not self._ready:
                await self.client.initialize()
                self._ready = True

    def failed(self, exc: BaseException) -> None:
        self.errors += 1
        now = time.monotonic()
        self._down_until = now + self._retry_after
        if now - self._warned >= WARN_EVERY:
            self._warned = now
            self._failing = True
            log.warning("%s: Redis unavailable (%s: %s); %s; %d errors so far", self._what,
                        type(exc).__name__, str(exc)[:200], self._degraded, self.errors)


class LinkCounters:
    """`errors` (Redis failures), `degraded` (answers given by the policy instead), the
    `latency` of the calls and the `lane_fallbacks` of a component that talks to Redis through
    its `_link`; read by the metrics."""

    _link: Link

    @property
    def latency(self) -> Latency:
        return self._link.latency

    @property
    def errors(self) -> int:
        return self._link.errors

    @property
    def degraded(self) -> int:
        return self._link.degraded

    @property
    def lane_fallbacks(self) -> int:
        return self._link.lane.fallbacks
