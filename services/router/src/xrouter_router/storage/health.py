"""The storage behind this replica, as the gateway's /health reports it: the database and the
cache, each "up" or "down". The cache is probed (every Redis master must answer PING) at most
once per `ttl`, and concurrent callers share one probe, so a flood of /health calls costs Redis
one PING a second; the database state is the one its calls already keep (`Database.down`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StorageState:
    mode: str  # "embedded" | "cluster"
    db: str  # "up" | "down"
    cache: str


def _state(up: bool) -> str:
    return "up" if up else "down"


class StorageHealth:
    def __init__(self, mode: str, database_up: Callable[[], bool],
                 cache_up: Callable[[], Awaitable[bool]], *, ttl: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._mode = mode
        self._database_up = database_up
        self._cache_up = cache_up
        self._ttl = ttl
        self._clock = clock
        self._cache: tuple[float, bool] | None = None  # (when probed, answer)
        self._probe: asyncio.Task[bool] | None = None

    async def check(self) -> StorageState:
        return StorageState(self._mode, _state(self._database_up()), _state(await self._cache_state()))

    async def _cache_state(self) -> bool:
        now = self._clock()
        if self._cache is not None and now - self._cache[0] < self._ttl:
            return self._cache[1]
        if self._probe is None:
            self._probe = asyncio.ensure_future(self._run_probe())
        # A caller that goes away does not cancel the probe the others wait for.
        return await asyncio.shield(self._probe)

    async def _run_probe(self) -> bool:
        try:
            up = await self._cache_up()
        except Exception:  # noqa: BLE001 - any failure to answer is "down"
            up = False
        finally:
            self._probe = None
        self._cache = (self._clock(), up)
        return up


def always_up() -> StorageHealth:
    """The embedded mode: SQLite and the in-process limiter live in this process."""
    async def up() -> bool:
        return True
    return StorageHealth("embedded", lambda: True, up)
