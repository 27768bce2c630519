"""Who is calling: API keys looked up by their keyed hash (cached, so a hot key costs no
database round trip), and the operator's master key."""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Callable

from xrouter_common.apikeys import well_formed
from xrouter_router.domain.errors import Unauthenticated, Unavailable
from xrouter_router.domain.keys import MASTER, ApiKey, key_hash
from xrouter_router.domain.ports import KeyStore

log = logging.getLogger("xrouter.router.auth")
_NEGATIVE_TTL = 5.0


class KeyAuthenticator:
    """Keys from the store, cached for `ttl` seconds (entries of a revoked key are dropped at
    once through forget()); when the store fails, keys already cached keep working."""

    def __init__(self, keys: KeyStore | None, *, secret: bytes, master_key: str,
                 ttl: float = 30.0, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        if not master_key:
            raise ValueError("the master key must not be empty")
        self._keys = keys
        self._secret = secret
        self._master = hashlib.sha256(master_key.encode()).digest()
        self._ttl = ttl
        self._clock = clock
        self._wall = wall
        self._cache: dict[str, tuple[ApiKey | None, float]] = {}
        self.hits = 0
        self.misses = 0

    async def authenticate(self, api_key: str) -> ApiKey:
        if not api_key:
            raise Unauthenticated("Missing API key: send 'Authorization: Bearer <key>'")
        if hmac.compare_digest(hashlib.sha256(api_key.encode()).digest(), self._master):
            return MASTER
        if self._keys is None or not well_formed(api_key):
            raise Unauthenticated("Invalid API key")
        hashed = key_hash(self._secret, api_key)
        key = await self._lookup(hashed)
        if key is None:
            raise Unauthenticated("Invalid API key")
        key.usable(self._wall())
        return key

    async def _lookup(self, hashed: str) -> ApiKey | None:
        assert self._keys is not None
        now = self._clock()
        cached = self._cache.get(hashed)
        if cached is not None and cached[1] > now:
            self.hits += 1
            return cached[0]
        self.misses += 1
        try:
            key = await self._keys.by_hash(hashed)
        except Exception as exc:
            if cached is not None and cached[0] is not None:
                log.warning("key store unavailable (%s); serving a cached key", type(exc).__name__)
                return cached[0]
            raise Unavailable("The key store is unavailable; retry shortly",
                              retry_after=1.0) from exc
        self._cache[hashed] = (key, now + (self._ttl if key is not None else _NEGATIVE_TTL))
        return key

    def forget(self, key_id: str) -> None:
        """Drop a key from the cache (it was revoked, disabled or changed)."""
        for hashed, (key, _) in list(self._cache.items()):
            if key is not None and key.id == key_id:
                del self._cache[hashed]


def MasterKeyAuthenticator(master_key: str) -> KeyAuthenticator:  # noqa: N802 - a constructor
    """Accepts exactly the master key (tests, and a router without a key store)."""
    return KeyAuthenticator(None, secret=b"", master_key=master_key)
