"""OpenTelemetry set-up shared by both tiers: off unless the standard OTEL_* variables ask for
it (OTEL_TRACES_EXPORTER=otlp|console, or OTEL_EXPORTER_OTLP[_TRACES]_ENDPOINT), in which case
the SDK is imported, a BatchSpanProcessor with the OTLP/gRPC exporter (endpoint, headers,
protocol options all read by the exporter from OTEL_*) is installed, and a Tracer is returned.
When off, nothing of OpenTelemetry is imported and callers hold None: no cost per request.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer


def tracing_requested(env: Mapping[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none" or env.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    return exporter in ("otlp", "console") or bool(
        env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


def configure_tracing(service_name: str, env: Mapping[str, str] | None = None) -> Tracer | None:
    """The tracer for `service_name`, or None when tracing is off."""
    env = os.environ if env is None else env
    if not tracing_requested(env):
        return None
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    resource = Resource.create({"service.name": env.get("OTEL_SERVICE_NAME", service_name)})
    provider = TracerProvider(resource=resource)
    exporter: Any
    if env.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "console":
        exporter = ConsoleSpanExporter()
    else:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider.get_tracer("xrouter")


def context_from_traceparent(traceparent: str | None) -> Any:
    """An OpenTelemetry context whose parent is the W3C traceparent given (or an empty one)."""
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier = {"traceparent": traceparent} if traceparent else {}
    return TraceContextTextMapPropagator().extract(carrier)


def traceparent_of_current_span() -> str:
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return carrier.get("traceparent", "")
