"""Whether every Redis Cluster master answers PING within `timeout` (for /health)."""

from __future__ import annotations

import asyncio

from redis.asyncio.cluster import RedisCluster


async def masters_answer(client: RedisCluster, timeout: float = 0.5) -> bool:
    async with asyncio.timeout(timeout):
        # redis-py sends PING to each primary and reports True when all answered.
        return bool(await client.ping(target_nodes=RedisCluster.PRIMARIES))
