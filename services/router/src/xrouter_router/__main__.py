"""`python -m xrouter_router`: run one router replica until SIGTERM/SIGINT, then drain."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

import uvloop
from prometheus_client import start_http_server

# Before anything that loads grpc: gRPC core reads its transport settings as it loads.
import xrouter_common.grpc_core  # noqa: F401 - sets GRPC_EXPERIMENTS
from xrouter_common.env import ConfigError
from xrouter_common.logs import setup_logging
from xrouter_common.otel import configure_tracing
from xrouter_router.bootstrap import build
from xrouter_router.settings import RouterSettings

log = logging.getLogger("xrouter.router")


async def serve(settings: RouterSettings) -> None:
    app = build(settings, tracer=configure_tracing("xrouter-router"))
    await app.start()
    log.info("router listening on %s (port %d)", settings.listen, app.server.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("router draining for up to %.0fs", settings.shutdown_grace)
    await app.stop(settings.shutdown_grace)
    log.info("router stopped")


def main() -> int:
    setup_logging()
    try:
        settings = RouterSettings.from_env()
        if settings.metrics_port:
            start_http_server(settings.metrics_port, addr=settings.metrics_host)
        uvloop.run(serve(settings))
    except ConfigError as exc:
        print(f"xrouter-router: configuration error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
