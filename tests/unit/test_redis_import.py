"""The router's Redis package imports redis-py without OpenTelemetry's metrics SDK (unused,
about 2.2 MB of idle memory), and leaves that SDK importable, and tracing working, after it.
Each case in a fresh interpreter: what is imported is the point."""

from __future__ import annotations

import json
import os
import subprocess
import sys

PROBE = """
import json, sys
first = sys.argv[1]
if first:
    __import__(first)
import xrouter_router.storage.redis.clients
import redis.observability.providers as providers
state = {"metrics_sdk": "opentelemetry.sdk.metrics" in sys.modules,
         "redis_sees_sdk": providers.OTEL_AVAILABLE,
         "otel_modules": sum(1 for m in sys.modules if m.startswith("opentelemetry"))}
import opentelemetry.sdk.metrics
from xrouter_common.otel import configure_tracing
tracer = configure_tracing("xrouter-router", {"OTEL_TRACES_EXPORTER": "console"})
with tracer.start_as_current_span("probe") as span:
    state["traced"] = span.get_span_context().is_valid
print(json.dumps(state))
"""


def probe(first: str) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    out = subprocess.run([sys.executable, "-c", PROBE, first], env=env, check=True,
                         capture_output=True, text=True, timeout=60).stdout
    state: dict[str, object] = json.loads(out.splitlines()[0])
    return state


def test_redis_comes_without_the_metrics_sdk_which_stays_importable() -> None:
    state = probe("")
    assert state["metrics_sdk"] is False and state["redis_sees_sdk"] is False
    assert state["traced"] is True
    # The tracing API's few modules; with the metrics SDK, redis-py pulled in 61.
    assert isinstance(state["otel_modules"], int) and state["otel_modules"] <= 20


def test_a_metrics_sdk_loaded_before_is_left_alone() -> None:
    state = probe("opentelemetry.sdk.metrics")
    assert state["metrics_sdk"] is True and state["redis_sees_sdk"] is True
    assert state["traced"] is True


def test_the_embedded_router_does_not_load_redis_py() -> None:
    code = ("import sys; import xrouter_router.__main__, xrouter_router.bootstrap; "
            "print(sorted(m for m in sys.modules if m == 'redis' "
            "or m.startswith('xrouter_router.storage.redis')))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                         timeout=60).stdout
    assert out.strip() == "[]"
