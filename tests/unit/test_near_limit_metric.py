"""The count of admissions that leave a key near its rate limit (alert XRouterKeysNearRateLimit):
by the key's tier, at less than 20% of the tightest window left."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from xrouter_router.domain.keys import ApiKey
from xrouter_router.domain.types import RateWindow
from xrouter_router.telemetry import RouterMetrics


def test_only_windows_with_less_than_a_fifth_left_count_by_tier() -> None:
    registry = CollectorRegistry()
    metrics = RouterMetrics(registry)
    pro = ApiKey(id="k1", account_id="a", tier="pro", prefix="p")
    free = ApiKey(id="k2", account_id="a", tier="free", prefix="p")
    for remaining in (100, 21, 20, 19, 0):  # of 100: only 19 and 0 are under 20%
        metrics.rate_window(pro, RateWindow(100, remaining, 0.0))
    metrics.rate_window(free, RateWindow(5, 0, 0.0))
    metrics.rate_window(free, RateWindow(0, 0, 0.0))  # no limit to be near
    sample = registry.get_sample_value
    assert sample("xrouter_router_rate_limit_near_total", {"tier": "pro"}) == 2.0
    assert sample("xrouter_router_rate_limit_near_total", {"tier": "free"}) == 1.0
