"""The router's Prometheus metrics: the Observer the core reports to, and the process-level
gauges. Label values are bounded (catalog models, configured providers and deployments, fixed
outcome sets); never a key, account, user or request id."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.registry import REGISTRY

from xrouter_common.labelled import Labelled
from xrouter_common.memory_limit import MemoryLimitCollector
from xrouter_router.domain.catalog import Deployment
from xrouter_router.domain.keys import ApiKey
from xrouter_router.domain.types import RateWindow, Usage

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                   20.0, 30.0, 60.0)
# A key is near its rate limit when less than this share of its tightest window is left.
NEAR_LIMIT = 0.2
HEALTH_VALUES = {"healthy": 0.0, "recently_failed": 1.0, "half_open": 2.0, "open": 3.0}


class RouterMetrics:
    """Implements domain.observe.Observer."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.registry = registry
        self.generations = Counter(
            "xrouter_router_generations_total", "Requests served, by model, provider and outcome",
            ["model", "provider", "outcome", "streamed"], registry=registry)
        self.attempts = Counter(
            "xrouter_router_provider_attempts_total", "Provider attempts by outcome",
            ["provider", "outcome"], registry=registry)
        self.attempt_seconds = Histogram(
            "xrouter_router_provider_attempt_duration_seconds",
            "Time of a provider attempt (to the first byte when streaming)", ["provider"],
            buckets=LATENCY_BUCKETS, registry=registry)
        self.failovers = Counter(
            "xrouter_router_failovers_total", "Attempts beyond the first, by model",
            ["model"], registry=registry)
        self.health = Gauge(
            "xrouter_router_deployment_health",
            "Routing tier: 0 healthy, 1 recently failed, 2 half-open, 3 breaker open",
            ["deployment", "provider"], registry=registry)
        self.tokens = Counter(
            "xrouter_router_tokens_total", "Tokens by model, provider, kind and source",
            ["model", "provider", "kind", "source"], registry=registry)
        self.cost = Counter(
            "xrouter_router_cost_rub_total", "Cost of generations in RUB", ["model", "provider"],
            registry=registry)
        self.implausible = Counter(
            "xrouter_router_implausible_usage_total",
            "Provider-reported token counts that could not be true (the estimate was charged)",
            ["provider"], registry=registry)
        self.loop_lag = Gauge(
            "xrouter_router_event_loop_lag_seconds", "How late the event loop wakes up",
            registry=registry)
        self.near_limit = Counter(
            "xrouter_router_rate_limit_near",
            "Admitted requests after which the key's tightest request window had less than "
            f"{int(NEAR_LIMIT * 100)}% left, by the key's tier (never the key)",
            ["tier"], registry=registry)
        registry.register(MemoryLimitCollector())
        # What each request labels, looked up once per label set.
        self._attempts, self._attempt_seconds = Labelled(self.attempts), Labelled(self.attempt_seconds)
        self._health, self._generations = Labelled(self.health), Labelled(self.generations)
        self._tokens, self._cost = Labelled(self.tokens), Labelled(self.cost)

    def attempt(self, deployment: Deployment, outcome: str, seconds: float, health: str) -> None:
        self._attempts(deployment.provider, outcome).inc()
        self._attempt_seconds(deployment.provider).observe(seconds)
        self._health(deployment.id, deployment.provider).set(HEALTH_VALUES.get(health, 0.0))

    def generation(self, model: str, provider: str, *, outcome: str, streamed: bool,
                   attempts: int, usage: Usage | None) -> None:
        self._generations(model, provider, outcome, "true" if streamed else "false").inc()
        if attempts > 1:
            self.failovers.labels(model).inc(attempts - 1)
        if usage is None:
            return
        t = usage.tokens
        source = "estimated" if t.estimated else "native"
        for kind, count in (("prompt", t.prompt), ("completion", t.completion),
                            ("cached", t.cached), ("cache_write", t.cache_write),
                            ("reasoning", t.reasoning)):
            if count:
                self._tokens(model, provider, kind, source).inc(count)
        if usage.cost:
            self._cost(model, provider).inc(float(usage.cost))

    def rate_window(self, key: ApiKey, window: RateWindow) -> None:
        """Billing's on_window: count the admissions that leave a key near its limit."""
        if window.limit > 0 and window.remaining < window.limit * NEAR_LIMIT:
            self.near_limit.labels(key.tier).inc()

    def implausible_usage(self, provider: str, reason: str) -> None:
        self.implausible.labels(provider).inc()
