"""StreamCall.ready(): how the gateway waits for a stream's first event (sse.RouterStream) without
a task of its own on a lane (MuxStream wakes the waiting request itself), and with one for a
ChatStream call of its own (lanes=0, or a router without Multiplex): a wait that times out or is
cancelled takes nothing and leaves the router's stream running."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import grpc
import pytest

from tests.integration.test_multiplex import META, OnlyChat, Replica, _client, _events, _serve
from xrouter.v1 import router_pb2 as pb
from xrouter_gateway.router_client import RouterClient

pytestmark = pytest.mark.asyncio


class Late(Replica):
    """ChatStream of model "late" sends nothing until `release`, then "<name>:0" and "<name>:1"."""

    async def ChatStream(self, request: pb.ChatRequest,  # noqa: N802
                         context: Any) -> AsyncGenerator[pb.ChatStreamEvent, None]:
        self.holding.set()
        await self.release.wait()
        for i in range(2):
            yield pb.ChatStreamEvent(deployment=f"{self.name}:{i}")
        self.ended.append(f"streamed {request.model}")


def _late() -> pb.ChatRequest:
    return pb.ChatRequest(model="late", generation_id="gen-late")


@pytest.fixture(params=[1, 0], ids=["lane", "own-call"])
async def late(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Late, RouterClient]]:
    """A Late router, and a client on one lane to it or (0 lanes) with calls of their own."""
    replica = Late("a")  # type: ignore[abstract]
    server = await _serve(replica)
    client = _client([server], lanes=request.param)
    try:
        yield replica, client
    finally:
        await client.close()
        await server.stop(0)


async def test_a_wait_that_times_out_takes_nothing(late: tuple[Late, RouterClient]) -> None:
    replica, client = late
    call = client.chat_stream(_late(), META, 10)
    await replica.holding.wait()
    assert await call.ready(0.05) is False
    assert await call.ready(0.05) is False
    replica.release.set()
    assert await call.ready(10) is True
    assert await _events(call) == ["a:0", "a:1"]
    assert replica.ended == ["streamed late"]


async def test_a_cancelled_wait_takes_nothing(late: tuple[Late, RouterClient]) -> None:
    replica, client = late
    call = client.chat_stream(_late(), META, 10)
    waiting = asyncio.ensure_future(call.ready(None))
    await replica.holding.wait()
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    replica.release.set()
    assert await call.ready(10) is True
    assert await _events(call) == ["a:0", "a:1"]


async def test_a_router_without_multiplex_is_waited_for_on_a_call_of_its_own() -> None:
    server = await _serve(OnlyChat())  # type: ignore[abstract]
    client = _client([server], lanes=2, retries=0)
    try:
        OnlyChat.calls = 0
        call = client.chat_stream(pb.ChatRequest(model="s"), META, 10)
        assert await call.ready(10) is True  # the lane's UNIMPLEMENTED is not what it waits for
        assert await _events(call) == ["old:0", "old:1"]
        assert OnlyChat.calls == 1
    finally:
        await client.close()
        await server.stop(0)


async def test_a_failed_call_is_ready_and_its_read_raises() -> None:
    replica = Replica("a")  # type: ignore[abstract]
    server = await _serve(replica)
    client = _client([server], lanes=1, retries=0)
    try:
        call = client.chat_stream(pb.ChatRequest(model="limited"), META, 10)
        assert await call.ready(10) is True
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call.read()
        assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        await client.close()
        await server.stop(0)
