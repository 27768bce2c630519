"""Account plans: the highest tier and the limits an account's keys may have, set by the
operator (master key). A management key of the account cannot create a key above its plan, nor
change a key's limits beyond it; the master key is not bound by plans."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from decimal import Decimal

from xrouter_router.domain import residency
from xrouter_router.domain.errors import Forbidden, InvalidRequest
from xrouter_router.domain.keys import TIERS, ApiKey, Limits
from xrouter_router.domain.pii import policy as pii

# Tiers from lowest to highest. A management key has no limits of its own, so it ranks with max.
TIER_ORDER = ("free", "pro", "max")
_RANK = {**{tier: rank for rank, tier in enumerate(TIER_ORDER)}, "mgmt": len(TIER_ORDER) - 1}
_WHAT = {"requests_per_minute": "requests per minute", "requests_per_day": "requests per day",
         "tokens_per_minute": "tokens per minute", "concurrent": "concurrent requests"}


@dataclass(frozen=True, slots=True)
class Plan:
    """`tier` is the highest tier; `limits` are ceilings, each unset one being the tier's own
    limit (so Plan("pro") allows at most pro's limits, and Plan("max") none)."""

    tier: str = "free"
    limits: Limits = field(default_factory=Limits)
    # The account's residency policy (domain/residency.py): its keys' unless a key sets its own;
    # a management key of the account cannot give a key another one.
    residency: str = ""
    # The account's personal-data guard policy and scope (domain/pii/policy.py), likewise.
    pii_guard: str = ""
    pii_scope: str = ""
    # RUB each replica may admit for the account's paid requests while Redis cannot check
    # credits (domain/outage.py); None: XROUTER_CREDITS_OUTAGE_ALLOWANCE applies.
    outage_allowance: Decimal | None = None

    def __post_init__(self) -> None:
        allowance = self.outage_allowance
        if allowance is not None and (not allowance.is_finite() or allowance < 0):
            raise InvalidRequest("outage_allowance must be a non-negative decimal",
                                 param="outage_allowance")
        if residency.policy(self.residency) != self.residency:
            raise InvalidRequest("residency must be given in lower case", param="residency")
        if pii.guard(self.pii_guard) != self.pii_guard or pii.scope(self.pii_scope) != self.pii_scope:
            raise InvalidRequest("pii_guard and pii_scope must be given in lower case",
                                 param="pii_guard")
        if self.tier not in TIER_ORDER:
            raise InvalidRequest(f"a plan's tier must be one of {list(TIER_ORDER)}", param="tier")
        for f in fields(Limits):
            value = getattr(self.limits, f.name)
            if value is not None and value < 0:
                raise InvalidRequest(f"{f.name} must be >= 0", param=f.name)

    @property
    def ceilings(self) -> Limits:
        """The most any key of the account may have (None: no ceiling)."""
        base = TIERS[self.tier]
        return Limits(**{f.name: getattr(self.limits, f.name) if getattr(
            self.limits, f.name) is not None else getattr(base, f.name) for f in fields(Limits)})

    def admit(self, key: ApiKey) -> None:
        """Forbidden, naming what is over, when `key` (its tier and its effective limits) is
        above the plan."""
        if _RANK.get(key.tier, len(TIER_ORDER)) > _RANK[self.tier]:
            raise Forbidden(f"The account's plan allows keys up to tier {self.tier!r}; "
                            f"{key.tier!r} is above it", param="tier")
        if self.residency and key.residency not in ("", self.residency):
            raise Forbidden(f"The account's plan sets residency {self.residency!r}; only the "
                            f"operator may give a key {key.residency!r}", param="residency")
        loosened = pii.loosens(self.pii_guard, self.pii_scope, key.pii_guard, key.pii_scope)
        if loosened:
            raise Forbidden(f"The account's plan sets pii_guard {self.pii_guard!r} with scope "
                            f"{self.pii_scope or pii.FOREIGN!r}; only the operator may give a "
                            f"key a looser {loosened}", param=loosened)
        ceilings = self.ceilings
        for f in fields(Limits):
            ceiling, asked = getattr(ceilings, f.name), getattr(key.limits, f.name)
            if ceiling is not None and (asked is None or asked > ceiling):
                raise Forbidden(
                    f"The account's plan allows at most {ceiling} {_WHAT[f.name]} per key; "
                    f"this key would have {'no limit' if asked is None else asked}",
                    param=f.name)
