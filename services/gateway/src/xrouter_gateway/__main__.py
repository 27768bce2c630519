"""`python -m xrouter_gateway`: serve the HTTP API with uvicorn (uvloop + httptools)."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from typing import Any

import uvicorn
import uvloop

# Before anything that loads grpc: gRPC core reads its transport settings as it loads.
import xrouter_common.grpc_core  # noqa: F401 - sets GRPC_EXPERIMENTS
from xrouter_common.env import ConfigError
from xrouter_common.logs import setup_logging
from xrouter_common.otel import configure_tracing
from xrouter_gateway.app import build_app
from xrouter_gateway.http_protocol import EnvProtocol, protocol_class
from xrouter_gateway.settings import GatewaySettings


def uvicorn_options(settings: GatewaySettings) -> dict[str, Any]:
    """What both ways of serving share. On SIGTERM uvicorn stops accepting, then waits up to
    drain_seconds for requests and streams in flight (keep the orchestrator's grace period
    above it: the manifests give 60 s for the default 30)."""
    return {"host": settings.host, "port": settings.port, "access_log": False,
            "log_level": "info", "server_header": False,
            "timeout_graceful_shutdown": settings.drain_seconds, **client_options(settings)}


def client_options(settings: GatewaySettings) -> dict[str, Any]:
    """How clients are met: the guarded protocol (read deadlines, header and connection caps),
    and X-Forwarded-For honoured only from the trusted proxies (uvicorn's own default would
    trust 127.0.0.1)."""
    return {"http": protocol_class(settings),
            "proxy_headers": bool(settings.trusted_proxies),
            "forwarded_allow_ips": list(settings.trusted_proxies)}


async def serve(settings: GatewaySettings) -> None:
    app = build_app(settings, tracer=configure_tracing("xrouter-gateway"))
    config = uvicorn.Config(app, loop="none", lifespan="on", **uvicorn_options(settings))
    await uvicorn.Server(config).serve()


def serve_workers(settings: GatewaySettings) -> None:
    """Several worker processes on one port; metrics are merged through files in a private
    directory (prometheus_client's multiprocess mode)."""
    directory = tempfile.mkdtemp(prefix="xrouter-gateway-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    try:
        # Workers are separate processes: the protocol class travels by name and reads the
        # same settings from the environment there.
        uvicorn.run("xrouter_gateway.app:create_app", factory=True, workers=settings.workers,
                    loop="uvloop", **{**uvicorn_options(settings), "http": EnvProtocol})
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def main() -> int:
    setup_logging()
    try:
        settings = GatewaySettings.from_env()
        if settings.workers > 1:
            serve_workers(settings)
        else:
            uvloop.run(serve(settings))
    except ConfigError as exc:
        print(f"xrouter-gateway: configuration error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
