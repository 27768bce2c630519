"""The authenticator: the master key, keys from the store by keyed hash (cached, forgotten on
revocation, served from cache when the store fails), refused with the documented messages."""

from __future__ import annotations

import asyncio

import pytest

from xrouter_common.apikeys import generate
from xrouter_router.domain.auth import KeyAuthenticator, MasterKeyAuthenticator
from xrouter_router.domain.errors import ErrorKind, Unauthenticated, Unavailable
from xrouter_router.domain.keys import MASTER, ApiKey, key_hash


async def test_the_master_key_is_accepted_as_the_master_principal() -> None:
    auth = MasterKeyAuthenticator("sk-master")
    assert await auth.authenticate("sk-master") == MASTER


@pytest.mark.parametrize(("key", "message"), [
    ("", "Missing API key: send 'Authorization: Bearer <key>'"),
    ("sk-other", "Invalid API key"),
    ("sk-maste", "Invalid API key"),
    ("sk-master ", "Invalid API key"),
    ("SK-MASTER", "Invalid API key"),
])
async def test_any_other_key_is_unauthenticated(key: str, message: str) -> None:
    with pytest.raises(Unauthenticated) as info:
        await MasterKeyAuthenticator("sk-master").authenticate(key)
    assert info.value.message == message
    assert str(info.value) == message
    assert info.value.kind is ErrorKind.UNAUTHENTICATED
    assert info.value.retryable is False


def test_an_empty_master_key_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match=r"^the master key must not be empty$"):
        MasterKeyAuthenticator("")



class Store:
    """A KeyStore with only what the authenticator uses, counting lookups."""

    def __init__(self, keys: dict[str, ApiKey]) -> None:
        self.keys = keys
        self.lookups = 0
        self.down = False

    async def by_hash(self, hashed: str) -> ApiKey | None:
        self.lookups += 1
        if self.down:
            raise ConnectionError("database unreachable")
        return self.keys.get(hashed)


SECRET = b"server-secret"


def _auth(store: Store, now: list[float]) -> KeyAuthenticator:
    return KeyAuthenticator(store, secret=SECRET, master_key="sk-master", ttl=30.0,  # type: ignore[arg-type]
                            clock=lambda: now[0], wall=lambda: 1_000.0)


async def test_store_keys_are_found_by_keyed_hash_and_cached() -> None:
    plain = generate("pro")
    key = ApiKey(id="key-1", account_id="acct", tier="pro", prefix="xr-pro-...")
    store = Store({key_hash(SECRET, plain): key})
    now = [0.0]
    auth = _auth(store, now)
    assert await auth.authenticate(plain) == key
    assert await auth.authenticate(plain) == key
    assert store.lookups == 1 and (auth.hits, auth.misses) == (1, 1)
    now[0] = 31.0
    assert await auth.authenticate(plain) == key  # the stale entry answers at once
    await auth.settle()
    assert store.lookups == 2  # and was re-read in the background


class SlowStore(Store):
    """Each lookup waits until the test opens the gate (a database that hangs)."""

    def __init__(self, keys: dict[str, ApiKey]) -> None:
        super().__init__(keys)
        self.gate = asyncio.Event()

    async def by_hash(self, hashed: str) -> ApiKey | None:
        self.lookups += 1
        await self.gate.wait()
        if self.down:
            raise ConnectionError("database unreachable")
        return self.keys.get(hashed)


async def test_a_known_key_never_waits_for_a_hanging_store() -> None:
    plain = generate("pro")
    key = ApiKey(id="key-1", account_id="acct", tier="pro", prefix="p")
    store = SlowStore({key_hash(SECRET, plain): key})
    now = [0.0]
    auth = _auth(store, now)
    store.gate.set()
    await auth.authenticate(plain)
    store.gate.clear()  # the store hangs from now on
    now[0] = 31.0
    answers = [await auth.authenticate(plain) for _ in range(5)]  # none of them waits
    assert answers == [key] * 5
    await asyncio.sleep(0)  # the re-read starts, and hangs
    assert store.lookups == 2  # one re-read in flight for the five
    del store.keys[key_hash(SECRET, plain)]  # deleted meanwhile, without a revocation notice
    store.gate.set()
    await auth.settle()
    with pytest.raises(Unauthenticated, match=r"^Invalid API key$"):
        await auth.authenticate(plain)


