"""Cross-cutting ASGI middleware: the request's server span (only when tracing is on) and one
JSON access-log line per request (ids and timing; never bodies, prompts or keys)."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from xrouter_common.otel import context_from_traceparent, traceparent_of_current_span
from xrouter_common.tracing import trace_id_of

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

access = logging.getLogger("xrouter.access")


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return ""


class TracingMiddleware:
    """A SERVER span per HTTP request, child of the client's traceparent; the router call
    (chat.call_metadata) forwards this span's traceparent."""

    def __init__(self, app: ASGIApp, tracer: Any) -> None:
        self._app = app
        self._tracer = tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        from opentelemetry.trace import SpanKind

        parent = context_from_traceparent(_header(scope, b"traceparent") or None)
        name = f"{scope['method']} {scope['path']}"
        with self._tracer.start_as_current_span(name, context=parent, kind=SpanKind.SERVER,
                                                attributes={"http.method": scope["method"],
                                                            "http.target": scope["path"]}) as span:
            scope.setdefault("state", {})["traceparent"] = traceparent_of_current_span()

            async def send_wrapper(message: Message) -> None:
                if message["type"] == "http.response.start":
                    span.set_attribute("http.status_code", message["status"])
                await send(message)

            await self._app(scope, receive, send_wrapper)


class AccessLogMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        generation_id = ""

        async def send_wrapper(message: Message) -> None:
            nonlocal status, generation_id
            if message["type"] == "http.response.start":
                status = message["status"]
                for key, value in message.get("headers", ()):
                    if key.lower() == b"x-generation-id":
                        generation_id = value.decode()
            await send(message)

        try:
            await self._app(scope, receive, send_wrapper)
        finally:
            state = scope.get("state") or {}
            traceparent = state.get("traceparent") or _header(scope, b"traceparent")
            access.info("request", extra={"fields": {
                "method": scope["method"], "path": scope["path"], "status": status,
                "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                "request_id": _header(scope, b"x-request-id") or generation_id,
                "generation_id": generation_id, "trace_id": trace_id_of(traceparent)}})
