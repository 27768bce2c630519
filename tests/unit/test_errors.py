"""The router's error tree: kinds, retryability, and the metadata clients see."""

from __future__ import annotations

import pytest

from xrouter_router.domain.errors import (
    AllAttemptsFailed,
    Attempt,
    DeadlineExceeded,
    ErrorKind,
    InternalError,
    InvalidRequest,
    ModelNotFound,
    NoProvider,
    Unauthenticated,
    UpstreamAuthError,
    UpstreamBadResponse,
    UpstreamConnectError,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamServerError,
    UpstreamTimeout,
    XRouterError,
)


@pytest.mark.parametrize(("cls", "kind", "retryable"), [
    (InvalidRequest, ErrorKind.INVALID_REQUEST, False),
    (Unauthenticated, ErrorKind.UNAUTHENTICATED, False),
    (ModelNotFound, ErrorKind.MODEL_NOT_FOUND, False),
    (NoProvider, ErrorKind.NO_PROVIDER, False),
    (DeadlineExceeded, ErrorKind.TIMEOUT, False),
    (InternalError, ErrorKind.INTERNAL, False),
    (XRouterError, ErrorKind.INTERNAL, False),
])
def test_router_errors_kind_and_retryable(cls: type[XRouterError], kind: ErrorKind,
                                          retryable: bool) -> None:
    err = cls("went wrong", param="messages", metadata={"k": 1}, retry_after=2.5)
    assert (err.kind, err.retryable) == (kind, retryable)
    assert (err.message, str(err), err.param, err.metadata, err.retry_after) == (
        "went wrong", "went wrong", "messages", {"k": 1}, 2.5)


def test_router_error_defaults() -> None:
    err = InvalidRequest("bad")
    assert (err.param, err.metadata, err.retry_after) == ("", {}, 0.0)


@pytest.mark.parametrize(("cls", "kind", "retryable", "reason"), [
    (UpstreamError, ErrorKind.UPSTREAM, True, "error"),
    (UpstreamTimeout, ErrorKind.UPSTREAM, True, "timeout"),
    (UpstreamConnectError, ErrorKind.UPSTREAM, True, "connect"),
    (UpstreamRateLimited, ErrorKind.UPSTREAM, True, "rate_limited"),
    (UpstreamServerError, ErrorKind.UPSTREAM, True, "server_error"),
    (UpstreamAuthError, ErrorKind.UPSTREAM, True, "auth"),
    (UpstreamBadResponse, ErrorKind.UPSTREAM, True, "bad_response"),
    (UpstreamRejected, ErrorKind.INVALID_REQUEST, False, "rejected"),
])
def test_upstream_errors_kind_retryable_and_reason(cls: type[UpstreamError], kind: ErrorKind,
                                                   retryable: bool, reason: str) -> None:
    err = cls("p answered", provider="p")
    assert (err.kind, err.retryable, err.reason) == (kind, retryable, reason)
    assert err.metadata == {"provider_name": "p", "reason": reason}


def test_upstream_error_metadata_carries_status_and_raw() -> None:
    raw = {"error": {"message": "Rate limit reached", "type": "requests"}}
    err = UpstreamRateLimited("p answered HTTP 429", provider="p", status=429, raw=raw,
                              retry_after=7.0)
    assert err.metadata == {"provider_name": "p", "reason": "rate_limited", "status": 429,
                            "raw": raw}
    assert (err.provider, err.status, err.retry_after, err.param) == ("p", 429, 7.0, "")


def test_upstream_error_keeps_a_falsy_raw_that_is_not_none() -> None:
    assert UpstreamServerError("x", provider="p", raw="").metadata == {
        "provider_name": "p", "reason": "server_error", "raw": ""}


def test_all_attempts_failed_metadata_shape() -> None:
    last = UpstreamServerError("b answered HTTP 502", provider="b", status=502, raw="Bad Gateway")
    attempts = [Attempt("m", "a", "m@a", "timeout", 60000, "a did not answer within 60.0s"),
                Attempt("f", "b", "f@b", "server_error", 12, "b answered HTTP 502", 502)]
    err = AllAttemptsFailed(attempts, last)
    assert err.message == "All providers failed: b answered HTTP 502"
    assert (err.kind, err.retryable, err.param, err.retry_after) == (ErrorKind.UPSTREAM, False, "", 0.0)
    assert err.attempts == tuple(attempts)
    assert err.last is last
    assert err.metadata == {
        "attempts": [
            {"provider_name": "a", "model": "m", "reason": "timeout", "status": 0,
             "message": "a did not answer within 60.0s"},
            {"provider_name": "b", "model": "f", "reason": "server_error", "status": 502,
             "message": "b answered HTTP 502"},
        ],
        "provider_name": "b",
        "raw": "Bad Gateway",
    }


def test_all_attempts_failed_without_a_last_error() -> None:
    err = AllAttemptsFailed([], None)
    assert err.message == "All providers failed: no deployment could be tried"
    assert err.metadata == {"attempts": []}
