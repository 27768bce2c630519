"""The money path's rig, in both modes: the accounting stack the composition root builds
(embedded: SQLite and the in-process limiter; cluster: PostgreSQL HA and the Redis Cluster),
a ChatService over fake providers, what a key holds (slots, reserved money) read from the real
stores, and a fault injector that raises or cancels at the k-th await point of the ports."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio.cluster import RedisCluster as ClusterClient

from tests.infra.postgres_ha import PostgresHA
from tests.infra.redis_cluster import RedisCluster
from tests.support import router_settings
from tests.unit.builders import catalog, deployment, model
from tests.unit.fakes import FakeEmbedder, FakeProvider
from xrouter_router.bootstrap import AccountingStack, build_accounting
from xrouter_router.domain.accounting import Utf8BoundCounter
from xrouter_router.domain.billing import Billing
from xrouter_router.domain.catalog import Catalog, ModelLimits
from xrouter_router.domain.failover import Failover, FailoverPolicy
from xrouter_router.domain.keys import ApiKey, Limits
from xrouter_router.domain.ledger import Account
from xrouter_router.domain.limits import windows_of
from xrouter_router.domain.ports import Meter, UsageLedger
from xrouter_router.domain.service import ChatService
from xrouter_router.domain.stats import InMemoryStats
from xrouter_router.domain.types import Delta, StreamBatch, TokenCounts
from xrouter_router.storage.memory import InProcessCreditGuard, InProcessLimiter, InProcessMeter
from xrouter_router.storage.redis.clients import cluster_client
from xrouter_router.storage.redis.credits import RedisCreditGuard
from xrouter_router.storage.redis.limits import RedisLimiter
from xrouter_router.storage.sql.migrate import migrate

# m is served by a; m2 (a fallback) by b; "e" offers embeddings. Each has token windows too
# large to refuse anything (so every path holds and settles them).
AMPLE = ModelLimits(tokens_per_minute=10**9, tokens_per_day=10**10)
CATALOG: Catalog = catalog(
    replace(model("m", deployment("m", "a", prompt="100", completion="200")), limits=AMPLE),
    replace(model("m2", deployment("m2", "b", prompt="100", completion="200")), limits=AMPLE),
    replace(model("e", deployment("e", "a", caps=("embeddings",), prompt="100", completion="0")),
            limits=AMPLE),
)
BATCHES = (StreamBatch((Delta(role="assistant", content="hel"),)),
           StreamBatch((Delta(content="lo there"),)),
           StreamBatch((Delta(finish_reason="stop"),), TokenCounts(prompt=5, completion=3),
                       done=True))
UNITS = Decimal("1e-8")


class FixedKey:
    """The Authenticator port for one key (authentication has its own tests)."""

    def __init__(self, key: ApiKey) -> None:
        self.key = key

    async def authenticate(self, api_key: str, address: str = "") -> ApiKey:
        return self.key


class Faults:
    """Counts the await points the request passes in the wrapped ports (before and after each
    call, and each step of a stream); at the `at`-th it raises an error of ours (`raise`) or
    cancels the task running the request (`cancel`), as a client disconnect, a gRPC
    cancellation or a shutdown does."""

    def __init__(self, at: int = 0, kind: str = "raise") -> None:
        self.at, self.kind, self.seen = at, kind, 0

    @property
    def fired(self) -> bool:
        return 0 < self.at <= self.seen

    async def point(self) -> None:
        self.seen += 1
        if self.seen != self.at:
            return
        if self.kind == "raise":
            raise RuntimeError("injected fault")
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        await asyncio.sleep(0)  # the cancellation lands here

    def wrap(self, target: Any) -> Any:
        return Faulty(target, self)


class Faulty:
    """A port with a fault point around every coroutine method and every stream step."""

    def __init__(self, target: Any, faults: Faults) -> None:
        self._target, self._faults = target, faults

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if inspect.iscoroutinefunction(attr):
            async def call(*args: Any, **kwargs: Any) -> Any:
                await self._faults.point()
                result = await attr(*args, **kwargs)
                await self._faults.point()
                return result
            return call
        if inspect.isasyncgenfunction(attr):
            def stream(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
                return self._stream(attr(*args, **kwargs))
            return stream
        return attr

    async def _stream(self, inner: AsyncIterator[Any]) -> AsyncIterator[Any]:
        try:
            while True:
                await self._faults.point()
                try:
                    item = await anext(inner)
                except StopAsyncIteration:
                    return
                yield item
        finally:
            await inner.aclose()  # type: ignore[attr-defined]


@dataclass
class Rig:
    """One mode's accounting stack, and what a key holds in it."""

    mode: str
    stacks: list[AccountingStack]  # one per router replica
    redis: ClusterClient | None = None
    # Every Billing made here: what a key holds is read once their settlements are done.
    billings: list[Billing] = field(default_factory=list)

    @property
    def stack(self) -> AccountingStack:
        return self.stacks[0]

    def billing(self, faults: Faults | None = None, replica: int = 0,
                ledger: UsageLedger | None = None, wall: Callable[[], float] = time.time, *,
                meter: Meter | None = None, settle_behind: bool | None = None) -> Billing:
        """As the composition root makes it (unless told otherwise): in the cluster mode the
        settlement follows the answer (Billing's settle_behind)."""
        stack = self.stacks[replica]
        ledger = ledger or (stack.ledger if faults is None else faults.wrap(stack.ledger))
        behind = stack.settle_behind if settle_behind is None else settle_behind
        made = Billing(meter or stack.meter, ledger, wall=wall, settle_behind=behind)
        self.billings.append(made)
        return made

    async def settled(self) -> None:
        """Once every settlement begun is done (drain()): what a key holds is read after."""
        for billing in self.billings:
            await billing.drain()

    async def account(self, balance: str) -> str:
        account_id = f"acct-{uuid.uuid4().hex[:12]}"
        await self.stack.accounts.create(Account(account_id))
        await self.stack.accounts.top_up(account_id, Decimal(balance), "test")
        for stack in self.stacks:
            await stack.balance_changed(account_id)
        return account_id

    def key(self, account_id: str, *, concurrent: int = 5,
            allowed: tuple[str, ...] = ()) -> ApiKey:
        return ApiKey(id=f"key-{uuid.uuid4().hex[:12]}", account_id=account_id, tier="free",
                      prefix="xr-test", limits=Limits(concurrent=concurrent),
                      allowed_models=allowed)

    async def held(self, key: ApiKey) -> tuple[int, Decimal]:
        """The key's concurrency slots taken and the money its account has reserved, once the
        settlements begun are done (settled())."""
        await self.settled()
        return await self.held_now(key)

    async def held_now(self, key: ApiKey) -> tuple[int, Decimal]:
        """held(), without waiting for the settlements in flight."""
        limiter, guard = self.stack.limiter, self.stack.guard
        if isinstance(limiter, InProcessLimiter) and isinstance(guard, InProcessCreditGuard):
            return limiter.running(key.id), guard.reserved(key.account_id)
        assert isinstance(limiter, RedisLimiter) and isinstance(guard, RedisCreditGuard)
        assert self.redis is not None
        slots = await self.redis.zcard(limiter.keys(key, 0.0)[3])
        units = await self.redis.hget(guard.keys(key.account_id)[0], "reserved")
        return int(slots), Decimal(int(units or 0)) * UNITS

    async def tokens(self, key: ApiKey, model_id: str, now: float) -> tuple[int, int]:
        """The key's tokens of the model in the minute and the day of `now` (held and used),
        once the settlements begun are done."""
        await self.settled()
        meter = self.stack.meter
        if isinstance(meter, InProcessMeter):
            return meter.windows.used(key.id, model_id, now)
        limiter = self.stack.limiter
        assert isinstance(limiter, RedisLimiter) and self.redis is not None
        minute_key, day_key = limiter.model_keys(key, [model_id], *windows_of(now))
        return int(await self.redis.get(minute_key) or 0), int(await self.redis.get(day_key) or 0)

    async def balance(self, account_id: str) -> Decimal:
        account = await self.stack.accounts.get(account_id)
        assert account is not None
        return account.balance

    async def charged(self, account_id: str, expected: Decimal) -> Decimal:
        """The account's balance once it is `expected`: in the cluster mode the charge reaches
        PostgreSQL with the record, through the ledger consumer, a moment after the answer (the
        10 s bound only stops a broken consumer from hanging the test)."""
        for _ in range(200):
            balance = await self.balance(account_id)
            if balance == expected or self.mode == "embedded":
                return balance
            await asyncio.sleep(0.05)
        return balance


