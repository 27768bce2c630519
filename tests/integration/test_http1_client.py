"""The upstream HTTP/1.1 client against real sockets: a small asyncio server here answers each
request with the bytes a test scripts (well-formed, cut, malformed, slow), and counts the
connections, so reuse, closing and the pool's limit are seen from the server's side."""

from __future__ import annotations

import asyncio
import gzip
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from tests.support import until
from xrouter_router.providers.http1 import HttpClient
from xrouter_router.providers.http1_wire import (
    BadResponse,
    BodyCut,
    ConnectFailed,
    ConnectTimeout,
    Disconnected,
)

Answer = Callable[[bytes, asyncio.StreamWriter], Awaitable[bool]]
"""(the request, the writer) -> whether to keep the connection open for another request."""


class RawServer:
    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.connections = 0
        self.open = 0
        self.most_open = 0
        self.requests: list[bytes] = []
        self.closed = asyncio.Event()
        self.server: asyncio.Server | None = None

    async def start(self) -> RawServer:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/v1/x"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                if not await self.answer(request, writer):
                    break
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.open -= 1
            writer.close()
            self.closed.set()

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


def replying(*wire: bytes, keep: bool = True) -> Answer:
    async def answer(request: bytes, writer: asyncio.StreamWriter) -> bool:
        for part in wire:
            writer.write(part)
            await writer.drain()
        return keep
    return answer


@pytest.fixture
async def client() -> AsyncIterator[HttpClient]:
    async with HttpClient(connect_timeout=2.0, pool_size=4) as c:
        yield c


async def _serve(answer: Answer) -> RawServer:
    return await RawServer(answer).start()


OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"ok\":true}"


async def test_a_response_is_read_and_its_connection_used_again(client: HttpClient) -> None:
    server = await _serve(replying(OK))
    for _ in range(3):
        async with client.post(server.url, b"{}", {"Content-Type": "application/json"}) as resp:
            assert (resp.status, resp.content_type, await resp.read()) == (
                200, "application/json", b'{"ok":true}')
    assert server.connections == 1
    port = server.url.split(":")[2].split("/")[0]
    assert server.requests[0] == (
        b"POST /v1/x HTTP/1.1\r\nHost: 127.0.0.1:" + port.encode() + b"\r\nContent-Length: 2\r\n"
        b"Content-Type: application/json\r\nUser-Agent: XRouter\r\n\r\n{}")
    await server.stop()


async def test_a_chunked_body_with_a_trailer_arrives_whole(client: HttpClient) -> None:
    server = await _serve(replying(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                                   b"5\r\nhello\r\n", b"6;x=y\r\n world\r\n0\r\nT: 1\r\n\r\n"))
    for _ in range(2):
        async with client.post(server.url, b"", {}) as resp:
            assert await resp.read() == b"hello world"
    assert server.connections == 1
    await server.stop()


async def test_a_body_framed_by_the_connection_end_is_read_to_it(client: HttpClient) -> None:
    server = await _serve(replying(b"HTTP/1.0 200 OK\r\n\r\npart one, ", b"part two",
                                   keep=False))
    for _ in range(2):
        async with client.post(server.url, b"", {}) as resp:
            assert await resp.read() == b"part one, part two"
    assert server.connections == 2
    await server.stop()


