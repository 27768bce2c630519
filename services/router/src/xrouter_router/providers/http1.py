"""XRouter's HTTP/1.1 client for upstream calls: pooled keep-alive connections on asyncio
protocols, a response read as it arrives, and nothing else (no cookies, redirects, proxies or
tracing hooks). It does per request about a quarter of aiohttp's CPU work; figures in
docs/performance.md. The wire format without I/O is in http1_wire.py."""

from __future__ import annotations

import asyncio
import ssl
import zlib
from collections import deque
from collections.abc import Mapping
from types import TracebackType
from typing import cast

from xrouter_router.providers.http1_wire import (
    MAX_HEAD,
    BadResponse,
    BodyCut,
    ConnectFailed,
    ConnectTimeout,
    Dechunker,
    Disconnected,
    Head,
    Headers,
    Target,
    decoder,
    parse_head,
    request_head,
    target,
)

_PAUSE_AT = 256 * 1024
"""Unread bytes at which the socket stops being read, until the reader catches up."""
_KEEPALIVE = 15.0
"""Seconds an idle connection is kept for reuse (aiohttp's default)."""
_Key = tuple[bool, str, int]


class _Conn(asyncio.Protocol):
    """One connection: what arrived and not yet read, and whether it has ended."""

    def __init__(self, client: HttpClient, key: _Key) -> None:
        self.client = client
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.eof = False
        self.error: BaseException | None = None
        self.idle_since = 0.0
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > _PAUSE_AT and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self.error = exc
        self.client._forget(self)
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self) -> None:
        """Until more bytes arrive or the connection ends."""
        if self.eof:
            return
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def take(self, n: int = -1) -> bytes:
        buf = self.buffer
        if n < 0 or n >= len(buf):
            data = bytes(buf)
            buf.clear()
        else:
            data = bytes(buf[:n])
            del buf[:n]
        if self._paused and len(buf) < _PAUSE_AT // 4 and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return data

    def usable(self, since: float) -> bool:
        """Open, idle since `since` or later, and silent since (bytes nobody asked for would be
        read as the next answer)."""
        return (not self.eof and not self.buffer and self.transport is not None
                and not self.transport.is_closing() and self.idle_since >= since)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        self.client._forget(self)


class Response:
    """A response whose head has arrived; its body is read with read() or readany()."""

    __slots__ = ("_chunks", "_conn", "_decoder", "_done", "_keep", "_left", "content_type",
                 "headers", "reason", "status")

    def __init__(self, conn: _Conn, head: Head) -> None:
        self.status = head.status
        self.reason = head.reason
        self.headers: Headers = head.headers
        self.content_type = head.content_type
        self._conn = conn
        self._left = head.length
        self._chunks = Dechunker() if head.chunked else None
        self._decoder = decoder(head.headers)
        self._keep = head.keep_alive
        self._done = False
        if head.length == 0:
            self._finish(b"", keep_alive=head.keep_alive)
        elif head.length is None and not head.chunked:
            self._left = -1  # the body ends where the connection does

    async def read(self) -> bytes:
        """The whole (rest of the) body."""
        parts = []
        while data := await self.readany():
            parts.append(data)
        return b"".join(parts)

    async def readany(self) -> bytes:
        """The body bytes that have arrived (waiting for some), or b"" at its end. A connection
        ending inside the body raises BodyCut after the bytes that came before it."""
        conn = self._conn
        while not self._done:
            data, extra = self._take(conn) if conn.buffer else (b"", b"")
            if self._decoder is not None and data:
                data = self._decompress(data)
            if self._done:
                data += self._flushed()
                self._finish(extra, keep_alive=self._keep)
            if data:
                return data
            if self._done:
                break
            if conn.eof:
                if self._left == -1 and conn.error is None:  # framed by the connection's end
                    self._done = True
                    tail = self._flushed()
                    self._finish(b"", keep_alive=False)
                    if tail:
                        return tail
                    break
                raise BodyCut("the connection ended inside the response body")
            await conn.wait()
        return b""

    def _take(self, conn: _Conn) -> tuple[bytes, bytes]:
        if self._chunks is not None:
            data, extra = self._chunks.feed(conn.take())
            self._done = self._chunks.done
            return data, extra
        left = self._left
        if left is None or left == -1:
            return conn.take(), b""
        data = conn.take(left)
        self._left = left = left - len(data)
        self._done = left == 0
        return data, b""

    def _decompress(self, data: bytes) -> bytes:
        assert self._decoder is not None
        try:
            return self._decoder.decompress(data)
        except zlib.error as exc:
            raise BadResponse("the compressed body does not decompress") from exc

    def _flushed(self) -> bytes:
        if self._decoder is None:
            return b""
        try:
            return self._decoder.flush()
        except zlib.error as exc:
            raise BadResponse("the compressed body does not decompress") from exc

    def _finish(self, extra: bytes, *, keep_alive: bool) -> None:
        """The body is complete: the connection goes back to the pool when it can serve again."""
        self._done = True
        conn = self._conn
        if keep_alive and not extra and not conn.buffer and not conn.eof:
            conn.client._release(conn)
        else:
            conn.close()

    def abandon(self) -> None:
        """The caller is done before the body's end: the connection is closed, which is what
        tells the upstream to stop."""
        if not self._done:
            self._done = True
            self._conn.close()


