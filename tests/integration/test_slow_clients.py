"""Slow and abusive clients on a real uvicorn server: header and body read deadlines, the cap on
open connections, and the throttle on failed authentication per client address."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.fakes.openai_upstream import FakeOpenAI
from tests.integration.raw_http import RawConnection, RawResponse, request_bytes
from tests.support import MASTER_KEY, gateway_settings, router_settings, running_gateway, running_router

HELLO = [{"role": "user", "content": "hi"}]
VALID = orjson.dumps({"model": "demo", "messages": HELLO})
CHAT = "/v1/chat/completions"
GOOD = {"Authorization": f"Bearer {MASTER_KEY}".encode()}
BAD = {"Authorization": b"Bearer sk-not-a-key"}


@pytest.fixture
def overrides() -> dict[str, Any]:
    return {}


@pytest.fixture
async def gateway(catalog: Path, upstream: FakeOpenAI, overrides: dict[str, Any]
                  ) -> AsyncIterator[str]:
    async with running_router(router_settings(catalog)) as router:
        settings = gateway_settings(f"127.0.0.1:{router.server.port}", **overrides)
        async with running_gateway(settings) as url:
            yield url


def error_of(resp: RawResponse, status: int) -> dict[str, Any]:
    assert resp.status == status, resp.body
    body = resp.json()
    assert set(body["error"]) == {"message", "type", "code", "param", "metadata"}
    assert body["error"]["code"] == status
    return body["error"]  # type: ignore[no-any-return]


async def connect(url: str) -> RawConnection:
    return await RawConnection.open(url)


# Deadlines of half a second; a server that ignored them would hold the connection until the
# client gave up (ANSWER_TIMEOUT, 10 s, 20x the deadline), so the 408 proves the deadline.
@pytest.mark.parametrize("overrides", [{"header_timeout": 0.5}])
async def test_headers_sent_byte_by_byte_get_408_within_the_deadline(gateway: str) -> None:
    conn = await connect(gateway)
    request = request_bytes(CHAT, VALID, GOOD)
    started = time.monotonic()

    async def trickle() -> None:
        for i in range(len(request)):
            if conn.writer.is_closing():
                return
            conn.writer.write(request[i:i + 1])
            await asyncio.sleep(0.05)  # the slow client under test: ~10 s for the whole request

    sender = asyncio.ensure_future(trickle())
    try:
        err = error_of(await conn.response(), 408)
        assert err["message"] == "The request headers did not arrive within 0.5 seconds"
        assert err["type"] == "timeout_error"
        assert await conn.closed_by_server()
        assert time.monotonic() - started < 5.0  # the whole trickle would take ~10 s
    finally:
        sender.cancel()
        await conn.close()


@pytest.mark.parametrize("overrides", [{"header_timeout": 0.5}])
async def test_an_idle_new_connection_is_closed_and_keep_alive_still_works(gateway: str) -> None:
    busy = await connect(gateway)
    assert (await busy.exchange(request_bytes(CHAT, VALID, GOOD))).status == 200
    idle = await connect(gateway)
    try:
        assert await idle.closed_by_server()  # never sent a byte: closed without an answer
        # The header deadline covers each request's headers, not the connection's life: the
        # kept-alive connection, idle longer than the deadline, still serves.
        assert (await busy.exchange(request_bytes(CHAT, VALID, GOOD))).status == 200
    finally:
        await idle.close()
        await busy.close()


@pytest.mark.parametrize("overrides", [{"body_timeout": 0.5}])
async def test_a_body_slower_than_the_deadline_gets_408_and_close(gateway: str) -> None:
    conn = await connect(gateway)
    try:
        head = request_bytes(CHAT, VALID, GOOD)
        await conn.send(head[:-10])  # all headers, all but the last 10 bytes of the body
        err = error_of(await conn.response(), 408)
        assert err["message"] == "The request body did not arrive within 0.5 seconds"
        assert await conn.closed_by_server()
    finally:
        await conn.close()
    conn = await connect(gateway)
    try:  # the server still serves
        assert (await conn.exchange(request_bytes(CHAT, VALID, GOOD))).status == 200
    finally:
        await conn.close()


@pytest.mark.parametrize("overrides", [{"body_timeout": 0.5}])
async def test_a_slow_body_to_the_messages_api_gets_anthropics_error_shape(gateway: str) -> None:
    conn = await connect(gateway)
    try:
        head = request_bytes("/v1/messages", VALID, {"x-api-key": MASTER_KEY.encode()})
        await conn.send(head[:-10])
        resp = await conn.response()
        assert resp.status == 408
        assert resp.json() == {"type": "error", "error": {
            "type": "timeout_error",
            "message": "The request body did not arrive within 0.5 seconds"}}
    finally:
        await conn.close()


@pytest.mark.parametrize("overrides", [{"max_connections": 2}])
async def test_connections_above_the_cap_get_503_and_close(gateway: str) -> None:
    first, second = await connect(gateway), await connect(gateway)
    try:
        # Both are open on the server once each has been answered.
        for conn in (first, second):
            assert (await conn.exchange(request_bytes("/livez", method="GET"))).status == 200
        third = await connect(gateway)
        try:
            resp = await third.response()
            err = error_of(resp, 503)
            assert err["message"] == "The gateway has too many open connections; retry shortly"
            assert resp.headers["retry-after"] == "1"
            assert await third.closed_by_server()
        finally:
            await third.close()
        assert (await first.exchange(request_bytes(CHAT, VALID, GOOD))).status == 200
    finally:
        await first.close()
        await second.close()


@pytest.mark.parametrize("overrides", [{"header_timeout": 0.5}])
async def test_a_pipelined_request_waits_without_its_deadline_running(gateway: str) -> None:
    """While the first request is answered (the upstream sleeps 3 s, the router gives up at 2 s)
    uvicorn reads nothing more; the second request's header deadline starts after that."""
    conn = await connect(gateway)
    try:
        slow = orjson.dumps({"model": "test/slow-only", "messages": HELLO})
        second = request_bytes(CHAT, VALID, GOOD)
        await conn.send(request_bytes(CHAT, slow, GOOD) + second[:20])
        first = await conn.response()
        assert first.headers["content-type"] == "application/json"
        assert "did not arrive" not in first.json()["error"]["message"]
        err = error_of(await conn.response(), 408)
        assert err["message"] == "The request headers did not arrive within 0.5 seconds"
    finally:
        await conn.close()
