"""Upstream HTTP statuses and the HTTP client's failures become the right UpstreamError, with the
provider's body as raw."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from xrouter_router.domain.errors import (
    UpstreamAuthError,
    UpstreamBadResponse,
    UpstreamConnectError,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamServerError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from xrouter_router.providers.http import error_for_status, raw_error, upstream_errors
from xrouter_router.providers.http1_wire import (
    BadResponse,
    BodyCut,
    ConnectFailed,
    ConnectTimeout,
    Disconnected,
)


@pytest.mark.parametrize(("status", "cls", "retryable"), [
    (401, UpstreamAuthError, True),
    (403, UpstreamAuthError, True),
    (429, UpstreamRateLimited, True),
    (408, UpstreamTimeout, True),
    (504, UpstreamTimeout, True),
    (500, UpstreamServerError, True),
    (502, UpstreamServerError, True),
    (503, UpstreamServerError, True),
    (529, UpstreamServerError, True),
    (400, UpstreamRejected, False),
    (404, UpstreamUnavailable, True),
    (402, UpstreamUnavailable, True),
    (413, UpstreamRejected, False),
    (422, UpstreamRejected, False),
])
def test_status_maps_to_error_class(status: int, cls: type[UpstreamError], retryable: bool) -> None:
    err = error_for_status("up", status, b'{"error":{"message":"no"}}', None)
    assert type(err) is cls
    assert err.retryable is retryable
    assert err.message == f"up answered HTTP {status}"
    assert (err.provider, err.status, err.retry_after) == ("up", status, 0.0)
    assert err.metadata == {"provider_name": "up", "reason": cls.reason, "status": status,
                            "raw": {"error": {"message": "no"}}}


def test_a_given_message_replaces_the_default() -> None:
    assert error_for_status("up", 500, b"", None, "up is down").message == "up is down"


@pytest.mark.parametrize(("header", "seconds"), [
    ("7", 7.0), ("0.5", 0.5), ("-3", 0.0), ("", 0.0), (None, 0.0), ("soon", 0.0),
    ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
])
def test_rate_limited_reads_retry_after_seconds(header: str | None, seconds: float) -> None:
    err = error_for_status("up", 429, b"{}", header)
    assert isinstance(err, UpstreamRateLimited)
    assert err.retry_after == seconds


def test_raw_is_json_when_the_body_is_json() -> None:
    assert raw_error(b'{"error": {"message": "bad key", "code": "invalid_api_key"}}') == {
        "error": {"message": "bad key", "code": "invalid_api_key"}}
    assert raw_error(b'["x"]') == ["x"]


def test_raw_is_text_truncated_to_2000_characters_otherwise() -> None:
    assert raw_error(b"<html>502 Bad Gateway</html>") == "<html>502 Bad Gateway</html>"
    assert raw_error(b"x" * 5000) == "x" * 2000
    assert raw_error(b"") == ""


def test_raw_text_replaces_invalid_utf8_and_a_cut_character() -> None:
    # 1999 ASCII bytes, then a two-byte character cut in half by the limit.
    assert raw_error(b"a" * 1999 + "é".encode() + b"tail") == "a" * 1999 + "\ufffd"
    assert raw_error(b"bad \xff byte") == "bad \ufffd byte"


def test_error_for_status_keeps_text_bodies_as_raw() -> None:
    err = error_for_status("up", 502, b"upstream connect error", None)
    assert err.metadata["raw"] == "upstream connect error"


def _raised_through(exc: BaseException) -> BaseException:
    try:
        with upstream_errors("up"):
            raise exc
    except BaseException as out:  # noqa: BLE001 - the test inspects whatever comes out
        return out
    raise AssertionError("nothing was raised")


def _caused(exc: BaseException, cause: BaseException) -> BaseException:
    exc.__cause__ = cause
    return exc


@pytest.mark.parametrize(("exc", "cls", "message"), [
    (BodyCut("the connection ended inside the response body"), UpstreamBadResponse,
     "up cut the response short"),
    (ConnectTimeout("connecting took over 2 s"), UpstreamTimeout, "up timed out"),
    (_caused(ConnectFailed("ConnectionRefusedError"), ConnectionRefusedError(111, "refused")),
     UpstreamConnectError, "could not reach up: ConnectionRefusedError"),
    (Disconnected("the server closed the connection without answering"), UpstreamConnectError,
     "could not reach up: Disconnected"),
    (ConnectionResetError(104, "reset"), UpstreamConnectError,
     "could not reach up: ConnectionResetError"),
    (BadResponse("invalid status line 'HTTP/2 200'"), UpstreamBadResponse,
     "up sent an invalid HTTP response"),
    (orjson.JSONDecodeError("unexpected end of data", "{", 1), UpstreamBadResponse,
     "up sent a body that is not its wire format"),
    (KeyError("choices"), UpstreamBadResponse, "up sent a body that is not its wire format"),
])
def test_upstream_errors_translates_io_and_format_failures(exc: BaseException,
                                                           cls: type[UpstreamError],
                                                           message: str) -> None:
    out = _raised_through(exc)
    assert type(out) is cls
    assert isinstance(out, UpstreamError)
    assert (out.message, out.provider) == (message, "up")
    assert out.__cause__ is exc


@pytest.mark.parametrize("exc", [
    UpstreamRateLimited("up answered HTTP 429", provider="up", status=429),
    TimeoutError(),
    asyncio.CancelledError(),
    RuntimeError("a bug"),
])
def test_upstream_errors_lets_everything_else_through_unchanged(exc: BaseException) -> None:
    assert _raised_through(exc) is exc
