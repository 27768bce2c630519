"""Who is calling: API keys looked up by their keyed hash (cached with their parsed IP
allow-lists, so a hot key costs no database round trip), console sessions (domain/sessions.py:
cached the same way, as the key that opened them), and the operator's master key. Both
caches are bounded: known keys in an LRU table, unknown (forged or revoked) hashes in a smaller
one of their own, so a flood of forged keys can neither grow the process nor evict the keys in
use."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace

from xrouter_common.apikeys import well_formed
from xrouter_router.domain import sessions
from xrouter_router.domain.errors import Unauthenticated, Unavailable
from xrouter_router.domain.keys import MASTER, ApiKey, key_hash
from xrouter_router.domain.ports import KeyStore, SessionStore

log = logging.getLogger("xrouter.router.auth")
_NEGATIVE_TTL = 5.0
# After a failed refresh, the cached key is asked for again no sooner than this.
_RETRY_REFRESH = 1.0
KEY_CACHE_SIZE = 10_000
# forget(ACCOUNT_PREFIX + account_id) drops every cached key of the account (its plan changed).
ACCOUNT_PREFIX = "account:"
NEGATIVE_CACHE_SIZE = 1_000


class KeyAuthenticator:
    """Keys from the store, cached for `ttl` seconds (entries of a revoked key are dropped at
    once through forget()). A known key never waits for the store: past its `ttl` the cached
    entry answers and is re-read in the background (one read per key at a time), so a slow or
    failing store (a PostgreSQL failover) delays no request of a key already seen; a key deleted
    without a revocation notice is served until that re-read lands. At most
    `size` known keys (least recently used evicted first) and `negative_size` unknown hashes
    (each for a few seconds, oldest evicted first) are held. Sessions share both tables, under
    sessions.FORGET_PREFIX + their hash, holding the key that opened them (its
    session_expires_at set): forgetting a key forgets its sessions."""

    def __init__(self, keys: KeyStore | None, *, secret: bytes, master_key: str,
                 sessions: SessionStore | None = None,
                 ttl: float = 30.0, size: int = KEY_CACHE_SIZE,
                 negative_size: int = NEGATIVE_CACHE_SIZE,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        if not master_key:
            raise ValueError("the master key must not be empty")
        self._keys = keys
        self._sessions = sessions
        self._secret = secret
        self._master = hashlib.sha256(master_key.encode()).digest()
        self._ttl = ttl
        self._clock = clock
        self._wall = wall
        self._size = max(1, size)
        self._negative_size = max(1, negative_size)
        self._known: OrderedDict[str, tuple[ApiKey, float]] = OrderedDict()
        self._unknown: OrderedDict[str, float] = OrderedDict()
        self._refreshing: dict[str, asyncio.Task[None]] = {}
        self._epoch = 0  # bumped by forget(): a re-read that began before it is discarded
        self.hits = 0
        self.misses = 0

    async def authenticate(self, api_key: str, address: str = "") -> ApiKey:
        """The key, usable now from the client's `address` (as the gateway saw it; empty when
        unknown, which no allow-list admits)."""
        if not api_key:
            raise Unauthenticated("Missing API key: send 'Authorization: Bearer <key>'")
        if hmac.compare_digest(hashlib.sha256(api_key.encode()).digest(), self._master):
            return MASTER
        if api_key.startswith(sessions.SESSION_PREFIX):
            known = self._sessions is not None and sessions.well_formed(api_key)
            hashed = sessions.FORGET_PREFIX + key_hash(self._secret, api_key)
            unknown = "Invalid or expired session: sign in again"
        else:
            known = self._keys is not None and well_formed(api_key)
            hashed = key_hash(self._secret, api_key)
            unknown = "Invalid API key"
        key = await self._lookup(hashed) if known else None
        if key is None:
            raise Unauthenticated(unknown)
        key.allowed_ips.check(address)
        key.usable(self._wall())
        return key

    @property
    def sizes(self) -> tuple[int, int]:
        """How many known keys and unknown hashes are cached."""
        return len(self._known), len(self._unknown)

    async def _load(self, hashed: str) -> ApiKey | None:
        """The key or the session (as its key) under this cache entry's name, from its store."""
        if hashed.startswith(sessions.FORGET_PREFIX):
            assert self._sessions is not None
            found = await self._sessions.by_hash(hashed.removeprefix(sessions.FORGET_PREFIX))
            return None if found is None else replace(found.key,
                                                      session_expires_at=found.expires_at)
        assert self._keys is not None
        return await self._keys.by_hash(hashed)

    async def _lookup(self, hashed: str) -> ApiKey | None:
        now = self._clock()
        cached = self._known.get(hashed)
        if cached is not None:
            self._known.move_to_end(hashed)
            self.hits += 1
            if cached[1] <= now and hashed not in self._refreshing:
                task = asyncio.ensure_future(self._refresh(hashed, self._epoch))
                self._refreshing[hashed] = task
                task.add_done_callback(lambda _: self._refreshing.pop(hashed, None))
            return cached[0]
        if self._unknown.get(hashed, 0.0) > now:
            self.hits += 1
            return None
        self.misses += 1
        try:
            key = await self._load(hashed)
        except Exception as exc:
            raise Unavailable("The key store is unavailable; retry shortly",
                              retry_after=1.0) from exc
        self._remember(hashed, key, self._clock())
        return key

    async def _refresh(self, hashed: str, epoch: int) -> None:
        try:
            key = await self._load(hashed)
        except Exception as exc:  # noqa: BLE001 - the cached key keeps serving meanwhile
            log.warning("key store unavailable (%s); serving a cached key", type(exc).__name__)
            cached = self._known.get(hashed)
            if cached is not None and epoch == self._epoch:
                self._known[hashed] = (cached[0], self._clock() + min(self._ttl, _RETRY_REFRESH))
            return
        if epoch == self._epoch:
            self._remember(hashed, key, self._clock())

    async def settle(self) -> None:
        """Waits for the background re-reads in flight."""
        while self._refreshing:
            await asyncio.gather(*list(self._refreshing.values()), return_exceptions=True)

    def _remember(self, hashed: str, key: ApiKey | None, now: float) -> None:
        if key is None:
            self._known.pop(hashed, None)
            # Entries share one TTL, so insertion order is expiry order: prune from the front.
            self._unknown.pop(hashed, None)
            while self._unknown and (len(self._unknown) >= self._negative_size
                                     or next(iter(self._unknown.values())) <= now):
                self._unknown.popitem(last=False)
            self._unknown[hashed] = now + _NEGATIVE_TTL
            return
        self._unknown.pop(hashed, None)
        self._known[hashed] = (key, now + self._ttl)
        self._known.move_to_end(hashed)
        while len(self._known) > self._size:
            self._known.popitem(last=False)

    def expire_all(self) -> None:
        """Revocations may have been missed (the replica was not listening): every cached key is
        read again at its next use, which it still serves, as any expired entry does (so a key
        store that is down meanwhile refuses no key it served before); re-reads in flight,
        which may have begun before a missed revocation, are dropped."""
        self._epoch += 1
        for hashed, (key, _) in list(self._known.items()):
            self._known[hashed] = (key, float("-inf"))

    def forget(self, key_id: str) -> None:
        """Drop a key from the cache (it was revoked, disabled or changed); given
        ACCOUNT_PREFIX + an account id, every key of that account (its plan changed); given
        sessions.FORGET_PREFIX + a session's hash, that session (it was revoked). Forgetting a
        key forgets the sessions it opened."""
        self._epoch += 1
        if key_id.startswith(sessions.FORGET_PREFIX):
            self._known.pop(key_id, None)
            return
        account = key_id.removeprefix(ACCOUNT_PREFIX) if key_id.startswith(ACCOUNT_PREFIX) else None
        for hashed, (key, _) in list(self._known.items()):
            if key.id == key_id or key.account_id == account:
                del self._known[hashed]


def MasterKeyAuthenticator(master_key: str) -> KeyAuthenticator:  # noqa: N802 - a constructor
    """Accepts exactly the master key (tests, and a router without a key store)."""
    return KeyAuthenticator(None, secret=b"", master_key=master_key)