class _Exchange:
    """`async with client.post(...) as response:`; leaving early closes the connection."""

    __slots__ = ("_body", "_client", "_headers", "_method", "_response", "_url")

    def __init__(self, client: HttpClient, method: bytes, url: str, body: bytes,
                 headers: Mapping[str, str]) -> None:
        self._client = client
        self._method = method
        self._url = url
        self._body = body
        self._headers = headers
        self._response: Response | None = None

    async def __aenter__(self) -> Response:
        client = self._client
        t = client.target(self._url)
        head = request_head(self._method, t, self._headers, len(self._body))
        conn = await client._acquire(t)
        try:
            assert conn.transport is not None
            conn.transport.writelines((head, self._body))
            self._response = Response(conn, await _read_head(conn))
        except BaseException:
            conn.close()
            raise
        return self._response

    async def __aexit__(self, et: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._response is not None:
            self._response.abandon()


async def _read_head(conn: _Conn) -> Head:
    while True:
        buf = conn.buffer
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            raw = bytes(buf[:end])
            del buf[:end + 4]
            head = parse_head(raw.lstrip(b"\r\n"))
            if 100 <= head.status < 200:
                if head.status == 101:
                    raise BadResponse("the server switched protocols")
                continue
            return head
        if len(buf) > MAX_HEAD:
            raise BadResponse("the response head is too large")
        if conn.eof:
            if buf:
                raise BadResponse("the connection ended inside the response head")
            raise Disconnected("the server closed the connection without answering")
        await conn.wait()


class HttpClient:
    """Pooled keep-alive HTTP/1.1 connections to any number of origins, at most `pool_size`
    open at once; `tls`: None verifies with the system's CAs, a context verifies with it, False
    does not verify."""

    def __init__(self, *, connect_timeout: float, pool_size: int,
                 tls: ssl.SSLContext | bool | None = None) -> None:
        self.connect_timeout = connect_timeout
        self.pool_size = pool_size
        self._tls = tls
        self._context: ssl.SSLContext | None = tls if isinstance(tls, ssl.SSLContext) else None
        self._idle: dict[_Key, list[_Conn]] = {}
        self._open: set[_Conn] = set()
        self._connecting = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._targets: dict[str, Target] = {}
        self.closed = False

    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> _Exchange:
        """POST `body` to `url`; `headers` must not name Host or Content-Length."""
        return _Exchange(self, b"POST", url, body, headers)

    def get(self, url: str, headers: Mapping[str, str] | None = None) -> _Exchange:
        """GET `url` (redirects are the caller's to follow)."""
        return _Exchange(self, b"GET", url, b"", headers or {})

    def target(self, url: str) -> Target:
        t = self._targets.get(url)
        if t is None:
            try:
                t = target(url)
            except ValueError as exc:
                raise ConnectFailed(f"invalid URL: {exc}") from exc
            if len(self._targets) >= 4096:
                self._targets.clear()
            self._targets[url] = t
        return t

    async def _acquire(self, t: Target) -> _Conn:
        if self.closed:
            raise ConnectFailed("the HTTP client is closed")
        key = (t.tls, t.host, t.port)
        if (conn := self._idle_conn(key)) is not None:
            return conn
        while len(self._open) + self._connecting >= self.pool_size:
            if not self._close_an_idle():
                waiter = asyncio.get_running_loop().create_future()
                self._waiters.append(waiter)
                try:
                    await waiter
                finally:
                    if waiter in self._waiters:
                        self._waiters.remove(waiter)
                if self.closed:
                    raise ConnectFailed("the HTTP client is closed")
                if (conn := self._idle_conn(key)) is not None:
                    return conn
        self._connecting += 1
        try:
            conn = await self._connect(t, key)
        finally:
            self._connecting -= 1
            self._wake_one()
        return conn

    def _idle_conn(self, key: _Key) -> _Conn | None:
        """The most recently pooled connection to `key` that can serve again; the others found
        on the way (closed, stale, or holding unasked bytes) are closed."""
        idle = self._idle.get(key)
        since = asyncio.get_running_loop().time() - _KEEPALIVE
        while idle:
            conn = idle.pop()
            if conn.usable(since):
                return conn
            conn.close()
        return None

    async def _connect(self, t: Target, key: _Key) -> _Conn:
        loop = asyncio.get_running_loop()
        context = self._ssl_context() if t.tls else None
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, conn = await loop.create_connection(
                    lambda: _Conn(self, key), t.host, t.port, ssl=context,
                    server_hostname=t.host if context is not None else None)
        except TimeoutError as exc:
            raise ConnectTimeout(f"connecting took over {self.connect_timeout:g} s") from exc
        except OSError as exc:
            raise ConnectFailed(type(exc).__name__) from exc
        self._open.add(conn)
        if self.closed:
            conn.close()
            raise ConnectFailed("the HTTP client is closed")
        return conn

    def _ssl_context(self) -> ssl.SSLContext:
        if self._context is None:
            context = ssl.create_default_context()
            if self._tls is False:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            self._context = context
        return self._context

    def _close_an_idle(self) -> bool:
        for idle in self._idle.values():
            if idle:
                idle.pop(0).close()
                return True
        return False

    def _release(self, conn: _Conn) -> None:
        if self.closed or conn not in self._open:
            conn.close()
            return
        conn.idle_since = asyncio.get_running_loop().time()
        self._idle.setdefault(conn.key, []).append(conn)
        self._wake_one()

    def _forget(self, conn: _Conn) -> None:
        if conn in self._open:
            self._open.discard(conn)
            idle = self._idle.get(conn.key)
            if idle and conn in idle:
                idle.remove(conn)
            self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def close(self) -> None:
        """Closes every connection; requests after this fail with ConnectFailed."""
        self.closed = True
        for conn in list(self._open):
            conn.close()
        self._idle.clear()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
        await asyncio.sleep(0)

    async def __aenter__(self) -> HttpClient:
        return self

    async def __aexit__(self, et: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()
