"""Deployment statistics: EWMA updates, the circuit breaker's states, the routing health tiers,
the in-memory store and a provider's status."""

from __future__ import annotations

import pytest

from xrouter_router.domain.stats import (
    ALPHA,
    BreakerPolicy,
    DeploymentStats,
    InMemoryStats,
    ProviderStatus,
    provider_status,
    updated,
    with_throughput,
)

POLICY = BreakerPolicy()
FRESH = DeploymentStats(provider="a")


def _fail(stats: DeploymentStats, now: float, policy: BreakerPolicy = POLICY) -> DeploymentStats:
    return updated(stats, ok=False, latency_ms=None, now=now, policy=policy)


def _succeed(stats: DeploymentStats, now: float, latency_ms: float | None = None,
             policy: BreakerPolicy = POLICY) -> DeploymentStats:
    return updated(stats, ok=True, latency_ms=latency_ms, now=now, policy=policy)


def _opened_at(now: float) -> DeploymentStats:
    """Three failures in a row, the last one at `now`: the breaker opened then."""
    return _fail(_fail(_fail(FRESH, now - 2), now - 1), now)


# ---- EWMA --------------------------------------------------------------------------------

def test_the_defaults_are_three_failures_and_a_thirty_second_cool_down() -> None:
    assert (POLICY.failures_to_open, POLICY.cooldown) == (3, 30.0)
    assert ALPHA == 0.3


def test_the_first_sample_is_taken_as_it_is() -> None:
    assert _succeed(FRESH, 5.0, 100.0) == DeploymentStats(
        provider="a", samples=1, latency_ms=100.0, success=1.0, updated=5.0)


def test_later_samples_move_the_averages_by_alpha() -> None:
    stats = _succeed(_succeed(FRESH, 1.0, 100.0), 2.0, 200.0)
    # 100 + 0.3 * (200 - 100)
    assert stats == DeploymentStats(provider="a", samples=2, latency_ms=130.0, success=1.0,
                                    updated=2.0)
    stats = _succeed(stats, 3.0, 80.0)
    # 130 + 0.3 * (80 - 130)
    assert stats.latency_ms == 115.0


def test_a_failure_lowers_success_and_leaves_latency_alone() -> None:
    stats = updated(_succeed(FRESH, 1.0, 100.0), ok=False, latency_ms=900.0, now=2.0,
                    policy=POLICY)
    # success: 1 + 0.3 * (0 - 1)
    assert stats == DeploymentStats(provider="a", samples=2, latency_ms=100.0, success=0.7,
                                    failures=1, last_failure=2.0, updated=2.0)


def test_a_success_without_a_latency_keeps_the_latency_and_raises_success() -> None:
    stats = _succeed(_fail(_succeed(FRESH, 1.0, 100.0), 2.0), 3.0)
    # success: 0.7 + 0.3 * (1 - 0.7)
    assert stats == DeploymentStats(provider="a", samples=3, latency_ms=100.0,
                                    success=0.7899999999999999, failures=0, last_failure=2.0,
                                    updated=3.0)


def test_throughput_is_an_ewma_of_its_own() -> None:
    stats = with_throughput(with_throughput(FRESH, 50.0), 150.0)
    # 50 + 0.3 * (150 - 50)
    assert stats == DeploymentStats(provider="a", throughput=80.0)


# ---- circuit breaker ---------------------------------------------------------------------

def test_the_breaker_opens_at_the_third_failure_in_a_row() -> None:
    two = _fail(_fail(FRESH, 10.0), 11.0)
    assert two.breaker(11.0, POLICY) == "closed"
    assert two.open_since is None
    three = _fail(two, 12.0)
    assert three.breaker(12.0, POLICY) == "open"
    assert (three.failures, three.open_since) == (3, 12.0)


def test_a_success_resets_the_count_of_failures_in_a_row() -> None:
    stats = _fail(_fail(_succeed(_fail(_fail(FRESH, 1.0), 2.0), 3.0), 4.0), 5.0)
    assert stats.failures == 2
    assert stats.breaker(5.0, POLICY) == "closed"


