"""OpenTelemetry behind the domain's Tracer port, and the server span of each RPC (its parent
taken from the W3C traceparent the gateway sends in the gRPC metadata)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from xrouter_common.otel import context_from_traceparent
from xrouter_router.domain.observe import SpanLike


class OtelSpans:
    """domain.observe.Tracer on an OpenTelemetry tracer."""

    def __init__(self, tracer: Any) -> None:
        self._tracer = tracer

    def span(self, name: str,
             attributes: Mapping[str, str | int | float | bool]) -> AbstractContextManager[SpanLike]:
        manager: AbstractContextManager[SpanLike] = self._tracer.start_as_current_span(
            name, attributes=dict(attributes))
        return manager


def server_span(tracer: Any | None, name: str, traceparent: str | None,
                attributes: Mapping[str, str]) -> AbstractContextManager[Any]:
    """The RPC's server span as the current span, or nothing when tracing is off."""
    if tracer is None:
        return nullcontext()
    return _server_span(tracer, name, traceparent, attributes)


@contextmanager
def _server_span(tracer: Any, name: str, traceparent: str | None,
                 attributes: Mapping[str, str]) -> Iterator[Any]:
    from opentelemetry.trace import SpanKind

    with tracer.start_as_current_span(name, context=context_from_traceparent(traceparent),
                                      kind=SpanKind.SERVER, attributes=dict(attributes)) as span:
        yield span
