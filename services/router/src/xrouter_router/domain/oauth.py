"""OAuth PKCE (OpenRouter's flow, docs/oauth.md): an account's management key approves an app,
which gets a single-use code bound to its PKCE challenge; exchanging the code with the verifier
makes a new key of that account, labelled with the app's host. Codes live 10 minutes, are stored
only as keyed hashes, and are taken (deleted) by their first exchange, right or wrong."""

from __future__ import annotations

import hmac
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from xrouter_router.domain.accounts_service import AccountsService, NewKey, is_manager
from xrouter_router.domain.errors import Forbidden, InvalidRequest
from xrouter_router.domain.keys import ApiKey, key_hash
from xrouter_router.domain.pkce import METHODS, AuthGrant, challenge_of, new_code

if TYPE_CHECKING:
    from xrouter_router.domain.ports import AuthCodeStore, KeyStore

CODE_TTL = 600.0
_MAX_HOST = 260  # a DNS name (253) and a port
_INVALID = "Invalid code or code_verifier"


class AuthCodes:
    """Issues and exchanges codes. Who may approve: a management key of the account (or its
    session); a plain key cannot make keys, and the master key belongs to no account."""

    def __init__(self, store: AuthCodeStore, keys: KeyStore, accounts: AccountsService, *,
                 secret: bytes, wall: Callable[[], float] = time.time,
                 ttl: float = CODE_TTL) -> None:
        self._store = store
        self._keys = keys
        self._accounts = accounts
        self._secret = secret
        self._wall = wall
        self._ttl = ttl

    async def issue(self, caller: ApiKey, app_host: str, challenge: str,
                    method: str) -> tuple[str, float]:
        """A new code and its expiry. Expired codes are pruned here."""
        if caller.master:
            raise Forbidden("The master key belongs to no account: sign in with the management "
                            "key of the account the app should use")
        if not is_manager(caller):
            raise Forbidden("Authorizing an app makes a new key of your account: sign in with "
                            "the account's management key")
        if method not in METHODS:
            raise InvalidRequest(f"code_challenge_method must be one of {list(METHODS)}",
                                 param="code_challenge_method")
        if not challenge or not app_host or len(app_host) > _MAX_HOST:
            raise InvalidRequest("code_challenge and the app's host are required",
                                 param="code_challenge")
        now = self._wall()
        await self._store.prune(now)
        code = new_code()
        expires = float(math.floor(now + self._ttl))  # whole seconds, as sessions' expiries
        await self._store.create(key_hash(self._secret, code), AuthGrant(
            caller.id, caller.account_id, app_host, challenge, method, now, expires))
        return code, expires

    async def exchange(self, code: str, verifier: str, method: str) -> NewKey:
        """The new key; Forbidden for an unknown, used or expired code, a wrong verifier or an
        approving key no longer usable, InvalidRequest for a method other than the
        challenge's. The code is taken first, so that two exchanges never both succeed."""
        grant = await self._store.take(key_hash(self._secret, code)) if code else None
        now = self._wall()
        if grant is None or now >= grant.expires_at:
            raise Forbidden(_INVALID, param="code")
        if method != grant.method:
            raise InvalidRequest("Invalid code_challenge_method: use the method of the "
                                 "authorization request", param="code_challenge_method")
        if not hmac.compare_digest(challenge_of(verifier, method).encode(),
                                   grant.challenge.encode()):
            raise Forbidden(_INVALID, param="code_verifier")
        approver = await self._keys.get(grant.key_id)
        if approver is None or approver.disabled or (
                approver.expires_at is not None and now >= approver.expires_at):
            raise Forbidden(_INVALID, param="code")
        plan = await self._accounts.plan(approver, approver.account_id)
        return await self._accounts.create_key(approver, tier=plan.plan.tier,
                                               label=grant.app_host)
