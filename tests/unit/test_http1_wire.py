"""The upstream client's HTTP/1.1 wire format without I/O: request heads, response heads and
their body framing, chunked bodies however they are split."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xrouter_router.providers.http1_wire import (
    BadResponse,
    Dechunker,
    parse_head,
    request_head,
    target,
)


def test_a_target_keeps_the_query_and_names_a_non_default_port_in_host() -> None:
    t = target("http://127.0.0.1:8080/v1/chat/completions?alt=sse")
    assert (t.tls, t.host, t.port, t.path, t.host_header) == (
        False, "127.0.0.1", 8080, b"/v1/chat/completions?alt=sse", b"127.0.0.1:8080")
    t = target("https://api.example.com/v1")
    assert (t.tls, t.port, t.host_header) == (True, 443, b"api.example.com")
    assert target("http://[::1]:9/").host_header == b"[::1]:9"
    assert target("http://example.com").path == b"/"


@pytest.mark.parametrize("url", ["ftp://example.com/", "http:///x", "example.com/v1"])
def test_what_is_not_an_http_url_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="not an http"):
        target(url)


def test_a_request_head_is_exact() -> None:
    t = target("http://127.0.0.1:8080/v1/x?a=1")
    assert request_head(b"POST", t, {"Content-Type": "application/json"}, 2) == (
        b"POST /v1/x?a=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nContent-Length: 2\r\n"
        b"Content-Type: application/json\r\nUser-Agent: XRouter\r\n\r\n")
    assert request_head(b"GET", t, {"user-agent": "cbr-fetch"}, 0) == (
        b"GET /v1/x?a=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nuser-agent: cbr-fetch\r\n\r\n")


@pytest.mark.parametrize("headers", [{"X-Id": "a\r\nX-Evil: 1"}, {"X-Id": "a\nb"},
                                     {"X\r\nEvil": "1"}, {"X:Id": "1"}])
def test_a_header_that_would_split_the_head_is_refused(headers: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="line break or colon"):
        request_head(b"POST", target("http://h/"), headers, 0)


def test_a_head_with_content_length_keeps_the_connection() -> None:
    head = parse_head(b"HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\n"
                      b"Content-Length: 12\r\nRetry-After: 3\r\nX-A: 1\r\nx-a: 2")
    assert (head.status, head.reason, head.length, head.chunked, head.keep_alive) == (
        200, "OK", 12, False, True)
    assert head.content_type == "application/json"
    assert (head.headers.get("retry-after"), head.headers["X-A"], head.headers.get("nope")) == (
        "3", "1, 2", None)


@pytest.mark.parametrize(("raw", "length", "chunked", "keep_alive"), [
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked", None, True, True),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 5", None, True, True),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip", None, False, False),
    (b"HTTP/1.1 200 OK", None, False, False),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close", 3, False, False),
    (b"HTTP/1.0 200 OK\r\nContent-Length: 3", 3, False, False),
    (b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\nConnection: Keep-Alive", 3, False, True),
    (b"HTTP/1.1 204 No Content", 0, False, True),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 7, 7", 7, False, True),
])
def test_the_head_says_how_the_body_ends(raw: bytes, length: int | None, chunked: bool,
                                         keep_alive: bool) -> None:
    head = parse_head(raw)
    assert (head.length, head.chunked, head.keep_alive) == (length, chunked, keep_alive)


@pytest.mark.parametrize("raw", [
    b"HTTP/2 200 OK", b"ICY 200 OK", b"HTTP/1.1 20 OK", b"HTTP/1.1 abc OK",
    b"HTTP/1.1 200 OK\r\nno colon here", b"HTTP/1.1 200 OK\r\n Folded: x",
    b"HTTP/1.1 200 OK\r\nBad Name: x", b"HTTP/1.1 200 OK\r\nContent-Length: 3, 4",
    b"HTTP/1.1 200 OK\r\nContent-Length: -1", b"HTTP/1.1 200 OK\r\nContent-Length: 0x10",
])
def test_what_is_not_a_response_head_is_a_bad_response(raw: bytes) -> None:
    with pytest.raises(BadResponse):
        parse_head(raw)


def test_a_missing_content_type_reads_as_octet_stream() -> None:
    assert parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 0").content_type == (
        "application/octet-stream")


def _chunked(parts: list[bytes]) -> bytes:
    out = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(p), p) for p in parts if p)
    return out + b"0\r\nX-Trailer: yes\r\n\r\n"


@given(st.lists(st.binary(max_size=300), max_size=8), st.lists(st.integers(1, 50), max_size=30))
def test_a_chunked_body_reads_the_same_however_it_is_split(parts: list[bytes],
                                                           cuts: list[int]) -> None:
    wire = _chunked(parts) + b"HTTP/1.1 next"
    d = Dechunker()
    got, rest, at = bytearray(), b"", 0
    for size in [*cuts, len(wire)]:
        piece = wire[at:at + size]
        at += size
        data, rest = d.feed(piece)
        got += data
        if d.done:
            break
    assert d.done
    assert (bytes(got), rest + wire[at:]) == (b"".join(parts), b"HTTP/1.1 next")


@pytest.mark.parametrize("wire", [b"zz\r\n", b"5\r\nhelloX\r\n", b"-1\r\n", b"1" * 5000])
def test_a_broken_chunked_body_is_a_bad_response(wire: bytes) -> None:
    with pytest.raises(BadResponse):
        Dechunker().feed(wire)
