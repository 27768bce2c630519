"""Redis Cluster adapters: the client and its scripts, the lane, limits and credits, statistics,
key revocations and the ledger stream with its consumer.

redis-py (8.x) imports OpenTelemetry's metrics SDK, when it is installed, for an observability
feature of its own (`redis.observability`) that XRouter does not use; XRouter installs the SDK
for its traces. That import is 47 modules and about 2.2 MB of the cluster router's idle memory
(docs/performance.md, issue 16's fifth pass). redis-py treats the SDK as optional (an
ImportError there means "not installed"), so redis is first imported here, before any module
of this package imports it, with the metrics SDK hidden for that import only: afterwards it can
be imported as usual (configure_tracing never needs it).

So importing anything from this package imports redis-py (about 5 MB): the embedded mode must
not, and what it shares with the cluster mode lives elsewhere (domain/outage.py)."""

from __future__ import annotations

import sys

_METRICS_SDK = "opentelemetry.sdk.metrics"


def _import_redis_without_its_metrics() -> None:
    if "redis" in sys.modules or _METRICS_SDK in sys.modules:
        return  # too late to spare it, or already loaded by someone who wanted it
    sys.modules[_METRICS_SDK] = None  # type: ignore[assignment] # Python's "no such module"
    try:
        import redis.asyncio.cluster  # noqa: F401 - what this package's modules import
    finally:
        del sys.modules[_METRICS_SDK]


_import_redis_without_its_metrics()
