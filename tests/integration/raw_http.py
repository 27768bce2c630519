"""A minimal HTTP/1.1 client over one raw socket: sends bytes exactly as given (non-ASCII header
values, partial requests) and tells whether the server kept the connection open."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

import orjson

# Bounds the wait for an answer the server owes at once; a hang fails the test instead of CI.
ANSWER_TIMEOUT = 10.0


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


def request_bytes(path: str, body: bytes | None = None, headers: dict[str, bytes] | None = None,
                  method: str = "POST") -> bytes:
    head = [f"{method} {path} HTTP/1.1".encode(), b"Host: 127.0.0.1"]
    head += [name.encode() + b": " + value for name, value in (headers or {}).items()]
    if body is not None:
        head += [b"Content-Type: application/json", b"Content-Length: " + str(len(body)).encode()]
    return b"\r\n".join(head) + b"\r\n\r\n" + (body or b"")


class RawConnection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, url: str) -> RawConnection:
        host, port = url.removeprefix("http://").split(":")
        return cls(*await asyncio.open_connection(host, int(port)))

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def response(self) -> RawResponse:
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), ANSWER_TIMEOUT)
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        body = await asyncio.wait_for(self.reader.readexactly(length), ANSWER_TIMEOUT)
        return RawResponse(int(status_line.split(" ")[1]), headers, body)

    async def exchange(self, data: bytes) -> RawResponse:
        await self.send(data)
        return await self.response()

    async def closed_by_server(self) -> bool:
        """True once the server has closed its side (EOF with nothing more sent)."""
        return await asyncio.wait_for(self.reader.read(1), ANSWER_TIMEOUT) == b""

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()
