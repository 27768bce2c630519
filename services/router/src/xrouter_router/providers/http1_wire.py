"""HTTP/1.1 on the wire, without I/O: the errors of XRouter's upstream client, request heads,
response heads, and how a response body is framed (RFC 9112). The client is in http1.py."""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_HEAD = 64 * 1024
"""A response head larger than this is not an HTTP answer we accept."""


class HttpClientError(Exception):
    """Base of the upstream client's errors; http.py's boundary turns them into UpstreamErrors."""


class ConnectFailed(HttpClientError):
    """No connection could be opened (refused, unreachable, name unknown, TLS handshake)."""


class ConnectTimeout(ConnectFailed):
    """Opening the connection took longer than the client's connect timeout."""


class Disconnected(HttpClientError):
    """The server closed the connection before it had sent a whole response head."""


class BodyCut(HttpClientError):
    """The connection ended inside the response body."""


class BadResponse(HttpClientError):
    """What the server sent is not an HTTP/1.1 response."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where a URL's requests go: the pool key, and the bytes every request head repeats."""

    tls: bool
    host: str
    port: int
    path: bytes
    host_header: bytes


def target(url: str) -> Target:
    """`http(s)://host[:port]/path?query` -> its Target; a ValueError for anything else."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    host = parts.hostname
    shown = f"[{host}]" if ":" in host else host
    if port != (443 if tls else 80):
        shown = f"{shown}:{port}"
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return Target(tls, host, port, path.encode("ascii"), shown.encode("idna"))


USER_AGENT = "XRouter"


def request_head(method: bytes, t: Target, headers: Mapping[str, str], length: int) -> bytes:
    """The request line and headers (User-Agent: XRouter unless `headers` names one); `headers`
    must not name Host or Content-Length, which come from the target and the body."""
    lines = [b"%s %s HTTP/1.1\r\nHost: %s\r\n" % (method, t.path, t.host_header)]
    if length or method != b"GET":
        lines.append(b"Content-Length: %d\r\n" % length)
    agent = True
    for name, value in headers.items():
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name or ":" in name:
            raise ValueError(f"header {name!r} has a line break or colon in it")
        lines.append(f"{name}: {value}\r\n".encode("latin-1"))
        if agent and name.lower() == "user-agent":
            agent = False
    if agent:
        lines.append(b"User-Agent: %s\r\n" % USER_AGENT.encode())
    lines.append(b"\r\n")
    return b"".join(lines)


class Headers(Mapping[str, str]):
    """Response headers by lower-case name; a repeated header's values joined by ", "."""

    __slots__ = ("_values",)

    def __init__(self, values: dict[str, str]) -> None:
        self._values = values

    def __getitem__(self, name: str) -> str:
        return self._values[name.lower()]

    def get(self, name: str, default: str | None = None) -> str | None:  # type: ignore[override]
        return self._values.get(name.lower(), default)

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


@dataclass(frozen=True, slots=True)
class Head:
    """A parsed response head and what it says about the body and the connection."""

    version: int
    status: int
    reason: str
    headers: Headers
    length: int | None
    """Content-Length; None when chunked or read until the connection closes."""
    chunked: bool
    keep_alive: bool

    @property
    def content_type(self) -> str:
        """The media type, lower case without parameters (aiohttp's default when missing)."""
        value = self.headers.get("content-type")
        if not value:
            return "application/octet-stream"
        return value.split(";", 1)[0].strip().lower()


