"""Console sessions: a short-lived credential (`xrs-` + 32 random bytes) opened with an API key
(or the master key) that authenticates exactly as that key does, until it expires (12 hours
after sign-in), is revoked, or its key is disabled, deleted or expires. Only the token's keyed
hash is stored; the authenticator (domain/auth.py) caches sessions as it caches keys."""

from __future__ import annotations

import base64
import math
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from xrouter_router.domain.errors import Forbidden
from xrouter_router.domain.keys import MANAGEMENT_TIER, ApiKey, key_hash

if TYPE_CHECKING:  # ports.py names Session
    from xrouter_router.domain.ports import SessionStore

SESSION_PREFIX = "xrs-"
# Absolute: a session ends this long after sign-in (the second it began, rounded down),
# however busy it is.
SESSION_TTL = 12 * 3600.0
# 32 random bytes in unpadded base64url.
_TOKEN = re.compile(r"^xrs-[A-Za-z0-9_-]{43}$")
# KeyAuthenticator.forget(FORGET_PREFIX + hash) drops one cached session (it was revoked).
FORGET_PREFIX = "session:"
MASTER_ROLE, MANAGEMENT_ROLE, KEY_ROLE = "master", "management", "key"


def role_of(key: ApiKey) -> str:
    """What a session of the key may do, as the console names it."""
    if key.master:
        return MASTER_ROLE
    return MANAGEMENT_ROLE if key.tier == MANAGEMENT_TIER else KEY_ROLE


def well_formed(token: str) -> bool:
    return _TOKEN.match(token) is not None


def new_token() -> str:
    return SESSION_PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")


@dataclass(frozen=True, slots=True)
class Session:
    """A session as stored, with its key as that key is now (MASTER for the master key's)."""

    key: ApiKey
    created_at: float
    expires_at: float

    @property
    def role(self) -> str:
        return role_of(self.key)


class SessionService:
    """Opens and ends sessions. `announce` tells the other replicas to drop a revoked session
    from their caches (as key changes are announced); `forget` drops it from this one's."""

    def __init__(self, store: SessionStore, *, secret: bytes,
                 forget: Callable[[str], None],
                 announce: Callable[[str], Awaitable[object]] | None = None,
                 wall: Callable[[], float] = time.time, ttl: float = SESSION_TTL) -> None:
        self._store = store
        self._secret = secret
        self._forget = forget
        self._announce = announce
        self._wall = wall
        self._ttl = ttl

    async def create(self, caller: ApiKey) -> tuple[str, Session]:
        """A new session of the caller's key (already authenticated): its token, shown once.
        Sessions that have expired are pruned here."""
        if caller.session_expires_at is not None:
            raise Forbidden("A session cannot open another session: sign in with an API key")
        now = self._wall()
        await self._store.prune(now)
        token = new_token()
        # Whole seconds, rounded down: exact in every store (PostgreSQL keeps microseconds,
        # which would round an expiry up as often as down).
        session = Session(caller, now, float(math.floor(now + self._ttl)))
        await self._store.create(key_hash(self._secret, token), session)
        return token, session

    async def revoke(self, token: str) -> bool:
        """Ends the session (False when there was none); every replica forgets it."""
        if not well_formed(token):
            return False
        hashed = key_hash(self._secret, token)
        revoked = await self._store.delete(hashed)
        self._forget(FORGET_PREFIX + hashed)
        if self._announce is not None:
            await self._announce(FORGET_PREFIX + hashed)
        return revoked
