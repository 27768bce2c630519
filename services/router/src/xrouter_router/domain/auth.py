"""Who is calling: principals, and the master-key authenticator used until the key store lands."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from xrouter_router.domain.errors import Unauthenticated


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: str
    account_id: str


class MasterKeyAuthenticator:
    """Accepts exactly one key (XROUTER_MASTER_KEY), compared in constant time."""

    def __init__(self, master_key: str) -> None:
        if not master_key:
            raise ValueError("the master key must not be empty")
        self._digest = hashlib.sha256(master_key.encode()).digest()
        self._principal = Principal(key_id="master", account_id="master")

    async def authenticate(self, api_key: str) -> Principal:
        if not api_key:
            raise Unauthenticated("Missing API key: send 'Authorization: Bearer <key>'")
        digest = hashlib.sha256(api_key.encode()).digest()
        if not hmac.compare_digest(digest, self._digest):
            raise Unauthenticated("Invalid API key")
        return self._principal