def parse_head(raw: bytes, *, head_request: bool = False) -> Head:
    """A response head without its closing blank line -> Head; a BadResponse for what is not."""
    try:
        text = raw.decode("latin-1")
    except UnicodeDecodeError as exc:  # pragma: no cover - latin-1 decodes every byte
        raise BadResponse("undecodable response head") from exc
    status_line, *lines = text.split("\r\n")
    version, status, reason = _status_line(status_line)
    values: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip() or not _token(name):
            raise BadResponse(f"invalid header line {line[:80]!r}")
        key = name.lower()
        value = value.strip(" \t")
        values[key] = f"{values[key]}, {value}" if key in values else value
    headers = Headers(values)
    connection = {v.strip().lower() for v in values.get("connection", "").split(",")}
    keep_alive = "close" not in connection if version == 11 else "keep-alive" in connection
    if head_request or status in (204, 304) or 100 <= status < 200:
        return Head(version, status, reason, headers, 0, False, keep_alive)
    codings = [c.strip().lower() for c in values.get("transfer-encoding", "").split(",") if c.strip()]
    if codings:
        if codings[-1] != "chunked":
            # Only the connection's end can tell where such a body ends (RFC 9112 6.3).
            return Head(version, status, reason, headers, None, False, False)
        return Head(version, status, reason, headers, None, True, keep_alive)
    if "content-length" in values:
        return Head(version, status, reason, headers, _length(values["content-length"]), False,
                    keep_alive)
    return Head(version, status, reason, headers, None, False, False)


def _status_line(line: str) -> tuple[int, int, str]:
    proto, _, rest = line.partition(" ")
    code, _, reason = rest.partition(" ")
    if proto not in ("HTTP/1.1", "HTTP/1.0") or len(code) != 3 or not code.isdigit():
        raise BadResponse(f"invalid status line {line[:80]!r}")
    return (11 if proto == "HTTP/1.1" else 10), int(code), reason


_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _token(name: str) -> bool:
    return all(c in _TCHAR for c in name)


def _length(value: str) -> int:
    """Content-Length, where a repeated header must repeat the same number."""
    values = {v.strip() for v in value.split(",")}
    if len(values) != 1:
        raise BadResponse(f"conflicting Content-Length {value[:80]!r}")
    (text,) = values
    if not text.isdigit() or len(text) > 18:
        raise BadResponse(f"invalid Content-Length {value[:80]!r}")
    return int(text)


class Dechunker:
    """Takes a chunked body's bytes as they come; gives back the data, and says when it ended."""

    __slots__ = ("_buffer", "_left", "_state", "done")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._left = 0
        self._state = "size"  # size -> data -> crlf -> size ... -> trailer -> done
        self.done = False

    def feed(self, data: bytes) -> tuple[bytes, bytes]:
        """(the body data in `data`, what came after the body's end: the next response's)."""
        self._buffer += data
        out = bytearray()
        buf = self._buffer
        while not self.done:
            if self._state == "data":
                take = min(self._left, len(buf))
                out += buf[:take]
                del buf[:take]
                self._left -= take
                if self._left:
                    break
                self._state = "crlf"
            end = buf.find(b"\r\n")
            if end < 0:
                if len(buf) > 4096:
                    raise BadResponse("chunk size line too long")
                break
            line = bytes(buf[:end])
            del buf[:end + 2]
            if self._state == "crlf":
                if line:
                    raise BadResponse("chunk not followed by CRLF")
                self._state = "size"
            elif self._state == "size":
                self._left = _chunk_size(line)
                self._state = "data" if self._left else "trailer"
            elif not line:  # the blank line that ends the trailer section
                self.done = True
        rest = bytes(buf) if self.done else b""
        if self.done:
            buf.clear()
        return bytes(out), rest


def _chunk_size(line: bytes) -> int:
    size = line.split(b";", 1)[0].strip()
    if not size or len(size) > 15 or any(c not in b"0123456789abcdefABCDEF" for c in size):
        raise BadResponse(f"invalid chunk size {line[:40]!r}")
    return int(size, 16)


def decoder(headers: Headers) -> zlib._Decompress | None:
    """A decompressor for a gzip or deflate Content-Encoding, None for identity; a BadResponse
    for a coding we never asked for and cannot read."""
    coding = (headers.get("content-encoding") or "identity").strip().lower()
    if coding in ("identity", ""):
        return None
    if coding in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if coding == "deflate":
        return zlib.decompressobj(zlib.MAX_WBITS)
    raise BadResponse(f"unsupported Content-Encoding {coding[:40]!r}")
