"""Key revocations across router replicas: a pub/sub channel of Redis Cluster that tells every
replica to drop a revoked, disabled or changed key from its key cache."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable

from redis.asyncio.client import PubSub
from redis.asyncio.cluster import RedisCluster

from xrouter_router.storage import tasks
from xrouter_router.storage.redis.link import VERSION, Link, RedisDown

log = logging.getLogger(__name__)
REVOKED_CHANNEL = f"xr:{VERSION}:keys:revoked"


class KeyRevocations:
    """Tells every replica that a key was revoked, disabled or changed, so that each drops it
    from its key cache (the router passes KeyAuthenticator.forget as `on_revoked`).

    publish() sends the key id on the pub/sub channel `xr:v1:keys:revoked`; listen() starts a
    task that subscribes on one node of the cluster (a PUBLISH reaches every node), pings it
    every `ping_every` seconds, and moves to another node when it fails or stops answering.
    Pub/sub delivers at most once: a replica that is disconnected when a key is revoked (Redis
    down, failing over, this replica reconnecting) misses the message. So each time the
    listener has subscribed (at start and after every reconnection) it calls `on_subscribed`
    (the router passes KeyAuthenticator.expire_all): every cached key is read again at its
    next use, so a key revoked while the replica was not listening works for at most one more
    request there. While Redis stays unavailable the key cache's TTL (XROUTER_KEY_CACHE_TTL,
    default 30 s) is the bound on how long a revoked key may still work; choose it as that
    bound (a few seconds costs one database read per hot key per TTL).
    """

    def __init__(self, client: RedisCluster, *, channel: str = REVOKED_CHANNEL,
                 ping_every: float = 1.0, timeout: float = 0.5, retry_after: float = 0.2) -> None:
        self._link = Link(client, "key revocations", "revocations reach other replicas only "
                           "when their key cache expires", timeout=timeout, retry_after=0.0)
        self._client = client
        self._channel = channel
        self._ping_every = ping_every
        self._timeout = timeout
        self._retry_after = retry_after
        self._task: asyncio.Task[None] | None = None
        # What the listener calls (listen()): with a revoked key id; after each subscription.
        self._on_revoked: Callable[[str], None] = _ignore
        self._on_subscribed: Callable[[], None] = _nothing
        self._subscribed = asyncio.Event()
        self.node = ""  # host:port of the node the listener is subscribed on
        self.reconnects = 0

    @property
    def errors(self) -> int:
        return self._link.errors

    async def publish(self, key_id: str) -> bool:
        """False (logged, counted) when Redis did not take the message."""
        try:
            await self._link.call(lambda: self._client.publish(self._channel, key_id))
        except RedisDown:
            return False
        return True

    def listen(self, on_revoked: Callable[[str], None],
               on_subscribed: Callable[[], None] | None = None) -> None:
        """Start the listener (once); it runs until close()."""
        if self._task is None:
            self._on_revoked = on_revoked
            self._on_subscribed = on_subscribed or _nothing
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def subscribed(self, timeout: float) -> bool:
        """Whether the listener is subscribed, waiting up to `timeout` seconds for it."""
        try:
            async with asyncio.timeout(timeout):
                await self._subscribed.wait()
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        await tasks.stop([self._task])
        self._task = None

    async def _run(self) -> None:
        avoid = ""
        while True:
            try:
                await self._subscribe(avoid)
            except Exception as exc:  # noqa: BLE001 - the listener outlives any failure
                self._link.failed(exc)
                avoid = self.node
            self._subscribed.clear()
            self.reconnects += 1
            await asyncio.sleep(self._retry_after)

    async def _subscribe(self, avoid: str) -> None:
        """Listen on a node other than `avoid` (the one that just failed), until it fails."""
        async with asyncio.timeout(self._timeout * 4):
            if not self._client.get_nodes():
                await self._client.initialize()
            elif avoid:  # learn the cluster's topology again
                await self._client.nodes_manager.initialize()
        nodes = self._client.get_nodes()
        node = random.choice([n for n in nodes if n.name != avoid] or nodes)
        self.node = node.name
        pubsub = self._client.pubsub(node=node)
        try:
            await self._receive(pubsub)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pubsub.aclose(), self._timeout)

    async def _receive(self, pubsub: PubSub) -> None:
        async with asyncio.timeout(self._timeout):
            await pubsub.subscribe(self._channel)
            while (await pubsub.get_message(timeout=self._timeout)) is None:
                pass  # the subscription's confirmation
        try:  # revocations sent while this replica was not listening are unknown
            self._on_subscribed()
        except Exception:  # a bug of the callback must not stop the listener
            log.exception("key revocations: the subscription callback failed")
        self._subscribed.set()
        heard = time.monotonic()
        pinged = False
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True,
                                               timeout=self._ping_every / 2)
            now = time.monotonic()
            if message is not None:
                heard, pinged = now, False
                if message.get("type") == "message":
                    data = message["data"]
                    try:
                        self._on_revoked(data.decode() if isinstance(data, bytes) else str(data))
                    except Exception:  # a bug of the callback must not stop the listener
                        log.exception("key revocations: the callback failed")
            elif now - heard >= self._ping_every + self._timeout and pinged:
                raise TimeoutError(f"no answer from {self.node} to a ping")
            elif now - heard >= self._ping_every and not pinged:
                await asyncio.wait_for(pubsub.ping(), self._timeout)
                pinged = True


def _ignore(key_id: str) -> None:
    return None


def _nothing() -> None:
    return None
