"""GigaChat's OAuth client-credentials access token: fetched from the token endpoint with the
authorization key, cached, refreshed shortly before it expires, never more than one fetch at a time."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from urllib.parse import urlencode

from xrouter_router.providers.gigachat.wire import parse_token, token_error
from xrouter_router.providers.http import Upstream
from xrouter_router.providers.http1 import HttpClient

REFRESH_MARGIN = 60.0


class TokenSource:
    """One cached access token. Every caller that finds it missing or about to expire awaits
    the same fetch (a shared task, shielded so one caller's timeout does not cancel it for the
    others); a failed fetch fails all its waiters and the next caller starts a new one."""

    def __init__(
        self,
        provider: str,
        *,
        session: HttpClient,
        url: str,
        authorization_key: str,
        scope: str,
        margin: float = REFRESH_MARGIN,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._provider = provider
        self._http = Upstream(provider, session, {
            "Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json",
        }, status_error=token_error)
        self._url = url
        key = authorization_key.removeprefix("Basic ").strip()
        self._authorization = f"Basic {key}"
        self._form = urlencode({"scope": scope}).encode()
        self._margin = margin
        self._clock = clock
        self._token = ""
        self._refresh_at = 0.0
        self._pending: asyncio.Task[str] | None = None

    async def token(self) -> str:
        if self._token and self._clock() < self._refresh_at:
            return self._token
        if self._pending is None:
            self._pending = asyncio.get_running_loop().create_task(self._refresh())
        return await asyncio.shield(self._pending)

    def invalidate(self, token: str) -> None:
        """The API refused `token`: forget it, unless a newer one has replaced it already."""
        if token == self._token:
            self._token = ""
            self._refresh_at = 0.0

    async def close(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.cancel()
            await asyncio.gather(pending, return_exceptions=True)

    async def _refresh(self) -> str:
        try:
            token, expires_at = await self._fetch()
            self._token, self._refresh_at = token, expires_at - self._margin
            return token
        finally:
            self._pending = None

    async def _fetch(self) -> tuple[str, float]:
        headers = {"Authorization": self._authorization, "RqUID": str(uuid.uuid4())}
        return await self._http.post_json(self._url, self._form,
                                          lambda data: parse_token(self._provider, data),
                                          headers=headers)
