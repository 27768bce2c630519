"""The Limiter and CreditGuard contracts, against the in-process implementations and against the
Redis Cluster ones; then what only Redis does: exact across replicas, slots and reservations
that lapse, scripts loaded again after a failover, degraded modes, key revocations."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis
from redis.asyncio.cluster import RedisCluster as ClusterClient
from redis.crc import key_slot

from tests.infra.fixtures import redis_cluster  # noqa: F401 - the session fixture
from tests.infra.redis_cluster import RedisCluster
from xrouter_router.domain.errors import (
    InsufficientCredits,
    NotFound,
    RateLimited,
    Unavailable,
    XRouterError,
)
from xrouter_router.domain.keys import ApiKey, Limits
from xrouter_router.domain.ledger import Account
from xrouter_router.domain.ports import CreditGuard, Limiter, Reservation
from xrouter_router.domain.types import RateWindow
from xrouter_router.storage.memory import InProcessCreditGuard, InProcessLimiter
from xrouter_router.storage.redis_limits import (
    ACQUIRE_SCRIPT,
    CREDITS_SCRIPT,
    KeyRevocations,
    RedisCreditGuard,
    RedisLimiter,
)
from xrouter_router.storage.redis_stats import cluster_client
from xrouter_router.storage.sqlite import SqliteAccountStore, SqliteDatabase

T = TypeVar("T")

# 15 s into a minute: that minute ends at 1_700_000_040, the UTC day at 1_700_006_400.
NOW = 1_699_999_995.0
MINUTE_END, DAY_END = 1_700_000_040.0, 1_700_006_400.0
NEXT_MINUTE = NOW + 60.0
D = Decimal
WAIT = 10.0


def _id(kind: str) -> str:
    return f"{kind}-{uuid.uuid4().hex[:12]}"


def api_key(account_id: str = "acct", *, credit_limit: Decimal | None = None,
            **limits: int) -> ApiKey:
    return ApiKey(id=_id("key"), account_id=account_id, tier="free", prefix="xr-test",
                  limits=Limits(**limits), credit_limit=credit_limit)


def client(cluster: RedisCluster, **options: Any) -> ClusterClient:
    return cluster_client(cluster.url, **options)


@dataclass
class Closer:
    """Clients to close when the test ends; the Redis objects must have seen no Redis error
    (a CROSSSLOT or a script error would hide behind a fail-open policy)."""

    clients: list[ClusterClient] = field(default_factory=list)
    checked: list[RedisLimiter | RedisCreditGuard | KeyRevocations] = field(default_factory=list)
    closing: list[KeyRevocations | SqliteDatabase] = field(default_factory=list)

    def client(self, cluster: RedisCluster, **options: Any) -> ClusterClient:
        made = client(cluster, **options)
        self.clients.append(made)
        return made

    async def close(self) -> None:
        for item in self.closing:
            await item.close()
        for made in self.clients:
            await made.aclose()


@pytest.fixture
async def closer() -> AsyncIterator[Closer]:
    done = Closer()
    try:
        yield done
        assert [x.errors for x in done.checked] == [0] * len(done.checked)
    finally:
        await done.close()


# -- the Limiter contract --------------------------------------------------------------------


@pytest.fixture(params=["memory", "redis"])
async def limiter(request: pytest.FixtureRequest, closer: Closer) -> Limiter:
    if request.param == "memory":
        return InProcessLimiter()
    cluster: RedisCluster = request.getfixturevalue("redis_cluster")
    made = RedisLimiter(closer.client(cluster))
    closer.checked.append(made)
    return made


def _limited(exc: pytest.ExceptionInfo[RateLimited]) -> tuple[str, float, dict[str, Any]]:
    return exc.value.message, exc.value.retry_after, exc.value.metadata


async def test_a_key_without_limits_has_no_window(limiter: Limiter) -> None:
    key = api_key()
    assert [await limiter.acquire(key, NOW) for _ in range(50)] == [None] * 50
    await limiter.add_tokens(key, 10**6, NOW)
    assert await limiter.acquire(key, NOW) is None


async def test_requests_per_minute(limiter: Limiter) -> None:
    key = api_key(requests_per_minute=3)
    assert [await limiter.acquire(key, NOW + i) for i in range(3)] == [
        RateWindow(3, 2, MINUTE_END), RateWindow(3, 1, MINUTE_END), RateWindow(3, 0, MINUTE_END)]
    with pytest.raises(RateLimited) as exc:
        await limiter.acquire(key, NOW + 5)
    assert _limited(exc) == ("Rate limit exceeded: 3 requests per minute", 40.0,
                             {"limit": 3, "remaining": 0, "reset": 1_700_000_040})
    with pytest.raises(RateLimited) as exc:
        await limiter.acquire(key, MINUTE_END - 0.5)
    assert exc.value.retry_after == 1.0  # never less than a second
    # A refused request is not counted; the next minute starts afresh.
    assert await limiter.acquire(key, MINUTE_END) == RateWindow(3, 2, MINUTE_END + 60)
    assert await limiter.acquire(key, MINUTE_END + 59.9) == RateWindow(3, 1, MINUTE_END + 60)


async def test_the_tightest_window_is_reported_and_the_day_limit_holds(limiter: Limiter) -> None:
    key = api_key(requests_per_minute=10, requests_per_day=3)
    assert await limiter.acquire(key, NOW) == RateWindow(3, 2, DAY_END)
    assert await limiter.acquire(key, NOW) == RateWindow(3, 1, DAY_END)
    assert await limiter.acquire(key, NEXT_MINUTE) == RateWindow(3, 0, DAY_END)
    with pytest.raises(RateLimited) as exc:
        await limiter.acquire(key, NEXT_MINUTE + 60)
    assert _limited(exc) == ("Rate limit exceeded: 3 requests per day", 6285.0,
                             {"limit": 3, "remaining": 0, "reset": 1_700_006_400})
    assert await limiter.acquire(key, DAY_END + 1) == RateWindow(3, 2, DAY_END + 86_400)
    # Equally tight: the minute's window is reported.
    even = api_key(requests_per_minute=5, requests_per_day=5)
    assert await limiter.acquire(even, NOW) == RateWindow(5, 4, MINUTE_END)


async def test_concurrency_slots_are_released_never_below_zero(limiter: Limiter) -> None:
    key = api_key(requests_per_minute=10, concurrent=2)
    assert await limiter.acquire(key, NOW) == RateWindow(10, 9, MINUTE_END)
    assert await limiter.acquire(key, NOW) == RateWindow(10, 8, MINUTE_END)
    with pytest.raises(RateLimited) as exc:
        await limiter.acquire(key, NOW)
    assert _limited(exc) == ("Rate limit exceeded: 2 concurrent requests", 1.0,
                             {"limit": 2, "remaining": 0, "reset": int(NOW + 1)})
    await limiter.release(key)
    # The refused request took no request from the minute.
    assert await limiter.acquire(key, NOW) == RateWindow(10, 7, MINUTE_END)
    for _ in range(5):  # more releases than slots held
        await limiter.release(key)
    assert await limiter.acquire(key, NOW) == RateWindow(10, 6, MINUTE_END)
    assert await limiter.acquire(key, NOW) == RateWindow(10, 5, MINUTE_END)
    with pytest.raises(RateLimited):
        await limiter.acquire(key, NOW)
    other = api_key(concurrent=1)  # slots are per key; no request limit: no window
    assert await limiter.acquire(other, NOW) is None


async def test_tokens_per_minute(limiter: Limiter) -> None:
    key = api_key(tokens_per_minute=100)
    assert await limiter.acquire(key, NOW) is None
    await limiter.add_tokens(key, 60, NOW)
    assert await limiter.acquire(key, NOW + 1) is None
    await limiter.add_tokens(key, 40, NOW + 2)
    with pytest.raises(RateLimited) as exc:
        await limiter.acquire(key, NOW + 3)
    assert _limited(exc) == ("Rate limit exceeded: 100 tokens per minute", 42.0,
                             {"limit": 100, "remaining": 0, "reset": 1_700_000_040})
    await limiter.add_tokens(key, 500, NEXT_MINUTE)  # counted in the minute they were used
    with pytest.raises(RateLimited):
        await limiter.acquire(key, NEXT_MINUTE)
    assert await limiter.acquire(key, NEXT_MINUTE + 60) is None
    untracked = api_key(requests_per_minute=1)
    await limiter.add_tokens(untracked, 10**6, NOW)  # no token limit: nothing to count
    assert await limiter.acquire(untracked, NOW) == RateWindow(1, 0, MINUTE_END)


# -- the CreditGuard contract ----------------------------------------------------------------


@dataclass
class Wallet:
    """A guard over an account in a fresh SQLite file."""

    guard: CreditGuard
    accounts: SqliteAccountStore
    account_id: str

    def key(self, credit_limit: Decimal | None = None) -> ApiKey:
        return api_key(self.account_id, credit_limit=credit_limit)

    async def balance(self) -> Decimal:
        account = await self.accounts.get(self.account_id)
        assert account is not None
        return account.balance


async def _accounts(tmp_path: Path, closer: Closer, name: str = "accounts.sqlite"
                    ) -> SqliteAccountStore:
    db = SqliteDatabase(tmp_path / name)
    await db.open()
    closer.closing.append(db)
    return SqliteAccountStore(db)


async def _account(accounts: SqliteAccountStore, balance: str) -> str:
    account_id = _id("acct")
    await accounts.create(Account(account_id))
    await accounts.top_up(account_id, D(balance), "test")
    return account_id


@pytest.fixture(params=["memory", "redis"])
async def wallet(request: pytest.FixtureRequest, tmp_path: Path, closer: Closer) -> Wallet:
    accounts = await _accounts(tmp_path, closer)
    account_id = await _account(accounts, "1.00")
    if request.param == "memory":
        return Wallet(InProcessCreditGuard(accounts), accounts, account_id)
    cluster: RedisCluster = request.getfixturevalue("redis_cluster")
    guard = RedisCreditGuard(closer.client(cluster), accounts)
    closer.checked.append(guard)
    return Wallet(guard, accounts, account_id)


def _refused(exc: pytest.ExceptionInfo[InsufficientCredits]) -> tuple[str, dict[str, Any]]:
    return exc.value.message, exc.value.metadata


ACCOUNT_MESSAGE = "Insufficient credits: the request's worst-case cost does not fit the account balance"
KEY_MESSAGE = "Insufficient credits: the request's worst-case cost does not fit the key's credit limit"


async def test_reserve_against_the_balance(wallet: Wallet) -> None:
    key = wallet.key()
    held = await wallet.guard.reserve(key, "g1", D("0.30"))
    assert held == Reservation("g1", wallet.account_id, key.id, D("0.30"))
    with pytest.raises(InsufficientCredits) as exc:
        await wallet.guard.reserve(key, "g2", D("0.80"))
    assert _refused(exc) == (ACCOUNT_MESSAGE, {"limit_source": "account", "required": "0.80",
                                               "available": "0.70000000"})
    assert await wallet.guard.reserve(key, "g3", D("0.70")) == Reservation(
        "g3", wallet.account_id, key.id, D("0.70"))
    assert await wallet.balance() == D("1.00")  # reserving charges nothing


async def test_partial_reservations(wallet: Wallet) -> None:
    key = wallet.key()
    await wallet.guard.reserve(key, "g1", D("0.30"))
    partial = await wallet.guard.reserve(key, "g2", D("0.80"), partial_from=D("0.50"))
    assert (partial.generation_id, str(partial.amount)) == ("g2", "0.70000000")
    with pytest.raises(InsufficientCredits) as exc:
        await wallet.guard.reserve(key, "g3", D("0.10"), partial_from=D("0.05"))
    assert exc.value.metadata["limit_source"] == "account"
    assert D(exc.value.metadata["available"]) == 0
    await wallet.guard.settle(partial, D(0))
    with pytest.raises(InsufficientCredits) as exc:  # 0.70 is left, less than partial_from
        await wallet.guard.reserve(key, "g4", D("0.90"), partial_from=D("0.75"))
    assert exc.value.metadata == {"limit_source": "account", "required": "0.90",
                                  "available": "0.70000000"}


async def test_the_key_credit_limit_and_its_spending(wallet: Wallet) -> None:
    limited, free = wallet.key(credit_limit=D("0.50")), wallet.key()
    with pytest.raises(InsufficientCredits) as exc:
        await wallet.guard.reserve(limited, "g1", D("0.60"))
    assert _refused(exc) == (KEY_MESSAGE, {"limit_source": "key", "required": "0.60",
                                           "available": "0.50000000"})
    held = await wallet.guard.reserve(limited, "g2", D("0.40"))
    await wallet.guard.settle(held, D("0.40"))
    assert await wallet.balance() == D("0.60")
    with pytest.raises(InsufficientCredits) as exc:
        await wallet.guard.reserve(limited, "g3", D("0.11"))
    assert exc.value.metadata == {"limit_source": "key", "required": "0.11",
                                  "available": "0.10000000"}
    # The account's other key is bound by the balance only.
    await wallet.guard.reserve(free, "g4", D("0.55"))
    with pytest.raises(InsufficientCredits) as exc:
        await wallet.guard.reserve(limited, "g5", D("0.06"))
    assert _refused(exc) == (ACCOUNT_MESSAGE, {"limit_source": "account", "required": "0.06",
                                               "available": "0.05000000"})
    assert await wallet.guard.reserve(limited, "g6", D("0.05")) == Reservation(
        "g6", wallet.account_id, limited.id, D("0.05"))


async def test_settle_charges_the_cost_and_releases_the_rest(wallet: Wallet) -> None:
    key = wallet.key()
    held = await wallet.guard.reserve(key, "g1", D("0.50"))
    await wallet.guard.settle(held, D("0.20"))
    assert await wallet.balance() == D("0.80")
    with pytest.raises(InsufficientCredits) as exc:
        await wallet.guard.reserve(key, "g2", D("0.80000001"))
    assert exc.value.metadata["available"] == "0.80000000"
    free = await wallet.guard.reserve(key, "g3", D("0.80"))
    await wallet.guard.settle(free, D(0))  # a failed generation costs nothing
    assert await wallet.balance() == D("0.80")
    assert (await wallet.guard.reserve(key, "g4", D("0.80"))).amount == D("0.80")


async def test_extend_grows_a_reservation_while_it_fits(wallet: Wallet) -> None:
    key = wallet.key()
    held = await wallet.guard.reserve(key, "g1", D("0.30"), partial_from=D("0.10"))
    grown = await wallet.guard.extend(key, held, D("0.50"))
    assert grown == Reservation("g1", wallet.account_id, key.id, D("0.80"))
    assert await wallet.guard.extend(key, grown, D("0.30")) is None
    other = await wallet.guard.reserve(key, "g2", D("0.20"))
    await wallet.guard.settle(grown, D("0.75"))
    await wallet.guard.settle(other, D("0.20"))
    assert await wallet.balance() == D("0.05")
    await wallet.guard.reserve(key, "g3", D("0.05"))
    with pytest.raises(InsufficientCredits):
        await wallet.guard.reserve(key, "g4", D("0.01"))


async def _gather(calls: Sequence[Awaitable[T]]) -> list[T | BaseException]:
    return list(await asyncio.gather(*calls, return_exceptions=True))


async def test_200_concurrent_reservations_never_overspend(wallet: Wallet) -> None:
    key = wallet.key()
    results = await _gather([wallet.guard.reserve(key, f"g{i}", D("0.01")) for i in range(200)])
    held = [r for r in results if isinstance(r, Reservation)]
    refused = [r for r in results if isinstance(r, InsufficientCredits)]
    assert (len(held), len(refused)) == (100, 100)
    assert {r.metadata["limit_source"] for r in refused} == {"account"}
    await asyncio.gather(*(wallet.guard.settle(r, D("0.01")) for r in held))
    assert await wallet.balance() == D("0.00")
    with pytest.raises(InsufficientCredits):
        await wallet.guard.reserve(key, "last", D("0.01"))


async def test_an_unknown_account(wallet: Wallet) -> None:
    with pytest.raises(NotFound):
        await wallet.guard.reserve(api_key("no-such-account"), "g1", D("0.01"))


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
    one, two = (RedisLimiter(closer.client(redis_cluster)) for _ in range(2))
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
    limiter = RedisLimiter(closer.client(redis_cluster))
    guard = RedisCreditGuard(closer.client(redis_cluster), await _accounts(tmp_path, closer))
    for keys in (limiter.keys("k-1", NOW), limiter.keys("k-1", DAY_END), guard.keys("a-1")):
        assert len({key_slot(k.encode()) for k in keys}) == 1, keys
    assert limiter.keys("k-1", NOW)[0] == "xr:v1:rl:{k-1}:m:28333333"
    assert guard.keys("a-1")[0] == "xr:v1:cr:{a-1}"


async def test_a_slot_of_a_dead_replica_lapses(redis_cluster: RedisCluster,  # noqa: F811
                                               closer: Closer) -> None:
    dead, alive = (RedisLimiter(closer.client(redis_cluster), slot_ttl=0.3) for _ in range(2))
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
    guards = [RedisCreditGuard(closer.client(redis_cluster), accounts)
              for accounts in (first, second)]
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
        await guard.settle(got, got.amount)
        return got.amount

    spent = await asyncio.gather(*(guards[i % 2].settle(r, r.amount / 2) for i, r in enumerate(held)),
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
    dead, alive = (RedisCreditGuard(closer.client(redis_cluster), accounts, reservation_ttl=0.3)
                   for _ in range(2))
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


async def test_a_repeated_settle_charges_and_releases_once(
        redis_cluster: RedisCluster, tmp_path: Path, closer: Closer) -> None:  # noqa: F811
    accounts = await _accounts(tmp_path, closer)
    account_id = await _account(accounts, "1.00")
    guard = RedisCreditGuard(closer.client(redis_cluster), accounts)
    closer.checked.append(guard)
    key = api_key(account_id)
    held = await guard.reserve(key, "g1", D("0.50"))
    other = await guard.reserve(key, "g2", D("0.30"))
    await guard.settle(held, D("0.20"))
    await guard.settle(held, D("0.20"))
    assert (await accounts.get(account_id)) == Account(account_id, "", D("0.80"))
    with pytest.raises(InsufficientCredits) as exc:  # g2 is still held
        await guard.reserve(key, "g3", D("0.51"))
    assert exc.value.metadata["available"] == "0.50000000"
    await guard.settle(other, D(0))


async def test_a_top_up_shows_once_the_snapshot_expires(
        redis_cluster: RedisCluster, tmp_path: Path, closer: Closer) -> None:  # noqa: F811
    accounts = await _accounts(tmp_path, closer)
    account_id = await _account(accounts, "0.10")
    guard = RedisCreditGuard(closer.client(redis_cluster), accounts, snapshot_ttl=0.3)
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
    limiter = RedisLimiter(closer.client(redis_cluster))
    guard = RedisCreditGuard(closer.client(redis_cluster), accounts)
    closer.checked += [limiter, guard]
    key = api_key(account_id, requests_per_minute=5)
    await limiter.acquire(key, NOW)
    for port in redis_cluster.master_ports():  # as on a promoted replica or a restarted node
        with redis.Redis(port=port) as node:
            node.script_flush()
    assert await limiter.acquire(key, NOW) == RateWindow(5, 3, MINUTE_END)
    held = await guard.reserve(key, "g1", D("0.40"))
    await guard.settle(held, D("0.40"))
    assert await accounts.get(account_id) == Account(account_id, "", D("0.60"))
    with redis.Redis(port=redis_cluster.master_of(limiter.keys(key.id, NOW)[0])) as node:
        assert node.script_exists(ACQUIRE_SCRIPT.sha) == [True]
    with redis.Redis(port=redis_cluster.master_of(guard.keys(account_id)[0])) as node:
        assert node.script_exists(CREDITS_SCRIPT.sha) == [True]


async def test_a_revocation_reaches_another_replica_within_a_second(
        redis_cluster: RedisCluster, closer: Closer) -> None:  # noqa: F811
    sender, receiver = (KeyRevocations(closer.client(redis_cluster)) for _ in range(2))
    closer.checked += [sender, receiver]
    closer.closing += [sender, receiver]
    heard = Heard()
    receiver.listen(heard)
    assert await receiver.subscribed(WAIT)
    assert await sender.publish("key-1") is True
    await heard.wait_for("key-1", 1.0)
    assert heard.keys == ["key-1"]


# -- only the Redis implementations: failures ------------------------------------------------


@pytest.fixture
def killed(redis_cluster: RedisCluster) -> Iterator[list[int]]:  # noqa: F811
    """Masters the test kills; restarted afterwards so the session's cluster is whole again."""
    ports: list[int] = []
    try:
        yield ports
    finally:
        for port in ports:
            redis_cluster.restart(port)


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
                                          closer: Closer, killed: list[int]) -> None:
    heard = Heard()
    listener = await _listener_on_a_master(redis_cluster, closer, heard)
    port = int(listener.node.rsplit(":", 1)[1])
    fast = {"socket_timeout": 0.5, "socket_connect_timeout": 0.5}
    limiter = RedisLimiter(closer.client(redis_cluster, **fast), timeout=1.0, retry_after=0.2)
    accounts = await _accounts(tmp_path, closer)
    guard = RedisCreditGuard(closer.client(redis_cluster, **fast), accounts, timeout=1.0,
                             retry_after=0.2)
    key_id = _id_on(redis_cluster, port, lambda i: limiter.keys(i, NOW)[0])
    account_id = _id_on(redis_cluster, port, lambda i: guard.keys(i)[0])
    await accounts.create(Account(account_id))
    await accounts.top_up(account_id, D("1000"), "load")
    key = ApiKey(id=key_id, account_id=account_id, tier="pro", prefix="xr-test",
                 limits=Limits(requests_per_minute=10**6, concurrent=50))
    # A client's only startup node may be the one killed: every client exists before the kill.
    sender = KeyRevocations(closer.client(redis_cluster))
    assert await sender.publish("warm-up")
    load = Load(limiter, guard, key)
    loading = [asyncio.create_task(load.run(w)) for w in range(4)]
    await asyncio.sleep(0.3)
    redis_cluster.kill_master(port)
    killed.append(port)
    await asyncio.to_thread(redis_cluster.wait_failover)
    await asyncio.sleep(0.5)
    load.stop.set()
    await asyncio.gather(*loading)  # only the policies' answers reached the load
    assert load.served > 20
    assert limiter.errors > 0 and guard.errors > 0

    # After the failover, exact again, with the scripts loaded on the promoted master.
    promoted = redis_cluster.master_of(limiter.keys(key.id, NOW)[0])
    assert promoted != port
    await _exact_after_failover(limiter, guard, key, accounts)
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


