"""The one table mapping router errors to gRPC status codes and ErrorDetail messages."""

from __future__ import annotations

import grpc
import orjson

from xrouter.v1 import router_pb2 as pb
from xrouter_router.domain.errors import ErrorKind, XRouterError

# UNAVAILABLE is deliberately absent: the gateway retries UNAVAILABLE on another replica,
# which is right only when this replica could not serve the call at all.
_TABLE: dict[ErrorKind, tuple[grpc.StatusCode, pb.ErrorKind.ValueType]] = {
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


def to_detail(error: XRouterError) -> pb.ErrorDetail:
    return pb.ErrorDetail(
        kind=_TABLE[error.kind][1],
        message=error.message,
        param=error.param,
        metadata_json=orjson.dumps(error.metadata) if error.metadata else b"",
        retry_after=error.retry_after,
    )


def status_of(error: XRouterError) -> grpc.StatusCode:
    return _TABLE[error.kind][0]
