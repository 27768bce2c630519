"""The KeyStore contract, run against every implementation in store_factories.FACTORIES."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from tests.infra.pg_fixtures import postgres_ha  # noqa: F401 - the session fixture
from tests.integration.store_factories import (
    HASH_1,
    HASH_2,
    HASH_3,
    Stores,
    full_key,
    plain_key,
    stores_fixture,  # noqa: F401 - the fixture
    with_accounts,
)
from xrouter_router.domain.errors import (
    InvalidRequest,
    NotFound,
)
from xrouter_router.domain.keys import MASTER


class TestKeyStore:
    async def test_every_field_round_trips_through_get_and_by_hash(self, stores: Stores) -> None:
        await with_accounts(stores, "acc-a")
        key = full_key()
        await stores.keys.create(key, HASH_1)
        assert await stores.keys.get("key-1") == key
        assert await stores.keys.by_hash(HASH_1) == key
        got = await stores.keys.get("key-1")
        assert got is not None and type(got.credit_limit) is Decimal

    async def test_the_ip_allow_list_comes_back_in_order_and_parsed(self, stores: Stores) -> None:
        await with_accounts(stores, "acc-a")
        await stores.keys.create(full_key(), HASH_1)
        got = await stores.keys.by_hash(HASH_1)
        assert got is not None
        assert got.allowed_ips.entries == ("2001:db8::/32", "192.0.2.0/24", "198.51.100.7")
        assert [got.allowed_ips.admits(a) for a in ("192.0.2.9", "2001:db8::1", "198.51.100.7",
                                                    "198.51.100.8", "::1")] == [
            True, True, True, False, False]

    async def test_a_key_with_only_defaults_round_trips(self, stores: Stores) -> None:
        await with_accounts(stores, "acc-a")
        key = plain_key("key-1")
        await stores.keys.create(key, HASH_1)
        assert await stores.keys.by_hash(HASH_1) == key

    async def test_unknown_ids_and_hashes_are_none(self, stores: Stores) -> None:
        await with_accounts(stores, "acc-a")
        await stores.keys.create(plain_key("key-1"), HASH_1)
        assert await stores.keys.get("key-2") is None
        assert await stores.keys.by_hash(HASH_2) is None

    async def test_a_duplicate_hash_or_id_is_refused_and_changes_nothing(self, stores: Stores) -> None:
        await with_accounts(stores, "acc-a")
        await stores.keys.create(plain_key("key-1"), HASH_1)
        with pytest.raises(InvalidRequest):
            await stores.keys.create(plain_key("key-2"), HASH_1)
        with pytest.raises(InvalidRequest):
            await stores.keys.create(plain_key("key-1"), HASH_2)
        assert await stores.keys.get("key-2") is None
        assert await stores.keys.by_hash(HASH_2) is None
        assert await stores.keys.by_hash(HASH_1) == plain_key("key-1")

    async def test_a_key_needs_an_existing_account(self, stores: Stores) -> None:
        with pytest.raises(NotFound):
            await stores.keys.create(plain_key("key-1", account_id="nobody"), HASH_1)
        assert await stores.keys.get("key-1") is None

    async def test_the_master_key_is_never_stored(self, stores: Stores) -> None:
        await with_accounts(stores, MASTER.account_id)
        with pytest.raises(InvalidRequest):
            await stores.keys.create(MASTER, HASH_1)
        assert await stores.keys.by_hash(HASH_1) is None

    async def test_list_gives_an_accounts_keys_oldest_first(self, stores: Stores) -> None:
        await with_accounts(stores, "acc-a", "acc-b")
        k1, k2 = plain_key("k1", created_at=30.0), plain_key("k2", created_at=10.0)
        k3 = plain_key("k3", account_id="acc-b", created_at=20.0)
        k0 = plain_key("k0", created_at=30.0)  # same time as k1: then by id
        for key, hashed in ((k1, HASH_1), (k2, HASH_2), (k3, HASH_3), (k0, "d" * 64)):
            await stores.keys.create(key, hashed)
        assert await stores.keys.list("acc-a") == [k2, k0, k1]
        assert await stores.keys.list("acc-b") == [k3]
        assert await stores.keys.list() == [k2, k3, k0, k1]
        assert await stores.keys.list("acc-c") == []

    async def test_update_changes_every_mutable_field(self, stores: Stores) -> None:
        await with_accounts(stores, "acc-a")
        await stores.keys.create(plain_key("key-1"), HASH_1)
        changed = replace(full_key(), created_at=plain_key("key-1").created_at,
                          prefix=plain_key("key-1").prefix)
        await stores.keys.update(changed)
        assert await stores.keys.get("key-1") == changed
        assert await stores.keys.by_hash(HASH_1) == changed
        cleared = plain_key("key-1")
        await stores.keys.update(cleared)
        assert await stores.keys.by_hash(HASH_1) == cleared

    async def test_updating_an_unknown_key_is_not_found(self, stores: Stores) -> None:
        with pytest.raises(NotFound):
            await stores.keys.update(plain_key("key-1"))
        assert await stores.keys.get("key-1") is None

    async def test_delete_removes_the_key_and_frees_its_hash(self, stores: Stores) -> None:
        await with_accounts(stores, "acc-a")
        await stores.keys.create(plain_key("key-1"), HASH_1)
        assert await stores.keys.delete("key-1") is True
        assert await stores.keys.get("key-1") is None
        assert await stores.keys.by_hash(HASH_1) is None
        assert await stores.keys.list("acc-a") == []
        assert await stores.keys.delete("key-1") is False
        await stores.keys.create(plain_key("key-2"), HASH_1)
        assert await stores.keys.by_hash(HASH_1) == plain_key("key-2")

