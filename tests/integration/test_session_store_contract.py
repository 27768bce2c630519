"""The SessionStore contract (domain/sessions.py), run against every implementation in
store_factories.FACTORIES: a session is read back with its key as the key store reads it now,
ends with its key, and is pruned once expired."""

from __future__ import annotations

from dataclasses import replace

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
from tests.support import Clock
from xrouter_router.domain.keys import MASTER, ApiKey, key_hash
from xrouter_router.domain.plans import Plan
from xrouter_router.domain.sessions import SESSION_TTL, Session, SessionService

T0 = 1_800_000_000.5
S1, S2, S3 = "1" * 64, "2" * 64, "3" * 64


async def _two_keys(stores: Stores) -> tuple[ApiKey, ApiKey]:
    """Keys k-1 and k-2 of account acc-a, as stored."""
    await with_accounts(stores, "acc-a")
    await stores.keys.create(plain_key("k-1"), HASH_1)
    await stores.keys.create(plain_key("k-2"), HASH_2)
    k1, k2 = await stores.keys.get("k-1"), await stores.keys.get("k-2")
    assert k1 is not None and k2 is not None
    return k1, k2


class TestSessionStore:
    async def test_a_session_is_read_with_its_key_as_the_key_is_now(self, stores: Stores) -> None:
        await with_accounts(stores, "acc-a")
        key = full_key()
        await stores.keys.create(key, HASH_1)
        await stores.sessions.create(S1, Session(key, T0, T0 + 3600.25))
        assert await stores.sessions.by_hash(S1) == Session(key, T0, T0 + 3600.25)
        changed = replace(key, disabled=False, label="renamed")
        await stores.keys.update(changed)
        await stores.plans.set("acc-a", Plan("max", residency="ru"))
        read = await stores.sessions.by_hash(S1)
        assert read is not None and read.key == await stores.keys.by_hash(HASH_1)
        assert (read.key.label, read.key.disabled, read.key.account_residency) == (
            "renamed", False, "ru")
        assert await stores.sessions.by_hash(S2) is None

    async def test_the_master_keys_session_names_no_key(self, stores: Stores) -> None:
        await stores.sessions.create(S1, Session(MASTER, T0, T0 + 60))
        assert await stores.sessions.by_hash(S1) == Session(MASTER, T0, T0 + 60)

    async def test_deleting_a_key_ends_its_sessions_and_only_its(self, stores: Stores) -> None:
        k1, k2 = await _two_keys(stores)
        await stores.sessions.create(S1, Session(k1, T0, T0 + 60))
        await stores.sessions.create(S2, Session(k1, T0, T0 + 60))
        await stores.sessions.create(S3, Session(k2, T0, T0 + 60))
        assert await stores.keys.delete("k-1")
        assert [await stores.sessions.by_hash(h) for h in (S1, S2)] == [None, None]
        assert await stores.sessions.by_hash(S3) == Session(k2, T0, T0 + 60)

    async def test_disabling_a_key_ends_its_sessions_for_good(self, stores: Stores) -> None:
        k1, k2 = await _two_keys(stores)
        await stores.sessions.create(S1, Session(k1, T0, T0 + 60))
        await stores.sessions.create(S2, Session(k2, T0, T0 + 60))
        await stores.keys.update(replace(k1, label="renamed"))  # not disabled: kept
        assert await stores.sessions.by_hash(S1) is not None
        await stores.keys.update(replace(k1, disabled=True))
        await stores.keys.update(replace(k1, disabled=False))
        assert await stores.sessions.by_hash(S1) is None
        assert await stores.sessions.by_hash(S2) == Session(k2, T0, T0 + 60)

    async def test_delete_ends_one_session(self, stores: Stores) -> None:
        await stores.sessions.create(S1, Session(MASTER, T0, T0 + 60))
        await stores.sessions.create(S2, Session(MASTER, T0, T0 + 60))
        assert await stores.sessions.delete(S1) is True
        assert await stores.sessions.delete(S1) is False
        assert await stores.sessions.by_hash(S1) is None
        assert await stores.sessions.by_hash(S2) is not None

    async def test_prune_deletes_exactly_the_expired_sessions(self, stores: Stores) -> None:
        await with_accounts(stores, "acc-a")
        await stores.keys.create(plain_key("k-1"), HASH_3)
        key = await stores.keys.get("k-1")
        assert key is not None
        await stores.sessions.create(S1, Session(key, T0, T0 + 10))
        await stores.sessions.create(S2, Session(MASTER, T0, T0 + 20))
        await stores.sessions.create(S3, Session(key, T0, T0 + 30))
        assert await stores.sessions.prune(T0 + 5) == 0
        assert await stores.sessions.prune(T0 + 20) == 2  # expiring at `now` counts as expired
        assert [await stores.sessions.by_hash(h) is None for h in (S1, S2, S3)] == [
            True, True, False]


class TestSessionService:
    async def test_signing_in_prunes_the_expired_sessions(self, stores: Stores) -> None:
        clock = Clock(T0)
        service = SessionService(stores.sessions, secret=b"s", forget=lambda _: None, wall=clock)
        old, session = await service.create(MASTER)
        assert session == Session(MASTER, T0, T0 - 0.5 + SESSION_TTL)  # whole seconds
        assert await stores.sessions.by_hash(key_hash(b"s", old)) == session
        clock.now += SESSION_TTL
        new, _ = await service.create(MASTER)
        assert await stores.sessions.by_hash(key_hash(b"s", old)) is None
        assert await stores.sessions.by_hash(key_hash(b"s", new)) is not None

    async def test_revoking_forgets_the_session_here_and_announces_it(
            self, stores: Stores) -> None:
        forgotten: list[str] = []
        announced: list[str] = []

        async def announce(name: str) -> None:
            announced.append(name)
        service = SessionService(stores.sessions, secret=b"s", forget=forgotten.append,
                                 announce=announce, wall=Clock(T0))
        token, _ = await service.create(MASTER)
        assert await service.revoke(token) is True
        assert forgotten == announced == ["session:" + key_hash(b"s", token)]
        assert await service.revoke(token) is False
        assert await service.revoke("xrs-garbage") is False
        assert len(forgotten) == 2