def service(rig: Rig, key: ApiKey, *, faults: Faults | None = None,
            providers: tuple[FakeProvider, ...] | None = None,
            billing: Billing | None = None, models: Catalog = CATALOG) -> ChatService:
    faults = faults or Faults()
    made = providers or (FakeEmbedder("a", batches=BATCHES), FakeProvider("b", batches=BATCHES))
    stats = faults.wrap(InMemoryStats())
    failover = Failover({p.name: faults.wrap(p) for p in made}, FailoverPolicy(5.0, 3), stats)
    return ChatService(models, failover, faults.wrap(FixedKey(key)), idle_timeout=5.0,
                       stats=stats, counter=faults.wrap(Utf8BoundCounter()),
                       billing=billing or rig.billing(faults))


@contextlib.asynccontextmanager
async def running_rig(mode: str, request: pytest.FixtureRequest, tmp_path: Path, *,
                      replicas: int = 1) -> AsyncIterator[Rig]:
    settings = router_settings(tmp_path / "unused.toml", data_dir=tmp_path / "data")
    redis: ClusterClient | None = None
    if mode == "cluster":
        postgres: PostgresHA = request.getfixturevalue("postgres_ha")
        cluster: RedisCluster = request.getfixturevalue("redis_cluster")
        name = "x" + uuid.uuid4().hex[:12]
        postgres.create_database(name)
        database = postgres.multi_host(name)
        await migrate(database, wait=10)
        settings = replace(settings, database_url=database, redis_url=cluster.url)
        redis = cluster_client(cluster.url)
        await redis.initialize()
    assert replicas == 1 or mode == "cluster", "the embedded mode is one process"
    stacks = [build_accounting(settings) for _ in range(replicas)]
    try:
        for stack in stacks:
            for start in stack.starts:
                await start()
        yield Rig(mode, stacks, redis)
    finally:
        for stack in stacks:
            for stop in stack.stops:
                await stop()
        if redis is not None:
            await redis.aclose()

