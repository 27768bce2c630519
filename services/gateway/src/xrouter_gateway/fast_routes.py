"""The inference endpoints without Starlette's routing and exception layers (issue 16).

A request whose method and exact path name one of `routes` goes straight to its endpoint, as
Starlette's Route would take it there: a Request over the scope, the endpoint's Response sent.
What the skipped layers do for other routes the endpoints do themselves: InboundEndpoint.handle
answers every error in its API's JSON shape (an unexpected one as a logged 500). The middleware
around this one (metrics, access log, failed-auth throttle, tracing) sees these requests as it
sees any. Everything else goes to the Starlette app."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

Endpoint = Callable[[Request], Awaitable[Response]]


class FastRoutes:
    def __init__(self, app: ASGIApp, routes: Mapping[tuple[str, str], Endpoint]) -> None:
        self._app = app
        self._routes = dict(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            endpoint = self._routes.get((scope["method"], scope["path"]))
            if endpoint is not None:
                response = await endpoint(Request(scope, receive, send))
                await response(scope, receive, send)
                return
        await self._app(scope, receive, send)