async def test_connection_close_is_honoured(client: HttpClient) -> None:
    server = await _serve(replying(
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", keep=False))
    for _ in range(2):
        async with client.post(server.url, b"", {}) as resp:
            assert await resp.read() == b"ok"
    assert server.connections == 2
    await server.stop()


async def test_a_gzipped_body_is_decoded(client: HttpClient) -> None:
    packed = gzip.compress(b'{"a":1}' * 100)
    server = await _serve(replying(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n"
                                   b"Content-Length: %d\r\n\r\n" % len(packed) + packed))
    async with client.post(server.url, b"", {}) as resp:
        assert await resp.read() == b'{"a":1}' * 100
    await server.stop()


async def test_an_interim_100_continue_is_skipped(client: HttpClient) -> None:
    server = await _serve(replying(b"HTTP/1.1 100 Continue\r\n\r\n", OK))
    async with client.post(server.url, b"", {}) as resp:
        assert (resp.status, await resp.read()) == (200, b'{"ok":true}')
    await server.stop()


async def test_a_body_cut_short_gives_what_came_then_body_cut(client: HttpClient) -> None:
    server = await _serve(replying(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n",
                                   b"data: one\n\n", keep=False))
    async with client.post(server.url, b"", {}) as resp:
        got = b""
        with pytest.raises(BodyCut):
            while True:
                got += await resp.readany()
    assert got == b"data: one\n\n"
    await server.stop()


async def test_a_chunked_body_cut_short_is_body_cut(client: HttpClient) -> None:
    server = await _serve(replying(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                   b"5\r\nhello\r\n", keep=False))
    async with client.post(server.url, b"", {}) as resp:
        assert await resp.readany() == b"hello"
        with pytest.raises(BodyCut):
            await resp.readany()
    await server.stop()


@pytest.mark.parametrize("wire", [
    b"HTTP/2 200 OK\r\n\r\n", b"<html>hello</html>\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Encoding: br\r\nContent-Length: 1\r\n\r\nx",
    b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 70_000,
])
async def test_what_is_not_http_1_1_is_a_bad_response(client: HttpClient, wire: bytes) -> None:
    server = await _serve(replying(wire, keep=False))
    with pytest.raises(BadResponse):
        async with client.post(server.url, b"", {}):
            pass
    await server.stop()


async def test_a_server_that_hangs_up_without_answering_is_disconnected(
        client: HttpClient) -> None:
    server = await _serve(replying(keep=False))
    with pytest.raises(Disconnected):
        async with client.post(server.url, b"", {}):
            pass
    await server.stop()


async def test_a_refused_connection_is_connect_failed(client: HttpClient) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connections are refused
        with pytest.raises(ConnectFailed) as raised:
            async with client.post(f"http://127.0.0.1:{port}/", b"", {}):
                pass
    assert isinstance(raised.value.__cause__, ConnectionRefusedError)


async def test_a_connection_that_never_opens_is_a_connect_timeout() -> None:
    # A listener that accepts nothing, its queue filled: the kernel drops further handshakes.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = []
        for _ in range(4):
            f = socket.socket()
            f.setblocking(False)
            f.connect_ex(("127.0.0.1", port))
            fillers.append(f)
        try:
            async with HttpClient(connect_timeout=0.3, pool_size=1) as c:
                with pytest.raises(ConnectTimeout):
                    async with c.post(f"http://127.0.0.1:{port}/", b"", {}):
                        pass
        finally:
            for f in fillers:
                f.close()


async def test_leaving_a_body_unread_closes_its_connection(client: HttpClient) -> None:
    server = await _serve(replying(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                                   b"Transfer-Encoding: chunked\r\n\r\n", b"9\r\ndata: 1\n\n\r\n"))
    async with client.post(server.url, b"", {}) as resp:
        assert await resp.readany() == b"data: 1\n\n"
    await asyncio.wait_for(server.closed.wait(), 10)  # the server saw the hang-up
    assert server.open == 0
    await server.stop()


async def test_a_cancelled_read_closes_its_connection(client: HttpClient) -> None:
    server = await _serve(replying(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345"))
    started = asyncio.Event()

    async def read() -> None:
        async with client.post(server.url, b"", {}) as resp:
            started.set()
            await resp.read()
    task = asyncio.create_task(read())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(server.closed.wait(), 10)
    assert server.open == 0
    await server.stop()


async def test_the_pool_never_opens_more_than_its_size() -> None:
    gate = asyncio.Event()
    arrived = 0

    async def answer(request: bytes, writer: asyncio.StreamWriter) -> bool:
        nonlocal arrived
        arrived += 1
        if arrived == 2:
            gate.set()
        await gate.wait()
        writer.write(OK)
        return True
    server = await _serve(answer)
    async with HttpClient(connect_timeout=2.0, pool_size=2) as c:
        async def one() -> bytes:
            async with c.post(server.url, b"", {}) as resp:
                return await resp.read()
        results = await asyncio.gather(*(one() for _ in range(6)))
    assert results == [b'{"ok":true}'] * 6
    assert (server.most_open, server.connections) == (2, 2)
    await server.stop()


async def test_a_connection_the_server_closed_while_idle_is_not_used(
        client: HttpClient) -> None:
    served = 0

    async def answer(request: bytes, writer: asyncio.StreamWriter) -> bool:
        nonlocal served
        served += 1
        writer.write(OK)
        return served > 1  # the first connection is closed after its answer (no header says so)
    server = await _serve(answer)
    async with client.post(server.url, b"", {}) as resp:
        assert await resp.read() == b'{"ok":true}'
    await asyncio.wait_for(server.closed.wait(), 10)
    async def seen_closed() -> bool:
        return not client._open
    await until(seen_closed, 10, "the client seeing the server's close")
    async with client.post(server.url, b"", {}) as resp:
        assert await resp.read() == b'{"ok":true}'
    assert server.connections == 2
    await server.stop()


async def test_a_slow_reader_holds_the_socket_back() -> None:
    big = b"x" * (8 << 20)
    server = await _serve(replying(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(big),
                                   big))
    async with HttpClient(connect_timeout=2.0, pool_size=1) as c, c.post(server.url, b"", {}) as resp:
        got, most = 0, 0
        while data := await resp.readany():
            got += len(data)
            most = max(most, len(data))
            await asyncio.sleep(0)
    assert got == len(big)
    assert most <= 512 * 1024  # at most one socket read past the pause mark was buffered
    await server.stop()


async def test_a_closed_client_refuses_requests() -> None:
    c = HttpClient(connect_timeout=2.0, pool_size=1)
    await c.close()
    with pytest.raises(ConnectFailed, match="closed"):
        async with c.post("http://127.0.0.1:1/", b"", {}):
            pass


def test_the_client_runs_on_uvloop_as_the_router_does() -> None:
    import uvloop

    async def go() -> tuple[bytes, bytes, int]:
        server = await _serve(replying(OK))
        async with HttpClient(connect_timeout=2.0, pool_size=1) as c:
            async with c.post(server.url, b"", {}) as resp:
                first = await resp.read()
            async with c.post(server.url, b"", {}) as resp:
                second = await resp.read()
        await server.stop()
        return first, second, server.connections
    assert uvloop.run(go()) == (b'{"ok":true}', b'{"ok":true}', 1)


async def test_a_pooled_connection_that_sent_unasked_bytes_is_not_used_again(
        client: HttpClient) -> None:
    released = asyncio.Event()

    async def answer(request: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(OK)
        if not released.is_set():
            await writer.drain()
            await released.wait()  # the client has read the answer and pooled the connection
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstale")  # nobody asked
        return True
    server = await _serve(answer)
    async with client.post(server.url, b"", {}) as resp:
        assert await resp.read() == b'{"ok":true}'
    assert sum(len(idle) for idle in client._idle.values()) == 1
    released.set()
    async def buffered() -> bool:
        return any(conn.buffer for idle in client._idle.values() for conn in idle)
    await until(buffered, 10, "the unasked bytes")
    async with client.post(server.url, b"", {}) as resp:
        assert await resp.read() == b'{"ok":true}'  # not the unasked "stale"
    assert server.connections == 2
    await server.stop()