def test_an_open_breaker_turns_half_open_when_the_cool_down_has_passed() -> None:
    stats = _opened_at(100.0)
    assert stats.breaker(129.999, POLICY) == "open"
    assert stats.breaker(130.0, POLICY) == "half_open"
    assert stats.breaker(1000.0, POLICY) == "half_open"


def test_a_failure_while_open_keeps_the_time_it_opened() -> None:
    stats = _fail(_opened_at(100.0), 110.0)
    assert (stats.failures, stats.open_since) == (4, 100.0)
    assert stats.breaker(130.0, POLICY) == "half_open"


def test_one_failure_in_half_open_reopens_the_breaker_from_that_moment() -> None:
    stats = _fail(_opened_at(100.0), 135.0)
    assert (stats.failures, stats.open_since) == (4, 135.0)
    assert stats.breaker(135.0, POLICY) == "open"
    assert stats.breaker(164.999, POLICY) == "open"
    assert stats.breaker(165.0, POLICY) == "half_open"


def test_a_success_in_half_open_closes_the_breaker() -> None:
    stats = _succeed(_opened_at(100.0), 131.0, 250.0)
    assert (stats.failures, stats.open_since) == (0, None)
    assert stats.breaker(131.0, POLICY) == "closed"
    assert stats.latency_ms == 250.0


def test_a_custom_policy_opens_sooner_and_cools_down_faster() -> None:
    policy = BreakerPolicy(failures_to_open=1, cooldown=5.0)
    stats = _fail(FRESH, 10.0, policy)
    assert stats.open_since == 10.0
    assert stats.breaker(14.5, policy) == "open"
    assert stats.breaker(15.0, policy) == "half_open"


# ---- routing health tiers ----------------------------------------------------------------

def test_health_tiers_follow_the_breaker_and_recent_failures() -> None:
    assert POLICY.recent_window == 10.0
    assert FRESH.health(0.0, POLICY) == "healthy"
    once = _fail(_succeed(FRESH, 1.0, 100.0), 50.0)
    assert once.health(59.999, POLICY) == "recently_failed"
    assert once.health(60.0, POLICY) == "healthy"
    assert _succeed(once, 51.0).health(51.0, POLICY) == "healthy"
    opened = _opened_at(100.0)
    assert opened.health(101.0, POLICY) == "open"
    assert opened.health(130.0, POLICY) == "half_open"


# ---- InMemoryStats -----------------------------------------------------------------------

async def test_the_store_keeps_statistics_per_deployment_with_its_provider() -> None:
    store = InMemoryStats()
    assert store.policy == BreakerPolicy()
    await store.record("m@a", "a", ok=True, latency_ms=100.0, now=1.0)
    await store.record("f@a", "a", ok=False, latency_ms=None, now=2.0)
    await store.record("m@a", "a", ok=True, latency_ms=200.0, now=3.0)
    assert await store.all() == {
        "m@a": DeploymentStats(provider="a", samples=2, latency_ms=130.0, success=1.0, updated=3.0),
        "f@a": DeploymentStats(provider="a", samples=1, success=0.0, failures=1, last_failure=2.0,
                               updated=2.0),
    }


async def test_a_snapshot_holds_only_the_deployments_asked_for_that_have_statistics() -> None:
    store = InMemoryStats()
    await store.record("m@a", "a", ok=True, latency_ms=100.0, now=1.0)
    await store.record("m@b", "b", ok=True, latency_ms=100.0, now=1.0)
    assert await store.snapshot(["m@a", "m@c"]) == {
        "m@a": DeploymentStats(provider="a", samples=1, latency_ms=100.0, success=1.0, updated=1.0)}
    assert await store.snapshot([]) == {}


