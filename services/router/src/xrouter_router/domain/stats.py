"""Live deployment statistics from real traffic: EWMA latency, throughput and success, and a
circuit breaker per deployment. A breaker re-closes only through real requests (half-open
after the cool-down), never through synthetic calls that would cost money.

`StatsStore` is the port; `InMemoryStats` is the per-process implementation (the embedded mode,
and each replica until the Redis-backed store shares them across replicas).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Protocol

ALPHA = 0.3


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    failures_to_open: int = 3
    cooldown: float = 30.0
    # A deployment that failed within this many seconds is tried after those that did not.
    recent_window: float = 10.0


@dataclass(frozen=True, slots=True)
class DeploymentStats:
    provider: str = ""
    samples: int = 0
    latency_ms: float | None = None
    throughput: float | None = None
    success: float | None = None
    failures: int = 0
    open_since: float | None = None
    last_failure: float | None = None
    updated: float = 0.0

    def health(self, now: float, policy: BreakerPolicy) -> str:
        """healthy | recently_failed | half_open | open: the routing tier of the deployment."""
        breaker = self.breaker(now, policy)
        if breaker != "closed":
            return breaker
        if self.failures and self.last_failure is not None \
                and now - self.last_failure < policy.recent_window:
            return "recently_failed"
        return "healthy"

    def breaker(self, now: float, policy: BreakerPolicy) -> str:
        """closed | open | half_open (open, but the cool-down passed: real traffic may probe)."""
        if self.open_since is None:
            return "closed"
        return "half_open" if now - self.open_since >= policy.cooldown else "open"


def _ewma(old: float | None, new: float) -> float:
    return new if old is None else old + ALPHA * (new - old)


def updated(stats: DeploymentStats, *, ok: bool, latency_ms: float | None, now: float,
            policy: BreakerPolicy) -> DeploymentStats:
    """The statistics after one attempt. `ok` is False only for failures that are the
    deployment's fault (timeouts, 5xx, 429, bad credentials, garbage)."""
    latency = stats.latency_ms if latency_ms is None or not ok else _ewma(stats.latency_ms, latency_ms)
    success = _ewma(stats.success, 1.0 if ok else 0.0)
    if ok:
        return replace(stats, samples=stats.samples + 1, latency_ms=latency, success=success,
                       failures=0, open_since=None, updated=now)
    failures = stats.failures + 1
    was = stats.breaker(now, policy)
    opened = stats.open_since
    if was == "half_open" or (was == "closed" and failures >= policy.failures_to_open):
        opened = now
    return replace(stats, samples=stats.samples + 1, success=success, failures=failures,
                   open_since=opened, last_failure=now, updated=now)


def with_throughput(stats: DeploymentStats, tokens_per_second: float) -> DeploymentStats:
    return replace(stats, throughput=_ewma(stats.throughput, tokens_per_second))


class StatsStore(Protocol):
    """Where deployment statistics live; async so that a shared (Redis) store fits."""

    @property
    def policy(self) -> BreakerPolicy: ...

    async def snapshot(self, deployments: Iterable[str]) -> Mapping[str, DeploymentStats]: ...

    async def record(self, deployment: str, provider: str, *, ok: bool,
                     latency_ms: float | None, now: float) -> None: ...

    async def record_throughput(self, deployment: str, tokens_per_second: float) -> None: ...

    async def all(self) -> Mapping[str, DeploymentStats]: ...


class InMemoryStats:
    def __init__(self, policy: BreakerPolicy | None = None) -> None:
        self._policy = policy or BreakerPolicy()
        self._stats: dict[str, DeploymentStats] = {}

    @property
    def policy(self) -> BreakerPolicy:
        return self._policy

    async def snapshot(self, deployments: Iterable[str]) -> Mapping[str, DeploymentStats]:
        return {d: self._stats[d] for d in deployments if d in self._stats}

    async def record(self, deployment: str, provider: str, *, ok: bool,
                     latency_ms: float | None, now: float) -> None:
        old = self._stats.get(deployment) or DeploymentStats(provider=provider)
        self._stats[deployment] = updated(old, ok=ok, latency_ms=latency_ms, now=now,
                                          policy=self._policy)

    async def record_throughput(self, deployment: str, tokens_per_second: float) -> None:
        old = self._stats.get(deployment)
        if old is not None:
            self._stats[deployment] = with_throughput(old, tokens_per_second)

    async def all(self) -> Mapping[str, DeploymentStats]:
        return dict(self._stats)


@dataclass(frozen=True, slots=True)
class ProviderStatus:
    name: str
    status: str  # operational | degraded | down | unknown
    latency_ms: float | None
    success_rate: float | None
    updated: float


def provider_status(name: str, deployments: Iterable[DeploymentStats], now: float,
                    policy: BreakerPolicy) -> ProviderStatus:
    """A provider's status from its deployments' statistics."""
    seen = [d for d in deployments if d.samples]
    if not seen:
        return ProviderStatus(name, "unknown", None, None, 0.0)
    breakers = [d.breaker(now, policy) for d in seen]
    success = sum(d.success or 0.0 for d in seen) / len(seen)
    latencies = [d.latency_ms for d in seen if d.latency_ms is not None]
    if all(b == "open" for b in breakers):
        status = "down"
    elif any(b != "closed" for b in breakers) or success < 0.95:
        status = "degraded"
    else:
        status = "operational"
    return ProviderStatus(name, status, sum(latencies) / len(latencies) if latencies else None,
                          success, max(d.updated for d in seen))
