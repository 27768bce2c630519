"""`python -m xrouter_gateway`: serve the HTTP API with uvicorn (uvloop + httptools)."""

from __future__ import annotations

import logging
import sys

import uvicorn
import uvloop

from xrouter_common.env import ConfigError
from xrouter_gateway.app import build_app
from xrouter_gateway.settings import GatewaySettings


async def serve(settings: GatewaySettings) -> None:
    app = build_app(settings)
    config = uvicorn.Config(
        app, host=settings.host, port=settings.port, loop="none", http="httptools",
        access_log=False, log_level="info", lifespan="on", server_header=False,
        timeout_graceful_shutdown=30,
    )
    await uvicorn.Server(config).serve()


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        uvloop.run(serve(GatewaySettings.from_env()))
    except ConfigError as exc:
        print(f"xrouter-gateway: configuration error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
