"""The OpenAI adapter sends the first chunk of a stream's first read apart (StreamBatch.head), so a
stream's first token need not wait for the rest of that read to be parsed; later reads, and a
first read whose first chunk carries no delta, stay one batch each. A real upstream on a local
socket that answers each read in one write (one TCP segment on loopback)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from tests.unit.builders import deployment, request
from xrouter_router.domain.types import Delta, StreamBatch, TokenCounts
from xrouter_router.providers.http import new_session
from xrouter_router.providers.openai import OpenAIProvider

pytestmark = pytest.mark.asyncio

ROLE: dict[str, Any] = {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}
HEL: dict[str, Any] = {"choices": [{"index": 0, "delta": {"content": "Hel"}}]}
LO: dict[str, Any] = {"choices": [{"index": 0, "delta": {"content": "lo"}, "finish_reason": "stop"}]}
USAGE: dict[str, Any] = {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2}}
FILTER: dict[str, Any] = {"choices": [], "prompt_filter_results": []}  # Azure's first chunk: no delta


def _sse(*chunks: dict[str, Any], done: bool = False) -> bytes:
    body = b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks)
    return body + (b"data: [DONE]\n\n" if done else b"")


class Upstream:
    """Answers one request with the given reads, each in one write of one HTTP chunk; a read
    after the first is written once `next_read` is set (after the test saw the batch before)."""

    def __init__(self, reads: list[bytes]) -> None:
        self.reads = reads
        self.next_read = asyncio.Event()
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Upstream:
        self._server = await asyncio.start_server(self._answer, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        await reader.readexactly(length)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n" + self._chunk(self.reads[0]))
        for data in self.reads[1:]:
            await self.next_read.wait()
            self.next_read.clear()
            writer.write(self._chunk(data))
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        await reader.read()  # until the client closes
        writer.close()

    @staticmethod
    def _chunk(data: bytes) -> bytes:
        return b"%x\r\n" % len(data) + data + b"\r\n"


async def _batches(upstream: Upstream) -> AsyncIterator[StreamBatch]:
    session = new_session(connect_timeout=2.0, pool_size=2)
    provider = OpenAIProvider("up", base_url=f"http://127.0.0.1:{upstream.port}/v1",
                              api_key="sk-test", session=session)
    try:
        async for batch in provider.stream(request("m"), deployment("m", "up")):
            yield batch
            upstream.next_read.set()
    finally:
        await session.close()


async def test_the_first_reads_first_chunk_goes_apart_from_the_rest_of_that_read() -> None:
    async with Upstream([_sse(ROLE, HEL, LO, USAGE, done=True)]) as upstream:
        batches = [b async for b in _batches(upstream)]
    assert batches == [
        StreamBatch((Delta(role="assistant", content=""),), head=True),
        StreamBatch((Delta(content="Hel"), Delta(content="lo", finish_reason="stop")),
                    TokenCounts(5, 2), done=True)]


async def test_a_first_chunk_without_a_delta_keeps_the_read_whole() -> None:
    async with Upstream([_sse(FILTER, HEL, LO, done=True)]) as upstream:
        batches = [b async for b in _batches(upstream)]
    assert batches == [StreamBatch((Delta(content="Hel"), Delta(content="lo",
                                                                finish_reason="stop")), done=True)]


async def test_later_reads_stay_whole() -> None:
    async with Upstream([_sse(ROLE), _sse(HEL, LO), _sse(USAGE, done=True)]) as upstream:
        batches = [b async for b in _batches(upstream)]
    assert batches == [
        StreamBatch((Delta(role="assistant", content=""),)),  # a read of one chunk: no rest
        StreamBatch((Delta(content="Hel"), Delta(content="lo", finish_reason="stop"))),
        StreamBatch((), TokenCounts(5, 2), done=True)]
