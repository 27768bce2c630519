"""Account plans: the ceilings a plan sets and the keys it admits, with the messages a
management key gets when it asks for more."""

from __future__ import annotations

from decimal import Decimal

import pytest

from xrouter_router.domain.errors import ErrorKind, Forbidden, InvalidRequest
from xrouter_router.domain.keys import ApiKey, Limits, with_tier
from xrouter_router.domain.plans import Plan


def _key(tier: str, **limits: int) -> ApiKey:
    return with_tier(ApiKey(id="k", account_id="a", tier=tier, prefix="p"), tier,
                     Limits(**limits) if limits else None)


def test_unset_ceilings_are_the_tiers_own() -> None:
    assert Plan().ceilings == Limits(requests_per_minute=20, requests_per_day=200, concurrent=5)
    assert Plan("pro", Limits(requests_per_minute=50)).ceilings == Limits(
        requests_per_minute=50, requests_per_day=1000, concurrent=20)
    assert Plan("max").ceilings == Limits()


@pytest.mark.parametrize(("plan", "key"), [
    (Plan("pro"), _key("free")),
    (Plan("pro"), _key("pro")),
    (Plan("pro"), _key("pro", requests_per_minute=10, tokens_per_minute=10**9)),
    (Plan("max"), _key("max")),
    (Plan("max"), _key("mgmt")),
    (Plan("max", Limits(concurrent=3)), _key("pro", concurrent=3)),
])
def test_keys_within_the_plan_are_admitted(plan: Plan, key: ApiKey) -> None:
    plan.admit(key)


@pytest.mark.parametrize(("plan", "key", "param", "message"), [
    (Plan(), _key("pro"), "tier", "The account's plan allows keys up to tier 'free'; 'pro' is above it"),
    (Plan("pro"), _key("max"), "tier", "The account's plan allows keys up to tier 'pro'; 'max' is above it"),
    (Plan("pro"), _key("mgmt"), "tier",
     "The account's plan allows keys up to tier 'pro'; 'mgmt' is above it"),
    (Plan("pro"), _key("pro", requests_per_minute=101), "requests_per_minute",
     "The account's plan allows at most 100 requests per minute per key; this key would have 101"),
    (Plan("max", Limits(tokens_per_minute=1000)), _key("max"), "tokens_per_minute",
     "The account's plan allows at most 1000 tokens per minute per key; this key would have no limit"),
    (Plan("max", Limits(concurrent=2)), _key("free"), "concurrent",
     "The account's plan allows at most 2 concurrent requests per key; this key would have 5"),
])
def test_keys_above_the_plan_are_forbidden_naming_what_is_over(plan: Plan, key: ApiKey, param: str,
                                                                message: str) -> None:
    with pytest.raises(Forbidden) as info:
        plan.admit(key)
    assert (info.value.message, info.value.param, info.value.kind) == (
        message, param, ErrorKind.FORBIDDEN)


def test_a_plan_is_one_of_the_tiers_with_non_negative_ceilings() -> None:
    with pytest.raises(InvalidRequest, match=r"^a plan's tier must be one of \['free', 'pro', 'max'\]$"):
        Plan("mgmt")
    with pytest.raises(InvalidRequest, match=r"^concurrent must be >= 0$"):
        Plan("pro", Limits(concurrent=-1))


def test_a_plans_outage_allowance_is_a_non_negative_finite_decimal() -> None:
    assert Plan("pro", outage_allowance=Decimal("0.5")).outage_allowance == Decimal("0.5")
    assert Plan("pro").outage_allowance is None  # the global setting
    for bad in (Decimal(-1), Decimal("NaN"), Decimal("Infinity")):
        with pytest.raises(InvalidRequest) as info:
            Plan("pro", outage_allowance=bad)
        assert info.value.param == "outage_allowance"
