"""The throttle on failed authentication per client address: after `limit` answers of 401 to one
address within a minute, that address gets 429 with Retry-After, without its requests reaching
a handler (so without a router call), until the minute that began with its first failure ends."""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from xrouter_gateway.anthropic_api import error_response
from xrouter_gateway.errors import APIError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

WINDOW = 60.0
# The console asks whether it is signed in on every page load: its 401 is not counted. The
# session token in its cookie is 256 random bits, not worth guessing.
_SESSION_PATH = "/console/session"


class _Window:
    __slots__ = ("count", "ends")

    def __init__(self, ends: float) -> None:
        self.ends = ends
        self.count = 1


class FailureTable:
    """Failures per address in fixed windows, at most `capacity` addresses. Entries are kept in
    the order their windows began, so expired ones are pruned from the front; when the table is
    full of live windows, the oldest is dropped (a flood of distinct addresses costs O(1) per
    failure and never grows the table)."""

    def __init__(self, limit: int, capacity: int, clock: Callable[[], float] = time.monotonic,
                 window: float = WINDOW) -> None:
        self.limit = limit
        self.capacity = capacity
        self._clock = clock
        self._window = window
        self._table: OrderedDict[str, _Window] = OrderedDict()

    def __len__(self) -> int:
        return len(self._table)

    def blocked_for(self, address: str) -> float:
        """Seconds until `address` may try again; 0 when it is not blocked."""
        entry = self._table.get(address)
        if entry is None or entry.count < self.limit:
            return 0.0
        return max(0.0, entry.ends - self._clock())

    def failed(self, address: str) -> None:
        now = self._clock()
        entry = self._table.get(address)
        if entry is not None:
            if now < entry.ends:
                entry.count += 1
                return
            del self._table[address]
        self._prune(now)
        self._table[address] = _Window(now + self._window)

    def _prune(self, now: float) -> None:
        table = self._table
        while table:
            oldest = next(iter(table.values()))
            if oldest.ends > now and len(table) < self.capacity:
                return
            table.popitem(last=False)


class AuthThrottle:
    """ASGI middleware around the application: one dict lookup per request; the table is
    written only when a response is a 401."""

    def __init__(self, app: ASGIApp, table: FailureTable) -> None:
        self._app = app
        self._table = table

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        client = scope.get("client")
        address = client[0] if client else ""
        wait = self._table.blocked_for(address)
        if wait > 0:
            err = APIError(429, "Too many failed authentications from this address; retry "
                                "after the time in Retry-After", retry_after=math.ceil(wait))
            response = (error_response(err) if scope["path"] == "/v1/messages"
                        else err.response())
            await response(scope, receive, send)
            return

        if scope["method"] == "GET" and scope["path"] == _SESSION_PATH:
            await self._app(scope, receive, send)  # "not signed in" is no failed attempt
            return

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 401:
                self._table.failed(address)
            await send(message)

        await self._app(scope, receive, send_wrapper)