async def _exact_after_failover(limiter: RedisLimiter, guard: RedisCreditGuard, key: ApiKey,
                                accounts: SqliteAccountStore) -> None:
    exact = ApiKey(id=key.id, account_id=key.account_id, tier="free", prefix="xr-test",
                   limits=Limits(requests_per_minute=20))
    windows = await _gather([limiter.acquire(exact, NOW) for _ in range(30)])
    assert sorted(w.remaining for w in windows if isinstance(w, RateWindow)) == list(range(20))
    fresh = api_key(await _account(accounts, "1.00"))
    held = await _gather([guard.reserve(fresh, f"f{i}", D("0.01")) for i in range(150)])
    assert sum(isinstance(r, Reservation) for r in held) == 100


async def _bounded(call: Awaitable[T], limit: float = 1.0) -> T:
    started = time.monotonic()
    try:
        return await call
    finally:
        assert time.monotonic() - started < limit


async def test_a_hung_then_stopped_cluster(tmp_path: Path, closer: Closer,
                                           caplog: pytest.LogCaptureFixture) -> None:
    cluster = await asyncio.to_thread(RedisCluster().start)
    try:
        await _degraded_modes(cluster, tmp_path, closer)
    finally:
        cluster.stop()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    # At most one warning a minute per component (two limiters, two guards), however many errors.
    assert sum(w.startswith("rate limits: Redis unavailable") for w in warnings) == 2
    assert sum(w.startswith("credits: Redis unavailable") for w in warnings) == 2
    assert sum(w.startswith("key revocations: Redis unavailable") for w in warnings) == 2


