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
        self._routes = routes

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Message]],
                       send: Callable[[Message], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        path = scope["path"]
        route = path if path in self._routes else "other"
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
            method = scope["method"]
            self._m.requests.labels(route, method, f"{status // 100}xx").inc()
            self._m.duration.labels(route, method).observe(time.perf_counter() - started)
