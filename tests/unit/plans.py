"""Shared by the routing tests: readers of an attempt plan, DeploymentStats in given health
states, and a tool to ask for."""

from __future__ import annotations

from typing import Any

from xrouter_router.domain.routing import Plan
from xrouter_router.domain.stats import DeploymentStats
from xrouter_router.domain.types import ProviderPreferences, Tool

TOOL = Tool(name="f", parameters_json=b'{"type":"object"}')


def _pairs(route: Plan) -> list[tuple[str, str]]:
    return [(c.model.id, c.deployment.provider) for c in route.candidates]


def _providers(route: Plan) -> list[str]:
    return [c.deployment.provider for c in route.candidates]


def _first(route: Plan) -> str:
    return route.candidates[0].deployment.provider


def _prefs(**kwargs: Any) -> ProviderPreferences:
    return ProviderPreferences(**kwargs)


def _open(since: float) -> DeploymentStats:
    """Statistics of a deployment whose breaker opened at `since` (three failures in a row)."""
    return DeploymentStats(provider="x", samples=3, success=0.343, failures=3, open_since=since,
                           last_failure=since, updated=since)


def _failed_once(at: float) -> DeploymentStats:
    return DeploymentStats(provider="x", samples=2, success=0.7, failures=1, last_failure=at,
                           updated=at)


def _measured(latency_ms: float | None = None, throughput: float | None = None) -> DeploymentStats:
    return DeploymentStats(provider="x", samples=5, latency_ms=latency_ms, throughput=throughput,
                           success=1.0, updated=1.0)
