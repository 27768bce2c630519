"""The gateway's Prometheus metrics and the ASGI middleware that records them (bounded labels:
route template, method, status class; never a key, user or request id)."""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess
from prometheus_client.registry import REGISTRY

from xrouter_common.labelled import Labelled
from xrouter_common.memory_limit import MemoryLimitCollector

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
                   Awaitable[None]]

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


SIZE_BUCKETS = (256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216)


class GatewayMetrics:
    """Safe with several uvicorn workers: gauges sum live processes (PROMETHEUS_MULTIPROC_DIR)."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.requests = Counter("xrouter_gateway_requests_total", "HTTP requests answered",
                                ["route", "method", "status_class"], registry=registry)
        self.duration = Histogram("xrouter_gateway_request_duration_seconds",
                                  "Time to the end of the HTTP response", ["route", "method"],
                                  buckets=BUCKETS, registry=registry)
        self.ttft = Histogram("xrouter_gateway_time_to_first_token_seconds",
                              "Time from the request to the first SSE data event", ["route"],
                              buckets=BUCKETS, registry=registry)
        self.in_flight = Gauge("xrouter_gateway_requests_in_flight", "HTTP requests in progress",
                               registry=registry, multiprocess_mode="livesum")
        self.open_streams = Gauge("xrouter_gateway_open_streams", "SSE responses in progress",
                                  registry=registry, multiprocess_mode="livesum")
        self.request_bytes = Histogram("xrouter_gateway_request_size_bytes", "Request body size",
                                       ["route"], buckets=SIZE_BUCKETS, registry=registry)
        self.response_bytes = Histogram("xrouter_gateway_response_size_bytes",
                                        "Response body size", ["route"], buckets=SIZE_BUCKETS,
                                        registry=registry)
        self.disconnects = Counter("xrouter_gateway_client_disconnects_total",
                                   "Clients that went away before their response was complete",
                                   ["route"], registry=registry)
        self.loop_lag = Gauge("xrouter_gateway_event_loop_lag_seconds",
                              "How late the event loop wakes up", registry=registry,
                              multiprocess_mode="max")
        registry.register(MemoryLimitCollector())


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
        self._requests, self._duration = Labelled(metrics.requests), Labelled(metrics.duration)
        self._request_bytes = Labelled(metrics.request_bytes)
        self._response_bytes = Labelled(metrics.response_bytes)

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Message]],
                       send: Callable[[Message], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        route = scope["path"] if scope["path"] in self._routes else self._template(scope["path"])
        exchange = _Exchange(self._m, route)
        length = _content_length(scope)
        if length is not None:
            self._request_bytes(route).observe(length)

        async def receive_wrapper() -> Message:
            message = await receive()
            exchange.received(message)
            return message

        async def send_wrapper(message: Message) -> None:
            exchange.sending(message)
            await send(message)

        self._m.in_flight.inc()
        try:
            await self._app(scope, receive_wrapper, send_wrapper)
        finally:
            self._m.in_flight.dec()
            method = scope["method"] if scope["method"] in _METHODS else "other"
            self._count(route, method, exchange)

    def _count(self, route: str, method: str, exchange: _Exchange) -> None:
        m = self._m
        if exchange.sse:
            m.open_streams.dec()
        self._requests(route, method, f"{exchange.status // 100}xx").inc()
        self._duration(route, method).observe(time.perf_counter() - exchange.started)
        self._response_bytes(route).observe(exchange.sent)

    def _template(self, path: str) -> str:
        for prefix, template in self._prefixes:
            if path.startswith(prefix):
                return template
        return "other"


class _Exchange:
    """What one HTTP exchange did, as seen through its ASGI messages."""

    __slots__ = ("done", "first", "m", "route", "sent", "sse", "started", "status")

    def __init__(self, metrics: GatewayMetrics, route: str) -> None:
        self.m = metrics
        self.route = route
        self.status = 500
        self.sent = 0
        self.sse = False
        self.first = False
        self.done = False
        self.started = time.perf_counter()

    def received(self, message: Message) -> None:
        if message["type"] == "http.disconnect" and not self.done:
            self.m.disconnects.labels(self.route).inc()

    def sending(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            if (b"content-type", b"text/event-stream") in message.get("headers", ()):
                self.sse = True
                self.m.open_streams.inc()
            return
        body = message.get("body", b"")
        self.sent += len(body)
        if self.sse and not self.first and (b"data: " in body or b"event: " in body):
            self.first = True
            self.m.ttft.labels(self.route).observe(time.perf_counter() - self.started)
        if not message.get("more_body", False):
            self.done = True


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


def registry_for_scrape(registry: CollectorRegistry) -> CollectorRegistry:
    """With several worker processes (PROMETHEUS_MULTIPROC_DIR set), a scrape must merge every
    worker's files; otherwise the process's own registry is the answer."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return registry
    merged = CollectorRegistry()
    multiprocess.MultiProcessCollector(merged, path=directory)  # type: ignore[no-untyped-call]
    merged.register(MemoryLimitCollector())
    return merged
