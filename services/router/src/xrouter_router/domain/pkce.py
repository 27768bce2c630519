"""PKCE's pure parts (RFC 7636, OpenRouter's flow; domain/oauth.py issues and exchanges the
codes): what a code stands for, new codes, and the challenge a verifier answers."""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass

METHODS = ("S256", "plain")


@dataclass(frozen=True, slots=True)
class AuthGrant:
    """What a code stands for: the approving key, its account, the app and the challenge."""

    key_id: str
    account_id: str
    app_host: str
    challenge: str
    method: str
    created_at: float
    expires_at: float


def new_code() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")


def challenge_of(verifier: str, method: str) -> str:
    """The challenge a verifier answers: BASE64URL(SHA256(verifier)) unpadded, or itself."""
    if method == "plain":
        return verifier
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")
