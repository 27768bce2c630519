"""The base of every fake upstream: an aiohttp application served on 127.0.0.1 at a free port by
a thread and event loop of its own, so tests in any loop, and services in other processes, can
use it; what it saw; and the responses every fake builds its answers from."""

from __future__ import annotations

import asyncio
import ssl
import threading
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, Self

import orjson
from aiohttp import web


def json_response(status: int, body: Any, *, headers: Mapping[str, str] | None = None,
                  charset: str | None = None) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json",
                        charset=charset, headers=headers)


def garbage() -> web.Response:
    """The `garbage` scenario: a 200 whose body is an HTML error page, as a broken proxy sends."""
    return web.Response(status=200, text="<html>502 Bad Gateway</html>", content_type="text/html")


class FakeUpstream(ABC):
    """A fake's server; subclasses add their handlers in `routes` and keep what they saw in
    `requests` (bodies), `headers` and `disconnects` (streams the client abandoned).
    `slow_seconds` and `drip_interval` time the slow and drip scenarios; `ssl_context` serves
    HTTPS."""

    name = "fake upstream"

    def __init__(self, *, slow_seconds: float = 3.0, drip_interval: float = 0.05,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.disconnects: list[str] = []
        self.slow_seconds = slow_seconds
        self.drip_interval = drip_interval
        self.port = 0
        self._ssl = ssl_context
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    @abstractmethod
    def routes(self, app: web.Application) -> None: ...

    @property
    def origin(self) -> str:
        return f"{'https' if self._ssl else 'http'}://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return self.origin

    def start(self) -> Self:
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(self._serve())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name=self.name, daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError(f"{self.name} did not start")
        return self

    async def _serve(self) -> None:
        app = web.Application()
        self.routes(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self._ssl)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def stop(self) -> None:
        if self._loop is None or self._runner is None:
            return
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread:
            self._thread.join(10)
