"""The AuthCodeStore contract (domain/oauth.py), run against every implementation in
store_factories.FACTORIES: a code is taken exactly once, even by concurrent takes; it ends with
its approving key (deleted or disabled); expired codes are pruned."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from tests.infra.pg_fixtures import postgres_ha  # noqa: F401 - the session fixture
from tests.integration.store_factories import (
    HASH_1,
    Stores,
    plain_key,
    stores_fixture,  # noqa: F401 - the fixture
    with_accounts,
)
from xrouter_router.domain.pkce import AuthGrant

T0 = 1_800_000_000.5
C1, C2, C3 = "1" * 64, "2" * 64, "3" * 64
GRANT = AuthGrant("k-1", "acc-a", "app.example:8443", "c" * 43, "S256", T0, T0 + 600)


async def _approver(stores: Stores) -> None:
    await with_accounts(stores, "acc-a")
    await stores.keys.create(replace(plain_key("k-1"), tier="mgmt"), HASH_1)


class TestAuthCodeStore:
    async def test_a_code_is_taken_whole_and_once(self, stores: Stores) -> None:
        await _approver(stores)
        await stores.codes.create(C1, GRANT)
        assert await stores.codes.take(C2) is None
        assert await stores.codes.take(C1) == GRANT
        assert await stores.codes.take(C1) is None

    async def test_of_concurrent_takes_exactly_one_gets_the_code(self, stores: Stores) -> None:
        await _approver(stores)
        await stores.codes.create(C1, GRANT)
        taken = await asyncio.gather(*(stores.codes.take(C1) for _ in range(16)))
        assert [t for t in taken if t is not None] == [GRANT]

    async def test_a_code_ends_with_its_key_deleted_or_disabled(self, stores: Stores) -> None:
        await _approver(stores)
        await stores.codes.create(C1, GRANT)
        key = await stores.keys.get("k-1")
        assert key is not None
        await stores.keys.update(replace(key, disabled=True))
        assert await stores.codes.take(C1) is None
        await stores.keys.update(key)
        await stores.codes.create(C2, GRANT)
        assert await stores.keys.delete("k-1")
        assert await stores.codes.take(C2) is None

    async def test_prune_deletes_exactly_the_expired_codes(self, stores: Stores) -> None:
        await _approver(stores)
        for hashed, ttl in ((C1, 10), (C2, 20), (C3, 30)):
            await stores.codes.create(hashed, replace(GRANT, expires_at=T0 + ttl))
        assert await stores.codes.prune(T0) == 0
        assert await stores.codes.prune(T0 + 20) == 2
        assert [await stores.codes.take(h) is None for h in (C1, C2, C3)] == [True, True, False]
