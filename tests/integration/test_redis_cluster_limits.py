"""What only the Redis Cluster limits and credits do: exact across replicas, slots and
reservations that lapse, scripts loaded again after a failover, degraded modes, key revocations."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import pytest
import redis
from redis.crc import key_slot

from tests.infra.fixtures import killed, redis_cluster  # noqa: F401 - fixtures
from tests.infra.redis_cluster import RedisCluster
from tests.integration.limits_support import (
    DAY_END,
    MINUTE_END,
    NOW,
    WAIT,
    Closer,
    D,
    _account,
    _accounts,
    _gather,
    _id,
    api_key,
    closer_fixture,  # noqa: F401 - the `closer` fixture
    post,
    settle_and_post,
)
from xrouter_router.domain.errors import (
    InsufficientCredits,
    RateLimited,
    Unavailable,
)
from xrouter_router.domain.keys import ApiKey, Limits
from xrouter_router.domain.ledger import Account
from xrouter_router.domain.ports import Reservation
from xrouter_router.domain.types import RateWindow
from xrouter_router.storage.redis.credits import APPLIED_SCRIPT, CREDITS_SCRIPT, RedisCreditGuard
from xrouter_router.storage.redis.limits import ACQUIRE_SCRIPT, RedisLimiter
from xrouter_router.storage.redis.revocations import KeyRevocations
from xrouter_router.storage.sql.sqlite import SqliteAccountStore

# -- only the Redis implementations: across replicas -----------------------------------------


class Heard:
    """The on_revoked callback of a listener: the key ids it was given, in order."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self._changed = asyncio.Event()

    def __call__(self, key_id: str) -> None:
        self.keys.append(key_id)
        self._changed.set()

    async def wait_for(self, key_id: str, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while key_id not in self.keys:
                self._changed.clear()
                await self._changed.wait()


async def test_two_replicas_admit_exactly_the_limit(redis_cluster: RedisCluster,  # noqa: F811
                                                    closer: Closer) -> None:
    one, two = [RedisLimiter(await closer.started(redis_cluster), timeout=10.0)
                for _ in range(2)]  # exactness, not timeouts
    closer.checked += [one, two]
    key = api_key(requests_per_minute=20)
    now = time.time()
    results = await _gather([(one if i % 2 else two).acquire(key, now) for i in range(100)])
    windows = [r for r in results if isinstance(r, RateWindow)]
    refused = [r for r in results if isinstance(r, RateLimited)]
    assert (len(windows), len(refused)) == (20, 80)
    assert sorted(w.remaining for w in windows) == list(range(20))
    assert {r.message for r in refused} == {"Rate limit exceeded: 20 requests per minute"}


async def test_every_key_of_a_call_shares_one_slot(redis_cluster: RedisCluster,  # noqa: F811
                                                   tmp_path: Path, closer: Closer) -> None:
    limiter = RedisLimiter(await closer.started(redis_cluster), timeout=10.0)
    guard = RedisCreditGuard(await closer.started(redis_cluster),
                             await _accounts(tmp_path, closer), timeout=10.0)
    key = ApiKey(id="k-1", account_id="a-1", tier="free", prefix="xr-test")
    # A key's limits and its account's credits share one slot (RedisMeter: one script).
    every = (*limiter.keys(key, NOW), *limiter.keys(key, DAY_END), *guard.keys("a-1"))
    assert len({key_slot(k.encode()) for k in every}) == 1, every
    assert limiter.keys(key, NOW)[0] == "xr:v2:rl:{a-1}:k-1:m:28333333"
    assert guard.keys("a-1")[0] == "xr:v2:cr:{a-1}"


async def test_a_slot_of_a_dead_replica_lapses(redis_cluster: RedisCluster,  # noqa: F811
                                               closer: Closer) -> None:
    dead, alive = [RedisLimiter(await closer.started(redis_cluster), slot_ttl=0.3)
                   for _ in range(2)]
    closer.checked += [dead, alive]
    key = api_key(concurrent=1)
    await dead.acquire(key, time.time())  # never released
    with pytest.raises(RateLimited):
        await alive.acquire(key, time.time())
    await alive.release(key)  # it holds no slot: frees nothing
    with pytest.raises(RateLimited):
        await alive.acquire(key, time.time())
    await asyncio.sleep(0.35)
    assert await alive.acquire(key, time.time()) is None


async def test_two_guards_sharing_an_account_never_overspend(
        redis_cluster: RedisCluster, tmp_path: Path, closer: Closer) -> None:  # noqa: F811
    first = await _accounts(tmp_path, closer)
    account_id = await _account(first, "1.00")
    second = await _accounts(tmp_path, closer)  # the other replica's own connection
    stores = (first, second)
    guards = [RedisCreditGuard(await closer.started(redis_cluster), accounts, timeout=10.0)
              for accounts in stores]
    closer.checked += guards
    key = api_key(account_id)
    amounts = [D(f"0.0{1 + i % 5}") for i in range(200)]
    results = await _gather([guards[i % 2].reserve(key, f"g{i}", amount)
                             for i, amount in enumerate(amounts)])
    held = [r for r in results if isinstance(r, Reservation)]
    assert all(isinstance(r, Reservation | InsufficientCredits) for r in results), results
    total = sum((r.amount for r in held), D(0))
    assert D("0.95") < total <= D("1.00")
    # Settle at random costs while the other replica keeps reserving.

    async def cycle(i: int) -> Decimal:
        guard = guards[i % 2]
        try:
            got = await guard.reserve(key, f"c{i}", D("0.02"), partial_from=D("0.01"))
        except InsufficientCredits:
            return D(0)
        await settle_and_post(guard, stores[i % 2], got, got.amount)
        return got.amount

    spent = await asyncio.gather(*(settle_and_post(guards[i % 2], stores[i % 2], r, r.amount / 2)
                                   for i, r in enumerate(held)),
                                 *(cycle(i) for i in range(100)))
    paid = total / 2 + sum((s for s in spent if isinstance(s, Decimal)), D(0))
    account = await first.get(account_id)
    assert account is not None
    assert account.balance == D("1.00") - paid
    assert account.balance >= 0


async def test_a_reservation_of_a_dead_replica_lapses(
        redis_cluster: RedisCluster, tmp_path: Path, closer: Closer) -> None:  # noqa: F811
    accounts = await _accounts(tmp_path, closer)
    account_id = await _account(accounts, "1.00")
    dead, alive = [RedisCreditGuard(await closer.started(redis_cluster), accounts,
                                    reservation_ttl=0.3) for _ in range(2)]
    closer.checked += [dead, alive]
    key = api_key(account_id)
    await dead.reserve(key, "g1", D("1.00"))  # never settled
    with pytest.raises(InsufficientCredits):
        await alive.reserve(key, "g2", D("0.01"))
    await asyncio.sleep(0.35)
    assert (await alive.reserve(key, "g3", D("1.00"))).amount == D("1.00")
    # A stream's reservation that lapsed is held again when it grows, if it still fits.
    assert await alive.extend(key, Reservation("g1", account_id, key.id, D("0.50")),
                              D("0.10")) is None
    await asyncio.sleep(0.35)
    grown = await alive.extend(key, Reservation("g1", account_id, key.id, D("0.50")), D("0.10"))
    assert grown is not None and grown.amount == D("0.60")
    with pytest.raises(InsufficientCredits) as exc:
        await alive.reserve(key, "g4", D("0.41"))
    assert exc.value.metadata["available"] == "0.40000000"


async def test_a_charge_counts_once_whichever_comes_first(
        redis_cluster: RedisCluster, tmp_path: Path, closer: Closer) -> None:  # noqa: F811
    """The settlement and the ledger's notice (applied) may come in either order, and either
    may be repeated (a retried settle, a claimed batch): each charge counts exactly once, both
    before the store has it (deferred) and after."""
    accounts = await _accounts(tmp_path, closer)
    account_id = await _account(accounts, "1.00")
    guard = RedisCreditGuard(await closer.started(redis_cluster), accounts, snapshot_ttl=0.3)
    closer.checked.append(guard)
    key = api_key(account_id)
    held = await guard.reserve(key, "g1", D("0.50"))
    other = await guard.reserve(key, "g2", D("0.30"))
    await guard.settle(held, D("0.20"))
    await guard.settle(held, D("0.20"))  # counted once; the store does not have it yet

    async def available() -> str:
        with pytest.raises(InsufficientCredits) as exc:
            await guard.reserve(key, "probe", D("5"))
        return str(exc.value.metadata["available"])

    assert await available() == "0.50000000"  # 1.00 - 0.20 settled - 0.30 held
    await asyncio.sleep(0.35)  # a fresh snapshot: the store's 1.00 less the deferred 0.20
    assert await available() == "0.50000000"
    await post(guard, accounts, held, D("0.20"))
    await post(guard, accounts, held, D("0.20"))
    assert (await accounts.get(account_id)) == Account(account_id, "", D("0.80"))
    await asyncio.sleep(0.35)
    assert await available() == "0.50000000"
    # The ledger first (its consumer can be quicker than the request's own settlement).
    third = await guard.reserve(key, "g3", D("0.10"))
    await post(guard, accounts, third, D("0.05"))
    await guard.settle(third, D("0.05"))
    await guard.settle(third, D("0.05"))
    assert await available() == "0.45000000"
    await asyncio.sleep(0.35)
    assert await available() == "0.45000000"
    await guard.settle(other, D(0))
    assert await available() == "0.75000000"


async def test_a_top_up_shows_once_the_snapshot_expires(
        redis_cluster: RedisCluster, tmp_path: Path, closer: Closer) -> None:  # noqa: F811
    accounts = await _accounts(tmp_path, closer)
    account_id = await _account(accounts, "0.10")
    guard = RedisCreditGuard(await closer.started(redis_cluster), accounts, snapshot_ttl=0.3)
    closer.checked.append(guard)
    key = api_key(account_id)
    with pytest.raises(InsufficientCredits):
        await guard.reserve(key, "g1", D("1.00"))
    await accounts.top_up(account_id, D("1.00"), "later")
    await asyncio.sleep(0.35)
    assert (await guard.reserve(key, "g2", D("1.00"))).amount == D("1.00")


async def test_scripts_lost_by_the_nodes_are_loaded_again(
        redis_cluster: RedisCluster, tmp_path: Path, closer: Closer) -> None:  # noqa: F811
    accounts = await _accounts(tmp_path, closer)
    account_id = await _account(accounts, "1.00")
    limiter = RedisLimiter(await closer.started(redis_cluster))
    guard = RedisCreditGuard(await closer.started(redis_cluster), accounts)
    closer.checked += [limiter, guard]
    key = api_key(account_id, requests_per_minute=5)
    await limiter.acquire(key, NOW)
    for port in redis_cluster.master_ports():  # as on a promoted replica or a restarted node
        with redis.Redis(port=port) as node:
            node.script_flush()
    assert await limiter.acquire(key, NOW) == RateWindow(5, 3, MINUTE_END)
    held = await guard.reserve(key, "g1", D("0.40"))
    await settle_and_post(guard, accounts, held, D("0.40"))
    assert await accounts.get(account_id) == Account(account_id, "", D("0.60"))
    with redis.Redis(port=redis_cluster.master_of(limiter.keys(key, NOW)[0])) as node:
        assert node.script_exists(ACQUIRE_SCRIPT.sha) == [True]
    with redis.Redis(port=redis_cluster.master_of(guard.keys(account_id)[0])) as node:
        assert node.script_exists(CREDITS_SCRIPT.sha, APPLIED_SCRIPT.sha) == [True, True]


async def test_a_revocation_reaches_another_replica_within_a_second(
        redis_cluster: RedisCluster, closer: Closer) -> None:  # noqa: F811
    sender, receiver = [KeyRevocations(await closer.started(redis_cluster)) for _ in range(2)]
    closer.checked += [sender, receiver]
    closer.closing += [sender, receiver]
    heard = Heard()
    receiver.listen(heard)
    assert await receiver.subscribed(WAIT)
    assert await sender.publish("key-1") is True
    await heard.wait_for("key-1", 1.0)
    assert heard.keys == ["key-1"]


async def test_each_subscription_is_told_so_revocations_missed_meanwhile_are_dropped(
        redis_cluster: RedisCluster, closer: Closer) -> None:  # noqa: F811
    # The router passes KeyAuthenticator.expire_all: pub/sub keeps nothing for a replica that
    # was not listening, so every cached key is read again at its next use.
    sender, listener = [KeyRevocations(await closer.started(redis_cluster)) for _ in range(2)]
    closer.closing += [sender, listener]
    heard, told = Heard(), asyncio.Event()
    subscriptions: list[int] = []

    def subscribed() -> None:
        subscriptions.append(listener.reconnects)
        told.set()
    listener.listen(heard, subscribed)
    async with asyncio.timeout(WAIT):
        await told.wait()
    assert subscriptions == [0]
    told.clear()
    with redis.Redis(port=int(listener.node.rsplit(":", 1)[1])) as node:
        assert node.client_kill_filter(_type="pubsub") >= 1  # the listener's connection
    async with asyncio.timeout(WAIT):
        await told.wait()
    assert subscriptions == [0, 1]
    assert await sender.publish("key-1")
    await heard.wait_for("key-1", WAIT)


# -- only the Redis implementations: failures ------------------------------------------------


def _id_on(cluster: RedisCluster, port: int, key_of: Callable[[str], str]) -> str:
    """A fresh id whose Redis key (key_of(id)) lives on the master at `port`."""
    while True:
        made = _id("on")
        if cluster.master_of(key_of(made)) == port:
            return made


async def _listener_on_a_master(cluster: RedisCluster, closer: Closer,
                                forget: Heard) -> KeyRevocations:
    for _ in range(30):
        listener = KeyRevocations(closer.client(cluster), ping_every=0.3, timeout=0.3)
        closer.closing.append(listener)
        listener.listen(forget)
        assert await listener.subscribed(WAIT)
        if int(listener.node.rsplit(":", 1)[1]) in cluster.master_ports():
            return listener
        await listener.close()
    raise AssertionError("the listener never chose a master")


async def test_a_master_failover_mid_load(redis_cluster: RedisCluster, tmp_path: Path,  # noqa: F811
                                          closer: Closer, killed: list[int]) -> None:  # noqa: F811
    heard = Heard()
    listener = await _listener_on_a_master(redis_cluster, closer, heard)
    port = int(listener.node.rsplit(":", 1)[1])
    fast = {"socket_timeout": 0.5, "socket_connect_timeout": 0.5}
    limiter = RedisLimiter(closer.client(redis_cluster, **fast), timeout=1.0, retry_after=0.2)
    accounts = await _accounts(tmp_path, closer)
    guarded = closer.client(redis_cluster, **fast)
    lane = closer.lane(guarded)  # as the router runs it
    guard = RedisCreditGuard(guarded, accounts, timeout=1.0, retry_after=0.2, lane=lane)
    key_id = "key-failover"
    account_id = _id_on(redis_cluster, port, lambda i: guard.keys(i)[0])  # limits follow it
    await accounts.create(Account(account_id))
    await accounts.top_up(account_id, D("1000"), "load")
    key = ApiKey(id=key_id, account_id=account_id, tier="pro", prefix="xr-test",
                 limits=Limits(requests_per_minute=10**6, concurrent=50))
    # A client's only startup node may be the one killed: every client exists before the kill.
    sender = KeyRevocations(await closer.started(redis_cluster))
    assert await sender.publish("warm-up")
    load = Load(limiter, guard, key)
    loading = [asyncio.create_task(load.run(w)) for w in range(4)]
    await load.until(lambda: load.served >= 20, loading)
    replica = redis_cluster.hold_failover(port)  # the test decides when the outage ends
    redis_cluster.kill_master(port)
    killed.append(port)
    # The load meets the dead master: the policies answer instead of Redis.
    await load.until(lambda: limiter.errors > 0 and guard.errors > 0, loading)
    await asyncio.to_thread(redis_cluster.take_over, replica)
    served = load.served
    await load.until(lambda: load.served >= served + 20, loading)  # served again after it
    load.stop.set()
    await asyncio.gather(*loading)  # only the policies' answers reached the load

    # After the failover, exact again, with the scripts loaded on the promoted master.
    promoted = redis_cluster.master_of(limiter.keys(key, NOW)[0])
    assert promoted != port
    await _exact_after_failover(limiter, guard, key, accounts)
    # The lane lost the killed master, went through the client, then straight to the promoted one.
    assert lane.fallbacks > 0 and f"127.0.0.1:{promoted}" in lane.connected()
    with redis.Redis(port=promoted) as node:
        assert node.script_exists(ACQUIRE_SCRIPT.sha, CREDITS_SCRIPT.sha) == [True, True]
    # The listener moved to another node on its own.
    assert await listener.subscribed(WAIT) and listener.reconnects >= 1
    assert await sender.publish("key-after-failover")
    await heard.wait_for("key-after-failover", 1.0)


@dataclass
class Load:
    """Requests until `stop`: a slot, a reservation settled at its cost, the slot back."""

    limiter: RedisLimiter
    guard: RedisCreditGuard
    key: ApiKey
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    served: int = 0
    unavailable: int = 0

    async def until(self, condition: Callable[[], bool], workers: Sequence[asyncio.Task[None]],
                    bound: float = 60.0) -> None:
        """Until `condition` holds while the workers run (a worker's failure is raised)."""
        deadline = time.monotonic() + bound
        while not condition():
            for worker in workers:
                if worker.done():
                    worker.result()
            assert time.monotonic() < deadline, f"the load's condition not met after {bound}s"
            await asyncio.sleep(0.01)

    async def run(self, worker: int) -> None:
        i = 0
        while not self.stop.is_set():
            i += 1
            await self.limiter.acquire(self.key, time.time())
            try:
                held = await self.guard.reserve(self.key, f"w{worker}-{i}", D("0.01"))
            except Unavailable:
                self.unavailable += 1
            else:
                await self.guard.settle(held, D("0.01"))
                self.served += 1
            finally:
                await self.limiter.release(self.key)
            await asyncio.sleep(0.002)


async def _answered_by_redis(limiter: RedisLimiter, guard: RedisCreditGuard, key: ApiKey,
                             accounts: SqliteAccountStore) -> None:
    """Until both answer from Redis again (not by their degraded policies): each client finds the
    promoted master at its own pace, later on a loaded machine. Probes use other windows (a day
    later) and another account, so the exact checks that follow start from nothing."""
    probe = ApiKey(id=key.id, account_id=key.account_id, tier="free", prefix="xr-test",
                   limits=Limits(requests_per_minute=10**6))
    payer = api_key(await _account(accounts, "1.00"))
    deadline = time.monotonic() + 30.0  # a failover's settling, not a speed expectation
    while True:
        window = await limiter.acquire(probe, NOW + 2 * 86400)
        await limiter.release(probe)
        if isinstance(window, RateWindow):
            break
        assert time.monotonic() < deadline, "the limiter never answered from Redis again"
        await asyncio.sleep(0.05)
    while True:
        try:
            held = await guard.reserve(payer, f"probe-{time.monotonic()}", D("0.01"))
        except Unavailable:
            assert time.monotonic() < deadline, "the credit guard never answered from Redis again"
            await asyncio.sleep(0.05)
            continue
        await guard.settle(held, D(0))
        return


async def _exact_after_failover(limiter: RedisLimiter, guard: RedisCreditGuard, key: ApiKey,
                                accounts: SqliteAccountStore) -> None:
    await _answered_by_redis(limiter, guard, key, accounts)
    exact = ApiKey(id=key.id, account_id=key.account_id, tier="free", prefix="xr-test",
                   limits=Limits(requests_per_minute=20))
    windows = await _gather([limiter.acquire(exact, NOW) for _ in range(30)])
    assert sorted(w.remaining for w in windows if isinstance(w, RateWindow)) == list(range(20))
    fresh = api_key(await _account(accounts, "1.00"))
    held = await _gather([guard.reserve(fresh, f"f{i}", D("0.01")) for i in range(150)])
    assert sum(isinstance(r, Reservation) for r in held) == 100
