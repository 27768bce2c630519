"""API keys and what they may do: tiers with their limits, per-key overrides, expiry, allowed
models, allowed client addresses, credit limit, and the keyed hash under which a key is stored
(never the key itself)."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field, replace
from decimal import Decimal

from xrouter_router.domain.addresses import EVERYWHERE, AllowList
from xrouter_router.domain.errors import Forbidden, Unauthenticated
from xrouter_router.domain.pii import policy as pii
from xrouter_router.domain.residency import effective


@dataclass(frozen=True, slots=True)
class Limits:
    """None means unlimited."""

    requests_per_minute: int | None = None
    requests_per_day: int | None = None
    tokens_per_minute: int | None = None
    concurrent: int | None = None


# The origin's tiers (free: 20 req/min, 200 req/day; paid ("pro") up to 100/1000), with the
# concurrency caps the issue sets. Keys may override any of them.
TIERS: dict[str, Limits] = {
    "free": Limits(requests_per_minute=20, requests_per_day=200, concurrent=5),
    "pro": Limits(requests_per_minute=100, requests_per_day=1000, concurrent=20),
    "max": Limits(),
}

# Keys of this tier manage their own account (domain/accounts_service.py).
MANAGEMENT_TIER = "mgmt"


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    account_id: str
    tier: str
    prefix: str
    label: str = ""
    limits: Limits = field(default_factory=Limits)
    credit_limit: Decimal | None = None
    allowed_models: tuple[str, ...] = ()
    # Parsed once, when the record is read: the authenticator caches it with the key.
    allowed_ips: AllowList = EVERYWHERE
    expires_at: float | None = None
    # Its own residency policy ("", "ru" or "any"; domain/residency.py) and its account's (read
    # with the key from the account's plan, so the cached key carries both).
    residency: str = ""
    account_residency: str = ""
    # Its own personal-data guard policy and scope ("" follows its account's; domain/pii/policy.py)
    # and its account's, read with it as the residency is.
    pii_guard: str = ""
    pii_scope: str = ""
    account_pii_guard: str = ""
    account_pii_scope: str = ""
    # Its account's outage allowance (RUB per replica while Redis cannot check credits;
    # domain/outage.py), read with it from the plan; None: the global setting.
    account_outage_allowance: Decimal | None = None
    disabled: bool = False
    created_at: float = 0.0
    # The operator's master key: no limits, no credits, management allowed.
    master: bool = False
    # Set when the key was presented through a console session (domain/sessions.py): when
    # that session ends. The key's own rights are unchanged.
    session_expires_at: float | None = None

    def usable(self, now: float) -> None:
        """Raises Unauthenticated when the key may not be used at `now`."""
        if self.disabled:
            raise Unauthenticated("This API key is disabled")
        if self.expires_at is not None and now >= self.expires_at:
            raise Unauthenticated("This API key has expired")
        if self.session_expires_at is not None and now >= self.session_expires_at:
            raise Unauthenticated("This session has expired: sign in again")

    @property
    def residency_policy(self) -> tuple[str, str]:
        """The residency policy that applies to the key's requests, and where it comes from."""
        return effective(self.residency, self.account_residency)

    @property
    def pii_policy(self) -> pii.PiiPolicy:
        """The personal-data guard policy that applies to the key's requests, and its source."""
        return pii.effective(self.pii_guard, self.pii_scope, self.account_pii_guard,
                             self.account_pii_scope)

    def may_use(self, model_id: str) -> None:
        if self.allowed_models and model_id not in self.allowed_models:
            raise Forbidden(f"This API key may not use model {model_id!r}", param="model")


def with_tier(key: ApiKey, tier: str, overrides: Limits | None = None) -> ApiKey:
    """The key with its tier's limits, then any per-key override that is set."""
    base = TIERS.get(tier, Limits())
    if overrides is not None:
        base = Limits(*(o if o is not None else b for o, b in zip(
            (overrides.requests_per_minute, overrides.requests_per_day,
             overrides.tokens_per_minute, overrides.concurrent),
            (base.requests_per_minute, base.requests_per_day, base.tokens_per_minute,
             base.concurrent), strict=True)))
    return replace(key, tier=tier, limits=base)


def key_hash(secret: bytes, plain: str) -> str:
    """HMAC-SHA256 of the key under the server secret: what the store keeps and looks up."""
    return hmac.new(secret, plain.encode(), hashlib.sha256).hexdigest()


MASTER = ApiKey(id="master", account_id="master", tier="max", prefix="master", label="master key",
                master=True)
