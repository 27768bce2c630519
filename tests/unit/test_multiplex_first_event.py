"""A streamed call's first event leaves the router before its handler goes on (Multiplexer's
writer runs first): what follows it may keep the loop busy for a while (a one-read answer's rest,
its conclusion, the embedded ledger's commit), and the first token must not wait for that."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import pytest

from xrouter.v1 import router_pb2 as pb
from xrouter_router.transport.multiplex import Multiplexer

pytestmark = pytest.mark.asyncio


async def test_the_first_event_is_sent_before_the_handler_goes_on() -> None:
    sent: list[pb.MuxDownBatch] = []
    seen: list[int] = []  # batches sent when the handler resumed after each event
    over = asyncio.Event()

    async def chat(request: pb.ChatRequest, context: Any) -> pb.ChatResponse:
        raise AssertionError("no unary call here")

    async def stream(request: pb.ChatRequest, context: Any) -> AsyncGenerator[pb.ChatStreamEvent, None]:
        for i in range(3):
            yield pb.ChatStreamEvent(deployment=f"d:{i}")
            seen.append(len(sent))

    async def incoming() -> AsyncIterator[pb.MuxUpBatch]:
        yield pb.MuxUpBatch(frames=[pb.MuxUp(id=1, open=pb.MuxOpen(
            request=pb.ChatRequest(model="m"), stream=True, timeout=10))])
        await over.wait()

    async for batch in Multiplexer(chat, stream).serve(incoming()):
        sent.append(batch)
        if any(frame.HasField("end") for frame in batch.frames):
            over.set()
            break
    # The first event went alone; the handler then ran on to its end without waiting again,
    # so the later events and the end left together.
    assert seen == [1, 1, 1]
    assert [[f.event.deployment or f"end:{f.end.code}" for f in b.frames] for b in sent] == [
        ["d:0"], ["d:1", "d:2", "end:0"]]
