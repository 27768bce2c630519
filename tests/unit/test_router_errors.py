"""The router's one error table: every ErrorKind to a gRPC status and an ErrorDetail kind."""

from __future__ import annotations

import grpc
import orjson
import pytest

from xrouter.v1 import router_pb2 as pb
from xrouter_router.domain.errors import (
    ErrorKind,
    InvalidRequest,
    NoProvider,
    UpstreamRateLimited,
    XRouterError,
)
from xrouter_router.transport.errors import status_of, to_detail

TABLE = {
    ErrorKind.INVALID_REQUEST: (grpc.StatusCode.INVALID_ARGUMENT, pb.ERROR_KIND_INVALID_REQUEST),
    ErrorKind.UNAUTHENTICATED: (grpc.StatusCode.UNAUTHENTICATED, pb.ERROR_KIND_UNAUTHENTICATED),
    ErrorKind.INSUFFICIENT_CREDITS: (grpc.StatusCode.RESOURCE_EXHAUSTED,
                                     pb.ERROR_KIND_INSUFFICIENT_CREDITS),
    ErrorKind.FORBIDDEN: (grpc.StatusCode.PERMISSION_DENIED, pb.ERROR_KIND_FORBIDDEN),
    ErrorKind.MODEL_NOT_FOUND: (grpc.StatusCode.NOT_FOUND, pb.ERROR_KIND_MODEL_NOT_FOUND),
    ErrorKind.TIMEOUT: (grpc.StatusCode.DEADLINE_EXCEEDED, pb.ERROR_KIND_TIMEOUT),
    ErrorKind.RATE_LIMITED: (grpc.StatusCode.RESOURCE_EXHAUSTED, pb.ERROR_KIND_RATE_LIMITED),
    ErrorKind.UPSTREAM: (grpc.StatusCode.UNKNOWN, pb.ERROR_KIND_UPSTREAM),
    ErrorKind.NO_PROVIDER: (grpc.StatusCode.FAILED_PRECONDITION, pb.ERROR_KIND_NO_PROVIDER),
    ErrorKind.UNAVAILABLE: (grpc.StatusCode.INTERNAL, pb.ERROR_KIND_UNAVAILABLE),
    ErrorKind.INTERNAL: (grpc.StatusCode.INTERNAL, pb.ERROR_KIND_INTERNAL),
}


def _error_of_kind(kind: ErrorKind) -> XRouterError:
    err = XRouterError("boom")
    err.kind = kind
    return err


def test_the_table_covers_every_kind() -> None:
    assert set(TABLE) == set(ErrorKind)


@pytest.mark.parametrize("kind", list(ErrorKind))
def test_every_kind_maps_to_a_status_and_detail_kind(kind: ErrorKind) -> None:
    err = _error_of_kind(kind)
    assert (status_of(err), to_detail(err).kind) == TABLE[kind]


@pytest.mark.parametrize("kind", list(ErrorKind))
def test_unavailable_is_never_used(kind: ErrorKind) -> None:
    assert status_of(_error_of_kind(kind)) is not grpc.StatusCode.UNAVAILABLE


def test_detail_carries_message_param_metadata_and_retry_after() -> None:
    err = InvalidRequest("max_tokens is too large", param="max_tokens",
                         metadata={"limit": 4096}, retry_after=1.5)
    assert to_detail(err) == pb.ErrorDetail(
        kind=pb.ERROR_KIND_INVALID_REQUEST, message="max_tokens is too large", param="max_tokens",
        metadata_json=b'{"limit":4096}', retry_after=1.5)


def test_detail_of_an_error_without_metadata_has_empty_metadata_json() -> None:
    assert to_detail(XRouterError("x")).metadata_json == b""


def test_detail_of_upstream_and_no_provider_errors() -> None:
    upstream = UpstreamRateLimited("up answered HTTP 429", provider="up", status=429,
                                   raw={"error": "slow"})
    assert orjson.loads(to_detail(upstream).metadata_json) == {
        "provider_name": "up", "reason": "rate_limited", "status": 429, "raw": {"error": "slow"}}
    no_provider = NoProvider("none", metadata={"reasons": {"m@a": "in provider.ignore"}})
    assert to_detail(no_provider).metadata_json == b'{"reasons":{"m@a":"in provider.ignore"}}'
