"""The gateway's Prometheus metrics and the ASGI middleware that records them (bounded labels:
route template, method, status class; never a key, user or request id)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.registry import REGISTRY

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
                   Awaitable[None]]

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.requests = Counter("xrouter_gateway_requests_total", "HTTP requests answered",
                                ["route", "method", "status_class"], registry=registry)
        self.duration = Histogram("xrouter_gateway_request_duration_seconds",
                                  "Time to the end of the HTTP response", ["route", "method"],
                                  buckets=BUCKETS, registry=registry)
        self.in_flight = Gauge("xrouter_gateway_requests_in_flight", "HTTP requests in progress",
                               registry=registry)


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: GatewayMetrics, routes: frozenset[str]) -> None:
        self._app = app
        self._m = metrics
        self._routes = frozenset(r for r in routes if "{" not in r)
        # Templated routes are labelled by their template, found by prefix.
        self._prefixes = tuple((r.split("{", 1)[0], r.replace(":path}", "}"))
                               for r in routes if "{" in r)
        # Label lookups take a lock each; the label space is small and bounded, so the
        # children are looked up once and kept.
        self._counters: dict[tuple[str, str, int], Any] = {}
        self._timers: dict[tuple[str, str], Any] = {}

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Message]],
                       send: Callable[[Message], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        path = scope["path"]
        route = path if path in self._routes else self._template(path)
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        started = time.perf_counter()
        self._m.in_flight.inc()
        try:
            await self._app(scope, receive, send_wrapper)
        finally:
            self._m.in_flight.dec()
            method = scope["method"] if scope["method"] in _METHODS else "other"
            key = (route, method, status // 100)
            counter = self._counters.get(key)
            if counter is None:
                counter = self._counters[key] = self._m.requests.labels(
                    route, method, f"{status // 100}xx")
            counter.inc()
            timer = self._timers.get(key[:2])
            if timer is None:
                timer = self._timers[key[:2]] = self._m.duration.labels(route, method)
            timer.observe(time.perf_counter() - started)

    def _template(self, path: str) -> str:
        for prefix, template in self._prefixes:
            if path.startswith(prefix):
                return template
        return "other"
