"""Integration fixtures: a real router (gRPC on port 0) and a real gateway (uvicorn on port 0)
in the test's event loop, in front of the fake OpenAI upstream."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.fakes.openai_upstream import FakeOpenAI
from tests.support import (
    MASTER_KEY,
    gateway_settings,
    router_settings,
    running_gateway,
    running_router,
)
from xrouter_router.storage.sql.sqlite_db import SqliteDatabase

AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}


@dataclass
class Stack:
    url: str
    upstream: FakeOpenAI
    http: httpx.AsyncClient
    data_dir: Path = Path()  # the router's (its SQLite file is xrouter.sqlite3 there)

    async def chat(self, body: dict[str, Any], headers: dict[str, str] | None = None) -> httpx.Response:
        return await self.http.post(f"{self.url}/v1/chat/completions", json=body,
                                    headers=AUTH if headers is None else headers)

    async def stream(self, body: dict[str, Any]) -> tuple[httpx.Response, list[str]]:
        """Raw SSE lines (blank separators dropped) of a streamed completion."""
        lines: list[str] = []
        async with self.http.stream("POST", f"{self.url}/v1/chat/completions",
                                    json={**body, "stream": True}, headers=AUTH) as resp:
            if resp.status_code != 200:
                await resp.aread()
                return resp, []
            async for line in resp.aiter_lines():
                if line:
                    lines.append(line)
        return resp, lines


def events(lines: list[str]) -> list[dict[str, Any]]:
    return [orjson.loads(line[6:]) for line in lines if line.startswith("data: {")]


def content_of(lines: list[str]) -> str:
    return "".join(c["delta"].get("content") or "" for e in events(lines) for c in e["choices"])


@pytest.fixture
async def sqlite_db(tmp_path: Path) -> AsyncIterator[SqliteDatabase]:
    """An embedded-mode SQLite file of its own (test_sqlite_database.py, test_sqlite_wal.py)."""
    db = SqliteDatabase(tmp_path / "xrouter.db")
    try:
        yield db
    finally:
        await db.close()


@pytest.fixture
def router_overrides() -> dict[str, float]:
    return {}


@pytest.fixture
def gateway_overrides() -> dict[str, float]:
    return {}


@pytest.fixture
async def stack(catalog: Path, upstream: FakeOpenAI, router_overrides: dict[str, float],
                gateway_overrides: dict[str, float]) -> AsyncIterator[Stack]:
    settings = router_settings(catalog, **router_overrides)
    async with running_router(settings) as router:
        target = f"127.0.0.1:{router.server.port}"
        async with running_gateway(gateway_settings(target, **gateway_overrides)) as url, \
                httpx.AsyncClient(timeout=15.0) as http:
            yield Stack(url, upstream, http, settings.data_dir)
