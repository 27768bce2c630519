"""The PlanStore contract, run against every implementation in store_factories.FACTORIES."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.infra.pg_fixtures import postgres_ha  # noqa: F401 - the session fixture
from tests.integration.store_factories import (
    HASH_1,
    HASH_2,
    Stores,
    plain_key,
    stores_fixture,  # noqa: F401 - the fixture
    with_accounts,
)
from xrouter_router.domain.errors import NotFound
from xrouter_router.domain.keys import Limits
from xrouter_router.domain.plans import Plan


class TestPlanStore:
    async def test_an_account_has_no_plan_until_one_is_set(self, stores: Stores) -> None:
        await with_accounts(stores, "acc-a", "acc-b")
        assert await stores.plans.get("acc-a") is None
        assert await stores.plans.get("nobody") is None

    async def test_a_plan_is_stored_whole_and_replaced_whole(self, stores: Stores) -> None:
        await with_accounts(stores, "acc-a", "acc-b")
        full = Plan("max", Limits(requests_per_minute=500, requests_per_day=0,
                                  tokens_per_minute=90_000, concurrent=7),
                    residency="ru", pii_guard="mask", pii_scope="always")
        await stores.plans.set("acc-a", full)
        assert await stores.plans.get("acc-a") == full
        await stores.plans.set("acc-a", Plan("pro"))
        assert await stores.plans.get("acc-a") == Plan("pro", Limits())
        assert await stores.plans.get("acc-b") is None

    async def test_an_outage_allowance_is_exact_and_reaches_the_accounts_keys(
            self, stores: Stores) -> None:
        await with_accounts(stores, "acc-a", "acc-b")
        await stores.keys.create(plain_key("k-a", "acc-a"), HASH_1)
        await stores.keys.create(plain_key("k-b", "acc-b"), HASH_2)
        plan = Plan("pro", outage_allowance=Decimal("12.34567891"))
        await stores.plans.set("acc-a", plan)
        assert await stores.plans.get("acc-a") == plan
        key = await stores.keys.by_hash(HASH_1)
        assert key is not None and key.account_outage_allowance == Decimal("12.34567891")
        other = await stores.keys.get("k-b")  # no plan: the global setting
        assert other is not None and other.account_outage_allowance is None
        await stores.plans.set("acc-a", Plan("pro", outage_allowance=Decimal(0)))
        key = await stores.keys.get("k-a")
        assert key is not None and key.account_outage_allowance == Decimal(0)
        await stores.plans.set("acc-a", Plan("pro"))
        key = await stores.keys.get("k-a")
        assert key is not None and key.account_outage_allowance is None

    async def test_a_plan_for_an_unknown_account_is_refused(self, stores: Stores) -> None:
        with pytest.raises(NotFound) as info:
            await stores.plans.set("nobody", Plan("pro"))
        assert info.value.param == "account_id"
        assert await stores.plans.get("nobody") is None
