"""The guarded HTTP protocol fed chunk by chunk (a stand-in transport records what it writes):
header bytes are bounded as they arrive, whatever the chunking."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import uvicorn
from uvicorn.server import ServerState

from xrouter_gateway.http_protocol import ConnectionLimits, GuardedProtocol

LIMITS = ConnectionLimits(header_timeout=60.0, body_timeout=60.0, max_header_bytes=4096,
                          max_connections=10)


class Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = b""
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += bytes(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 5000) if name in ("peername", "sockname") else default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def _app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def serving(app: Any) -> tuple[GuardedProtocol, Transport]:
    cls = type("P", (GuardedProtocol,), {"limits": LIMITS})
    config = uvicorn.Config(app, proxy_headers=False, lifespan="off")
    proto = cls(config=config, server_state=ServerState(), app_state={},
                _loop=asyncio.get_running_loop())
    transport = Transport()
    proto.connection_made(transport)
    return proto, transport


@pytest.fixture
async def protocol() -> tuple[GuardedProtocol, Transport]:
    return serving(_app)


async def test_an_answers_last_bytes_leave_as_they_are_sent() -> None:
    """Writes are kept until the end of the loop iteration (corked.py), but the answer's last
    ones leave at once: the layers above still have their bookkeeping to do in this turn."""
    written: dict[str, bytes] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"5")]})
        await send({"type": "http.response.body", "body": b"he", "more_body": True})
        written["kept"] = transport.written
        await send({"type": "http.response.body", "body": b"llo"})
        written["answered"] = transport.written
    proto, transport = serving(app)
    proto.data_received(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
    await asyncio.gather(*proto.tasks)
    assert written["kept"] == b""
    assert written["answered"].startswith(b"HTTP/1.1 200 OK\r\n")
    assert written["answered"].endswith(b"\r\n\r\nhello")
    assert transport.written == written["answered"]


async def test_a_header_line_that_never_ends_is_refused_as_it_grows(
        protocol: tuple[GuardedProtocol, Transport]) -> None:
    proto, transport = protocol
    proto.data_received(b"GET /livez HTTP/1.1\r\nHost: x\r\nX-Endless: ")
    sent = 0
    while not transport.closed:
        proto.data_received(b"a" * 512)
        sent += 512
        assert sent <= 2 * LIMITS.max_header_bytes
    assert transport.written.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
    assert transport.written.endswith(b'"The request headers are larger than 4096 bytes",'
                                      b'"type":"request_too_large","code":431,"param":null,'
                                      b'"metadata":{}}}')


async def test_headers_under_the_limit_in_many_chunks_are_served(
        protocol: tuple[GuardedProtocol, Transport]) -> None:
    proto, transport = protocol
    request = b"GET /livez HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 3000 + b"\r\n\r\n"
    for i in range(0, len(request), 100):
        proto.data_received(request[i:i + 100])
    await asyncio.gather(*proto.tasks)  # the request has been answered
    assert transport.written.startswith(b"HTTP/1.1 204 No Content\r\n")
    assert not transport.closed