async def test_a_revocation_during_a_re_read_is_not_undone_by_it() -> None:
    plain = generate("pro")
    key = ApiKey(id="key-1", account_id="acct", tier="pro", prefix="p")
    store = SlowStore({key_hash(SECRET, plain): key})
    now = [0.0]
    auth = _auth(store, now)
    store.gate.set()
    await auth.authenticate(plain)
    store.gate.clear()
    now[0] = 31.0
    await auth.authenticate(plain)  # starts a re-read, which will read the key as it was
    auth.forget("key-1")
    store.gate.set()
    await auth.settle()
    assert auth.sizes == (0, 0)  # the re-read's answer was dropped
    del store.keys[key_hash(SECRET, plain)]
    with pytest.raises(Unauthenticated):
        await auth.authenticate(plain)


async def test_a_failed_re_read_is_retried_a_second_later_not_on_every_request() -> None:
    plain = generate("pro")
    key = ApiKey(id="key-1", account_id="acct", tier="pro", prefix="p")
    store = Store({key_hash(SECRET, plain): key})
    now = [0.0]
    auth = _auth(store, now)
    await auth.authenticate(plain)
    store.down = True
    now[0] = 31.0
    for _ in range(3):
        assert await auth.authenticate(plain) == key
        await auth.settle()
    assert store.lookups == 2
    now[0] = 32.0
    assert await auth.authenticate(plain) == key
    await auth.settle()
    assert store.lookups == 3


async def test_forget_drops_a_revoked_key_at_once() -> None:
    plain = generate("free")
    key = ApiKey(id="key-1", account_id="acct", tier="free", prefix="p")
    store = Store({key_hash(SECRET, plain): key})
    auth = _auth(store, [0.0])
    await auth.authenticate(plain)
    del store.keys[key_hash(SECRET, plain)]
    auth.forget("key-1")
    with pytest.raises(Unauthenticated, match=r"^Invalid API key$"):
        await auth.authenticate(plain)


async def test_expire_all_has_every_cached_key_read_again_at_its_next_use() -> None:
    # What a replica does once it listens again: revocations it missed meanwhile are unknown.
    plains = [generate("pro") for _ in range(3)]
    keys = [ApiKey(id=f"key-{i}", account_id="acct", tier="pro", prefix="p") for i in range(3)]
    store = SlowStore({key_hash(SECRET, p): k for p, k in zip(plains, keys, strict=True)})
    now = [0.0]
    auth = _auth(store, now)
    store.gate.set()
    for plain in plains:
        await auth.authenticate(plain)
    store.gate.clear()
    now[0] = 31.0
    await auth.authenticate(plains[0])  # a re-read in flight, reading the key as it was
    now[0] = 32.0
    del store.keys[key_hash(SECRET, plains[1])]  # revoked while the replica was not listening
    auth.expire_all()
    store.gate.set()
    await auth.settle()
    assert store.lookups == 4
    assert auth.sizes == (3, 0)  # the re-read's answer was dropped; every key kept, expired
    # The next use serves the cached key once (as for any expired entry) and reads it again.
    assert await auth.authenticate(plains[1]) == keys[1]
    await auth.settle()
    with pytest.raises(Unauthenticated, match=r"^Invalid API key$"):
        await auth.authenticate(plains[1])
    # A key store that is down meanwhile refuses no key that was served before.
    store.down = True
    assert await auth.authenticate(plains[2]) == keys[2]
    await auth.settle()
    assert await auth.authenticate(plains[2]) == keys[2]


