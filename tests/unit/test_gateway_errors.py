"""The gateway's error table: router ErrorDetails and gRPC failures to HTTP status + JSON body."""

from __future__ import annotations

import grpc
import orjson
import pytest

from xrouter.v1 import router_pb2 as pb
from xrouter_common.wire import ERROR_DETAIL_KEY
from xrouter_gateway.errors import APIError, from_detail, from_rpc_error, router_failed

KINDS = [
    (pb.ERROR_KIND_INVALID_REQUEST, 400, "invalid_request_error"),
    (pb.ERROR_KIND_UNAUTHENTICATED, 401, "authentication_error"),
    (pb.ERROR_KIND_INSUFFICIENT_CREDITS, 402, "insufficient_credits"),
    (pb.ERROR_KIND_FORBIDDEN, 403, "permission_error"),
    (pb.ERROR_KIND_MODEL_NOT_FOUND, 404, "not_found_error"),
    (pb.ERROR_KIND_TIMEOUT, 408, "timeout_error"),
    (pb.ERROR_KIND_RATE_LIMITED, 429, "rate_limit_error"),
    (pb.ERROR_KIND_UPSTREAM, 502, "upstream_error"),
    (pb.ERROR_KIND_NO_PROVIDER, 503, "no_provider_available"),
    (pb.ERROR_KIND_INTERNAL, 500, "internal_error"),
    (pb.ERROR_KIND_UNAVAILABLE, 503, "service_unavailable"),
    (pb.ERROR_KIND_UNSPECIFIED, 500, "internal_error"),
]


def test_the_table_lists_every_proto_kind() -> None:
    assert sorted(k for k, _, _ in KINDS) == sorted(pb.ErrorKind.values())


@pytest.mark.parametrize(("kind", "status", "type_"), KINDS)
def test_from_detail_maps_every_kind(kind: int, status: int, type_: str) -> None:
    err = from_detail(pb.ErrorDetail(kind=kind, message="went wrong"))  # type: ignore[arg-type]
    assert (err.status, err.type) == (status, type_)
    assert err.body() == {"message": "went wrong", "type": type_, "code": status, "param": None,
                          "metadata": {}}


def test_from_detail_carries_param_metadata_and_retry_after() -> None:
    detail = pb.ErrorDetail(kind=pb.ERROR_KIND_UPSTREAM, message="All providers failed: x",
                            param="model", retry_after=2.4,
                            metadata_json=b'{"provider_name":"a","raw":{"error":"x"}}')
    err = from_detail(detail)
    assert err.body() == {"message": "All providers failed: x", "type": "upstream_error", "code": 502,
                          "param": "model", "metadata": {"provider_name": "a", "raw": {"error": "x"}}}
    assert err.retry_after == 2.4


def test_the_response_is_the_documented_json_body() -> None:
    resp = APIError(404, "Model 'x' does not exist", param="model").response({"X-Generation-Id": "g"})
    assert resp.status_code == 404
    assert resp.headers["content-type"] == "application/json"
    assert resp.headers["x-generation-id"] == "g"
    assert "retry-after" not in resp.headers
    assert orjson.loads(resp.body) == {"error": {
        "message": "Model 'x' does not exist", "type": "not_found_error", "code": 404,
        "param": "model", "metadata": {}}}


@pytest.mark.parametrize(("seconds", "header"), [(0.2, "1"), (1.0, "1"), (2.4, "2"), (2.6, "3"),
                                                  (30.0, "30")])
def test_retry_after_header_is_whole_seconds_at_least_one(seconds: float, header: str) -> None:
    resp = APIError(429, "slow down", retry_after=seconds).response()
    assert resp.headers["retry-after"] == header


@pytest.mark.parametrize(("status", "type_"), [
    (405, "invalid_request_error"), (413, "request_too_large"), (503, "service_unavailable"),
    (418, "api_error"),
])
def test_api_error_type_follows_the_status(status: int, type_: str) -> None:
    assert APIError(status, "x").type == type_


def _rpc_error(code: grpc.StatusCode, *trailing: tuple[str, str | bytes]) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, initial_metadata=grpc.aio.Metadata(),
                                trailing_metadata=grpc.aio.Metadata(*trailing), details="details")


def test_from_rpc_error_prefers_the_error_detail_in_trailing_metadata() -> None:
    detail = pb.ErrorDetail(kind=pb.ERROR_KIND_MODEL_NOT_FOUND, message="Model 'x' does not exist",
                            param="model")
    exc = _rpc_error(grpc.StatusCode.NOT_FOUND, ("x-other", "1"),
                     (ERROR_DETAIL_KEY, detail.SerializeToString()))
    err = from_rpc_error(exc)
    assert (err.status, err.type, err.message, err.param) == (
        404, "not_found_error", "Model 'x' does not exist", "model")


@pytest.mark.parametrize(("code", "status", "message", "retry_after"), [
    (grpc.StatusCode.UNAVAILABLE, 503, "No router is available to serve the request; retry shortly",
     1.0),
    (grpc.StatusCode.DEADLINE_EXCEEDED, 408, "The request timed out", 0.0),
    (grpc.StatusCode.RESOURCE_EXHAUSTED, 413, "The request is too large for the router", 0.0),
    (grpc.StatusCode.INTERNAL, 500, "Internal error between gateway and router", 0.0),
    (grpc.StatusCode.UNKNOWN, 500, "Internal error between gateway and router", 0.0),
    (grpc.StatusCode.INVALID_ARGUMENT, 500, "Internal error between gateway and router", 0.0),
])
def test_from_rpc_error_fallbacks_without_a_detail(code: grpc.StatusCode, status: int, message: str,
                                                   retry_after: float) -> None:
    err = from_rpc_error(_rpc_error(code))
    assert (err.status, err.message, err.retry_after, err.metadata) == (
        status, message, retry_after, {})


def test_a_non_binary_value_under_the_detail_key_is_ignored() -> None:
    err = from_rpc_error(_rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED, (ERROR_DETAIL_KEY, "text")))
    assert (err.status, err.message) == (408, "The request timed out")


@pytest.mark.parametrize(("code", "failed"), [
    (grpc.StatusCode.UNAVAILABLE, True), (grpc.StatusCode.INTERNAL, True),
    (grpc.StatusCode.UNKNOWN, True), (grpc.StatusCode.DEADLINE_EXCEEDED, False),
    (grpc.StatusCode.CANCELLED, False), (grpc.StatusCode.RESOURCE_EXHAUSTED, False)])
def test_a_router_failed_when_its_call_broke_without_an_error_of_its_own(
        code: grpc.StatusCode, failed: bool) -> None:
    assert router_failed(_rpc_error(code)) is failed
    # An error the router answered (its detail in the trailers) is not a router's failure.
    detail = pb.ErrorDetail(kind=pb.ERROR_KIND_INTERNAL, message="boom").SerializeToString()
    assert router_failed(_rpc_error(code, (ERROR_DETAIL_KEY, detail))) is False
