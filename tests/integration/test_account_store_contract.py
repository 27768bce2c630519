"""The AccountStore contract, run against every implementation in store_factories.FACTORIES."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from tests.infra.pg_fixtures import postgres_ha  # noqa: F401 - the session fixture
from tests.integration.store_factories import (
    Stores,
    balance,
    generation,
    stores_fixture,  # noqa: F401 - the fixture
    with_accounts,
)
from xrouter_router.domain.errors import (
    InvalidRequest,
    NotFound,
)
from xrouter_router.domain.ledger import Account


class TestAccountStore:
    async def test_a_new_account_has_a_zero_balance(self, stores: Stores) -> None:
        await stores.accounts.create(Account("acc-a", name="Acme"))
        assert await stores.accounts.get("acc-a") == Account("acc-a", "Acme", Decimal(0))
        assert await stores.accounts.get("acc-b") is None

    async def test_a_duplicate_account_or_an_opening_balance_is_refused(self, stores: Stores) -> None:
        await stores.accounts.create(Account("acc-a", name="Acme"))
        with pytest.raises(InvalidRequest):
            await stores.accounts.create(Account("acc-a", name="Other"))
        with pytest.raises(InvalidRequest):
            await stores.accounts.create(Account("acc-b", balance=Decimal(5)))
        assert await stores.accounts.get("acc-a") == Account("acc-a", "Acme", Decimal(0))
        assert await stores.accounts.get("acc-b") is None

    async def test_top_up_returns_the_exact_new_balance(self, stores: Stores) -> None:
        await with_accounts(stores, "acc-a")
        assert await stores.accounts.top_up("acc-a", Decimal("0.1"), "payment-1") == Decimal("0.1")
        new = await stores.accounts.top_up("acc-a", Decimal("0.2"), "payment-2")
        assert type(new) is Decimal
        assert new == Decimal("0.3")
        assert await balance(stores, "acc-a") == Decimal("0.3")

    async def test_amounts_are_kept_to_1e_8_rounding_half_away_from_zero(self, stores: Stores) -> None:
        await with_accounts(stores, "acc-a")
        assert await stores.accounts.top_up("acc-a", Decimal("0.000000015"), "r") == Decimal("2E-8")
        assert await stores.accounts.charge("acc-a", "key-1", "gen-1", Decimal("5E-9")) is True
        assert await balance(stores, "acc-a") == Decimal("1E-8")

    async def test_unknown_accounts_and_bad_amounts_are_refused(self, stores: Stores) -> None:
        await with_accounts(stores, "acc-a")
        with pytest.raises(NotFound):
            await stores.accounts.top_up("acc-b", Decimal(1), "r")
        with pytest.raises(NotFound):
            await stores.accounts.charge("acc-b", "key-1", "gen-1", Decimal(1))
        for bad in (Decimal(0), Decimal(-1), Decimal("NaN"), Decimal("Infinity")):
            with pytest.raises(InvalidRequest):
                await stores.accounts.top_up("acc-a", bad, "r")
        with pytest.raises(InvalidRequest):
            await stores.accounts.charge("acc-a", "key-1", "gen-1", Decimal("-0.01"))
        assert await balance(stores, "acc-a") == 0
        # the refused charge did not use up its generation id
        assert await stores.accounts.charge("acc-a", "key-1", "gen-1", Decimal("0.01")) is True

    async def test_a_generation_is_charged_once(self, stores: Stores) -> None:
        await with_accounts(stores, "acc-a")
        await stores.accounts.top_up("acc-a", Decimal(10), "r")
        assert await stores.accounts.charge("acc-a", "key-1", "gen-1", Decimal("1.25")) is True
        assert await stores.accounts.charge("acc-a", "key-1", "gen-1", Decimal("1.25")) is False
        assert await stores.accounts.charge("acc-a", "key-1", "gen-1", Decimal("7")) is False
        assert await balance(stores, "acc-a") == Decimal("8.75")

    async def test_a_charge_may_take_the_balance_below_zero(self, stores: Stores) -> None:
        await with_accounts(stores, "acc-a")
        await stores.accounts.top_up("acc-a", Decimal("1"), "r")
        assert await stores.accounts.charge("acc-a", "key-1", "gen-1", Decimal("1.5")) is True
        assert await balance(stores, "acc-a") == Decimal("-0.5")

    async def test_the_balance_is_the_sum_of_the_entries_after_a_mix(self, stores: Stores) -> None:
        await with_accounts(stores, "acc-a", "acc-b")
        await stores.accounts.top_up("acc-a", Decimal("100.00000001"), "r1")
        await stores.accounts.charge("acc-a", "key-1", "gen-1", Decimal("0.33333333"))
        await stores.accounts.top_up("acc-b", Decimal("5"), "r2")
        await stores.accounts.charge("acc-a", "key-1", "gen-2", Decimal("0.66666667"))
        await stores.accounts.charge("acc-a", "key-1", "gen-1", Decimal("0.33333333"))  # a repeat
        await stores.accounts.charge("acc-b", "key-2", "gen-3", Decimal("0"))
        await stores.accounts.top_up("acc-a", Decimal("0.5"), "r3")
        assert await balance(stores, "acc-a") == Decimal("99.50000001")
        assert await balance(stores, "acc-b") == Decimal("5")

    async def test_200_concurrent_charges_debit_exactly_200_times(self, stores: Stores) -> None:
        await with_accounts(stores, "acc-a")
        await stores.accounts.top_up("acc-a", Decimal(5), "r")
        amount = Decimal("0.01000001")
        charged = await asyncio.gather(*(
            stores.accounts.charge("acc-a", f"key-{i % 3}", f"gen-{i}", amount) for i in range(200)))
        assert charged == [True] * 200
        assert await balance(stores, "acc-a") == Decimal(5) - 200 * amount == Decimal("2.999998")
        spent = [await stores.accounts.spent(f"key-{k}") for k in range(3)]
        assert spent == [67 * amount, 67 * amount, 66 * amount]

    async def test_concurrent_repeats_of_one_generation_charge_once(self, stores: Stores) -> None:
        await with_accounts(stores, "acc-a")
        charged = await asyncio.gather(*(
            stores.accounts.charge("acc-a", "key-1", "gen-1", Decimal("0.5")) for _ in range(50)))
        assert sorted(charged) == [False] * 49 + [True]
        assert await balance(stores, "acc-a") == Decimal("-0.5")
        assert await stores.accounts.spent("key-1") == Decimal("0.5")

    async def test_spent_sums_the_keys_charges_across_accounts(self, stores: Stores) -> None:
        await with_accounts(stores, "acc-a", "acc-b")
        charge = stores.accounts.charge
        await charge("acc-a", "key-1", "gen-1", Decimal("0.15"))
        await charge("acc-a", "key-1", "gen-2", Decimal("0.25000001"))
        await charge("acc-a", "key-2", "gen-3", Decimal(9))
        await charge("acc-b", "key-1", "gen-4", Decimal(1))
        await charge("acc-a", "key-1", "gen-1", Decimal("0.15"))  # a repeat
        await charge("acc-a", "key-1", "gen-3", Decimal(5))  # gen-3 was charged through key-2
        await stores.accounts.top_up("acc-a", Decimal(100), "r")
        await stores.ledger.record(generation("gen-5", key="key-1", cost="3"))  # not a charge
        assert await stores.accounts.spent("key-1") == Decimal("1.40000001")
        assert await stores.accounts.spent("key-2") == Decimal(9)
        assert await stores.accounts.spent("key-3") == Decimal(0)