async def _degraded_modes(cluster: RedisCluster, tmp_path: Path, closer: Closer) -> None:
    fast = {"socket_timeout": 0.2, "socket_connect_timeout": 0.2}
    accounts = await _accounts(tmp_path, closer)
    account_id = await _account(accounts, "1.00")
    limiter = RedisLimiter(closer.client(cluster, **fast), timeout=0.3, retry_after=0.2)
    strict = RedisLimiter(closer.client(cluster, **fast), fail_open=False, timeout=0.3,
                          retry_after=0.2)
    guard = RedisCreditGuard(closer.client(cluster, **fast), accounts, timeout=0.3,
                             retry_after=0.2)
    lenient = RedisCreditGuard(closer.client(cluster, **fast), accounts, fail_open=True,
                               timeout=0.3, retry_after=0.2)
    revocations = KeyRevocations(closer.client(cluster, **fast), timeout=0.3)
    listener = KeyRevocations(closer.client(cluster, **fast), ping_every=0.3, timeout=0.3)
    closer.closing.append(listener)
    heard = Heard()
    listener.listen(heard)
    assert await listener.subscribed(WAIT)
    key = api_key(account_id, requests_per_minute=100, concurrent=10)
    assert await limiter.acquire(key, NOW) == RateWindow(100, 99, MINUTE_END)
    assert await strict.acquire(key, NOW) == RateWindow(100, 98, MINUTE_END)
    held = await guard.reserve(key, "before", D("0.50"))
    assert (await lenient.reserve(key, "lenient", D("0.10"))).amount == D("0.10")

    for outage in (cluster.freeze, cluster.stop):
        outage()
        errors = (limiter.errors, strict.errors, guard.errors, lenient.errors)
        for _ in range(3):  # the first call waits for Redis, the next ones do not
            assert await _bounded(limiter.acquire(key, NOW)) is None
            with pytest.raises(Unavailable) as unavailable:
                await _bounded(strict.acquire(key, NOW))
            assert unavailable.value.retry_after == 1.0
            await _bounded(limiter.release(key))
            await _bounded(limiter.add_tokens(key, 10, NOW))
            with pytest.raises(Unavailable) as unavailable:
                await _bounded(guard.reserve(key, "during", D("0.01")))
            assert unavailable.value.message == "Credit checks are unavailable; retry shortly"
            assert await _bounded(guard.extend(key, held, D("0.01"))) is None
            assert (await _bounded(lenient.reserve(key, "open", D("5")))).amount == D("5")
            assert await _bounded(revocations.publish("key-1")) is False
        assert (limiter.errors, strict.errors, guard.errors, lenient.errors) > errors
        assert limiter.degraded > 0 and strict.degraded > 0 and guard.degraded > 0
        if outage == cluster.stop:
            break
        cluster.thaw()
        await asyncio.sleep(0.25)  # past retry_after: Redis is asked again
        # Calls that timed out reached Redis when it woke up: counted late, never lost.
        woken = await limiter.acquire(key, NOW)
        assert woken is not None and woken.remaining <= 97
        # The listener noticed the silence (no answer to its ping) and subscribed again.
        assert listener.reconnects >= 1 and await listener.subscribed(WAIT)
        assert await revocations.publish("key-2")
        await heard.wait_for("key-2", 1.0)
        assert heard.keys == ["key-2"]
        fresh = api_key(account_id, requests_per_minute=100)
        assert await strict.acquire(fresh, NOW) == RateWindow(100, 99, MINUTE_END)
        assert (await guard.reserve(key, "after", D("0.10"))).amount == D("0.10")

    # The money is charged even when Redis cannot release the reservation.
    await _bounded(guard.settle(held, D("0.25")), limit=2.0)
    assert await accounts.get(account_id) == Account(account_id, "", D("0.75"))


def test_degraded_answers_are_errors_of_the_tree() -> None:
    assert issubclass(Unavailable, XRouterError) and Unavailable.kind.value == "unavailable"