async def test_the_store_opens_breakers_by_its_policy() -> None:
    store = InMemoryStats(BreakerPolicy(failures_to_open=2, cooldown=10.0))
    await store.record("m@a", "a", ok=False, latency_ms=None, now=1.0)
    await store.record("m@a", "a", ok=False, latency_ms=None, now=2.0)
    stats = (await store.all())["m@a"]
    assert stats.open_since == 2.0
    assert stats.breaker(12.0, store.policy) == "half_open"


async def test_a_non_retryable_outcome_recorded_as_ok_counts_as_a_success() -> None:
    store = InMemoryStats()
    for now in (1.0, 2.0, 3.0):
        await store.record("m@a", "a", ok=False, latency_ms=None, now=now)
    await store.record("m@a", "a", ok=True, latency_ms=None, now=40.0)
    stats = (await store.all())["m@a"]
    assert (stats.failures, stats.open_since, stats.latency_ms) == (0, None, None)
    assert stats.breaker(40.0, store.policy) == "closed"


async def test_throughput_is_recorded_only_for_a_deployment_with_statistics() -> None:
    store = InMemoryStats()
    await store.record_throughput("m@a", 50.0)
    assert await store.all() == {}
    await store.record("m@a", "a", ok=True, latency_ms=100.0, now=1.0)
    await store.record_throughput("m@a", 50.0)
    await store.record_throughput("m@a", 150.0)
    assert (await store.all())["m@a"].throughput == 80.0


# ---- provider status ---------------------------------------------------------------------

def _closed(success: float, latency_ms: float | None, updated_at: float) -> DeploymentStats:
    return DeploymentStats(provider="p", samples=10, latency_ms=latency_ms, success=success,
                           updated=updated_at)


def test_a_provider_without_samples_is_unknown() -> None:
    assert provider_status("p", [], 100.0, POLICY) == ProviderStatus("p", "unknown", None, None, 0.0)
    assert provider_status("p", [DeploymentStats(provider="p")], 100.0, POLICY) == ProviderStatus(
        "p", "unknown", None, None, 0.0)


def test_a_provider_with_closed_breakers_and_high_success_is_operational() -> None:
    deployments = [_closed(1.0, 100.0, 50.0), _closed(0.9, 300.0, 70.0), DeploymentStats(provider="p")]
    # success (1.0 + 0.9) / 2 = 0.95 is not below the 0.95 threshold
    assert provider_status("p", deployments, 100.0, POLICY) == ProviderStatus(
        "p", "operational", 200.0, 0.95, 70.0)


def test_a_provider_with_low_success_is_degraded() -> None:
    deployments = [_closed(1.0, 100.0, 50.0), _closed(0.5, None, 60.0)]
    assert provider_status("p", deployments, 100.0, POLICY) == ProviderStatus(
        "p", "degraded", 100.0, 0.75, 60.0)


@pytest.mark.parametrize("now", [100.0, 150.0], ids=["open", "half_open"])
def test_a_provider_with_one_breaker_not_closed_is_degraded(now: float) -> None:
    broken = DeploymentStats(provider="p", samples=3, success=1.0, failures=3, open_since=99.0,
                             updated=99.0)
    assert provider_status("p", [_closed(1.0, 100.0, 50.0), broken], now, POLICY) == ProviderStatus(
        "p", "degraded", 100.0, 1.0, 99.0)


def test_a_provider_whose_breakers_are_all_open_is_down() -> None:
    broken = DeploymentStats(provider="p", samples=3, success=0.343, failures=3, open_since=90.0,
                             updated=90.0)
    assert provider_status("p", [broken, broken], 100.0, POLICY) == ProviderStatus(
        "p", "down", None, 0.343, 90.0)


def test_a_provider_whose_only_breaker_is_half_open_is_degraded_not_down() -> None:
    broken = DeploymentStats(provider="p", samples=3, success=0.343, failures=3, open_since=60.0,
                             updated=60.0)
    assert provider_status("p", [broken], 100.0, POLICY).status == "degraded"
