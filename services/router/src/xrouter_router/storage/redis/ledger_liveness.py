"""Liveness of the stream ledger's consumers: each keeps a key with a short TTL alive (its
heartbeat), and the others take over a consumer's pending entries as soon as that key expired,
rather than after the entries' idle time (LedgerConsumer's `claim_idle`, the backstop).

A consumer of an older version has no key and counts as dead: its entries pending longer than
the TTL are claimed and written again, which writes nothing twice (the writes are idempotent)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.asyncio.cluster import RedisCluster

from xrouter_router.storage.redis.ledger_stream import GROUP, VERSION, StreamLayout


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class Liveness:
    def __init__(self, client: RedisCluster, layout: StreamLayout, name: str, ttl: float) -> None:
        self._client = client
        self._layout = layout
        self._name = name
        self.ttl_ms = max(1, int(ttl * 1000))
        # XCLAIM's min-idle-time when taking a dead consumer's entries: two survivors that saw
        # the same dead consumer do not both take them (the second finds them idle for less,
        # since the first claimed them). At most a second: a consumer that stopped cleanly
        # deleted its key, and its entries may have been delivered a moment before.
        self.claim_min_idle_ms = min(self.ttl_ms, 1000)

    def key(self, name: str) -> str:
        return f"{self._layout.prefix}:{VERSION}:ledger-consumer:{name}"

    async def beat(self) -> None:
        await self._client.set(self.key(self._name), b"1", px=self.ttl_ms)

    async def forget(self) -> None:
        """At a clean stop: what this consumer leaves pending is claimed at once."""
        await self._client.delete(self.key(self._name))

    async def dead_with_pending(self, shards: Sequence[int]) -> list[tuple[int, str]]:
        """(shard, consumer) for every other consumer that has entries pending on that shard's
        stream and no live key. Streams without the group yet are skipped."""
        pipe = self._client.pipeline()
        for shard in shards:
            pipe.xpending(self._layout.stream(shard), GROUP)
        replies: list[Any] = await pipe.execute(raise_on_error=False)
        holding: list[tuple[int, str]] = []
        for shard, reply in zip(shards, replies, strict=True):
            if isinstance(reply, Exception) or not reply or not reply.get("pending"):
                continue
            holding += [(shard, name) for c in reply.get("consumers") or ()
                        if (name := _text(c["name"])) != self._name and int(c["pending"])]
        names = sorted({name for _, name in holding})
        if not names:
            return []
        pipe = self._client.pipeline()
        for name in names:
            pipe.exists(self.key(name))
        alive = {name for name, found in zip(names, await pipe.execute(), strict=True) if found}
        return [(shard, name) for shard, name in holding if name not in alive]
