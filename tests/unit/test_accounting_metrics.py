"""The degraded-mode metrics read the accounting components when Prometheus scrapes."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from xrouter_router import accounting_metrics


@dataclass
class Component:
    errors: int = 0
    degraded: int = 0


@dataclass
class Guard(Component):
    deferred: int = 0


def test_counts_and_gauges_per_component() -> None:
    registry = CollectorRegistry()
    limits, credits = Component(errors=3, degraded=2), Guard(errors=1, degraded=1, deferred=4)
    collector = accounting_metrics.register(registry, {"limits": limits, "credits": credits,
                                                       "plain": object()})
    value = registry.get_sample_value
    assert value("xrouter_router_redis_errors_total", {"component": "limits"}) == 3
    assert value("xrouter_router_degraded_decisions_total", {"component": "credits"}) == 1
    assert value("xrouter_router_redis_errors_total", {"component": "plain"}) is None
    assert value("xrouter_router_deferred_charges") == 4
    assert value("xrouter_router_ledger_backlog") is None  # embedded mode: no stream ledger
    limits.degraded, credits.deferred, collector.backlog = 7, 0, 12
    assert value("xrouter_router_degraded_decisions_total", {"component": "limits"}) == 7
    assert value("xrouter_router_deferred_charges") == 0
    assert value("xrouter_router_ledger_backlog") == 12