async def test_disabled_expired_and_malformed_keys() -> None:
    plain = generate("free")
    store = Store({key_hash(SECRET, plain): ApiKey(id="k", account_id="a", tier="free", prefix="p",
                                                    disabled=True)})
    with pytest.raises(Unauthenticated, match=r"^This API key is disabled$"):
        await _auth(store, [0.0]).authenticate(plain)
    store.keys[key_hash(SECRET, plain)] = ApiKey(id="k", account_id="a", tier="free", prefix="p",
                                                 expires_at=999.0)
    with pytest.raises(Unauthenticated, match=r"^This API key has expired$"):
        await _auth(store, [0.0]).authenticate(plain)
    typo = plain[:-1] + ("0" if plain[-1] != "0" else "1")
    with pytest.raises(Unauthenticated, match=r"^Invalid API key$"):
        await _auth(store, [0.0]).authenticate(typo)
    assert store.lookups == 2  # the mistyped key never reached the store


async def test_a_failing_store_serves_cached_keys_and_refuses_unknown_ones() -> None:
    plain, other = generate("pro"), generate("pro")
    key = ApiKey(id="key-1", account_id="acct", tier="pro", prefix="p")
    store = Store({key_hash(SECRET, plain): key})
    now = [0.0]
    auth = _auth(store, now)
    await auth.authenticate(plain)
    store.down = True
    now[0] = 100.0  # the cache entry is stale, the store is down: the stale entry serves
    assert await auth.authenticate(plain) == key
    with pytest.raises(Unavailable):
        await auth.authenticate(other)


async def test_forged_keys_stay_within_their_own_table_and_never_evict_a_hot_key() -> None:
    hot = generate("pro")
    key = ApiKey(id="key-1", account_id="acct", tier="pro", prefix="p")
    store = Store({key_hash(SECRET, hot): key})
    now = [0.0]
    auth = KeyAuthenticator(store, secret=SECRET, master_key="sk-master", ttl=30.0,  # type: ignore[arg-type]
                            size=4, negative_size=8, clock=lambda: now[0], wall=lambda: 1_000.0)
    await auth.authenticate(hot)
    for n in range(2_000):  # distinct forged keys, each with a valid checksum
        with pytest.raises(Unauthenticated, match=r"^Invalid API key$"):
            await auth.authenticate(generate("free"))
        if n % 100 == 0:
            assert await auth.authenticate(hot) == key
        assert auth.sizes[1] <= 8
    assert auth.sizes == (1, 8)
    assert store.lookups == 1 + 2_000  # the hot key was read once, every later use was a hit
    assert auth.hits == 20
    now[0] = 6.0  # every unknown entry has expired: the next insert prunes them all
    with pytest.raises(Unauthenticated):
        await auth.authenticate(generate("free"))
    assert auth.sizes == (1, 1)


async def test_known_keys_beyond_the_cap_evict_the_least_recently_used() -> None:
    plains = [generate("pro") for _ in range(3)]
    keys = {key_hash(SECRET, p): ApiKey(id=f"key-{n}", account_id="a", tier="pro", prefix="p")
            for n, p in enumerate(plains)}
    store = Store(keys)
    auth = KeyAuthenticator(store, secret=SECRET, master_key="sk-master", size=2,  # type: ignore[arg-type]
                            clock=lambda: 0.0, wall=lambda: 1_000.0)
    await auth.authenticate(plains[0])
    await auth.authenticate(plains[1])
    await auth.authenticate(plains[0])  # key-0 is now the most recently used
    await auth.authenticate(plains[2])  # evicts key-1
    assert auth.sizes == (2, 0)
    assert store.lookups == 3
    await auth.authenticate(plains[0])
    assert store.lookups == 3
    await auth.authenticate(plains[1])
    assert store.lookups == 4


async def test_a_key_created_after_its_hash_was_refused_is_found_once_the_entry_expires() -> None:
    plain = generate("pro")
    store = Store({})
    now = [0.0]
    auth = _auth(store, now)
    with pytest.raises(Unauthenticated):
        await auth.authenticate(plain)
    store.keys[key_hash(SECRET, plain)] = ApiKey(id="k", account_id="a", tier="pro", prefix="p")
    with pytest.raises(Unauthenticated):
        await auth.authenticate(plain)  # the negative entry still holds
    now[0] = 5.5
    assert (await auth.authenticate(plain)).id == "k"
    assert auth.sizes == (1, 0)
