"""The CreditGuard contract, against the in-process implementation and against the Redis Cluster
one (what only Redis does is in test_redis_cluster_limits.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.infra.fixtures import redis_cluster, redis_tls_cluster  # noqa: F401 - session fixtures
from tests.infra.redis_cluster import RedisCluster
from tests.integration.limits_support import (
    Closer,
    D,
    _account,
    _accounts,
    _gather,
    api_key,
    closer_fixture,  # noqa: F401 - the `closer` fixture
    settle_and_post,
)
from xrouter_router.domain.errors import InsufficientCredits, NotFound
from xrouter_router.domain.keys import ApiKey
from xrouter_router.domain.ports import CreditGuard, Reservation
from xrouter_router.storage.memory import InProcessCreditGuard
from xrouter_router.storage.redis.credits import RedisCreditGuard
from xrouter_router.storage.sql.sqlite import SqliteAccountStore

# -- the CreditGuard contract ----------------------------------------------------------------


@dataclass
class Wallet:
    """A guard over an account in a fresh SQLite file. With the Redis guard the charge travels
    with the generation's record: settle() then does what the ledger consumer does after it,
    charge the store and tell the guard (applied)."""

    guard: CreditGuard
    accounts: SqliteAccountStore
    account_id: str
    redis: RedisCreditGuard | None = None

    async def settle(self, held: Reservation, cost: Decimal) -> None:
        if self.redis is None:
            await self.guard.settle(held, cost)
        else:
            await settle_and_post(self.redis, self.accounts, held, cost)

    def key(self, credit_limit: Decimal | None = None) -> ApiKey:
        return api_key(self.account_id, credit_limit=credit_limit)

    async def balance(self) -> Decimal:
        account = await self.accounts.get(self.account_id)
        assert account is not None
        return account.balance


@pytest.fixture(params=["memory", "redis", "redis-lane", "redis-lane-tls"])
async def wallet(request: pytest.FixtureRequest, tmp_path: Path,
                 closer: Closer) -> AsyncIterator[Wallet]:
    """The Redis guard through the cluster client, and through the lane as the router runs it
    (every script of the test then went the lane's way), on plain TCP and on TLS."""
    accounts = await _accounts(tmp_path, closer)
    account_id = await _account(accounts, "1.00")
    if request.param == "memory":
        yield Wallet(InProcessCreditGuard(accounts), accounts, account_id)
        return
    cluster: RedisCluster = request.getfixturevalue(
        "redis_tls_cluster" if request.param.endswith("-tls") else "redis_cluster")
    client = await closer.started(cluster)
    lane = closer.lane(client) if request.param.startswith("redis-lane") else None
    guard = RedisCreditGuard(client, accounts, lane=lane, timeout=10.0)  # exactness, not timeouts
    closer.checked.append(guard)
    yield Wallet(guard, accounts, account_id, guard)
    assert lane is None or (lane.fallbacks, len(lane.connected())) == (0, 1)


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
    await wallet.settle(partial, D(0))
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
    await wallet.settle(held, D("0.40"))
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
    await wallet.settle(held, D("0.20"))
    assert await wallet.balance() == D("0.80")
    with pytest.raises(InsufficientCredits) as exc:
        await wallet.guard.reserve(key, "g2", D("0.80000001"))
    assert exc.value.metadata["available"] == "0.80000000"
    free = await wallet.guard.reserve(key, "g3", D("0.80"))
    await wallet.settle(free, D(0))  # a failed generation costs nothing
    assert await wallet.balance() == D("0.80")
    assert (await wallet.guard.reserve(key, "g4", D("0.80"))).amount == D("0.80")


async def test_extend_grows_a_reservation_while_it_fits(wallet: Wallet) -> None:
    key = wallet.key()
    held = await wallet.guard.reserve(key, "g1", D("0.30"), partial_from=D("0.10"))
    grown = await wallet.guard.extend(key, held, D("0.50"))
    assert grown == Reservation("g1", wallet.account_id, key.id, D("0.80"))
    assert await wallet.guard.extend(key, grown, D("0.30")) is None
    other = await wallet.guard.reserve(key, "g2", D("0.20"))
    await wallet.settle(grown, D("0.75"))
    await wallet.settle(other, D("0.20"))
    assert await wallet.balance() == D("0.05")
    await wallet.guard.reserve(key, "g3", D("0.05"))
    with pytest.raises(InsufficientCredits):
        await wallet.guard.reserve(key, "g4", D("0.01"))


async def test_200_concurrent_reservations_never_overspend(wallet: Wallet) -> None:
    key = wallet.key()
    results = await _gather([wallet.guard.reserve(key, f"g{i}", D("0.01")) for i in range(200)])
    held = [r for r in results if isinstance(r, Reservation)]
    refused = [r for r in results if isinstance(r, InsufficientCredits)]
    assert (len(held), len(refused)) == (100, 100)
    assert {r.metadata["limit_source"] for r in refused} == {"account"}
    await asyncio.gather(*(wallet.settle(r, D("0.01")) for r in held))
    assert await wallet.balance() == D("0.00")
    with pytest.raises(InsufficientCredits):
        await wallet.guard.reserve(key, "last", D("0.01"))


async def test_an_unknown_account(wallet: Wallet) -> None:
    with pytest.raises(NotFound):
        await wallet.guard.reserve(api_key("no-such-account"), "g1", D("0.01"))
