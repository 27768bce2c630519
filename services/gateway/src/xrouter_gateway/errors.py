"""The gateway's error type and the one table mapping router errors to HTTP status + JSON body.

Every failure leaves the gateway as
{"error": {"message", "type", "code", "param", "metadata"}}: `code` is the HTTP status (as
OpenRouter documents), `type` the OpenAI-style class, so both kinds of clients understand it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import grpc
import orjson
from starlette.responses import Response

from xrouter.v1 import router_pb2 as pb
from xrouter_common.wire import ERROR_DETAIL_KEY

_KINDS: dict[int, tuple[int, str]] = {
    pb.ERROR_KIND_INVALID_REQUEST: (400, "invalid_request_error"),
    pb.ERROR_KIND_UNAUTHENTICATED: (401, "authentication_error"),
    pb.ERROR_KIND_INSUFFICIENT_CREDITS: (402, "insufficient_credits"),
    pb.ERROR_KIND_FORBIDDEN: (403, "permission_error"),
    pb.ERROR_KIND_MODEL_NOT_FOUND: (404, "not_found_error"),
    pb.ERROR_KIND_TIMEOUT: (408, "timeout_error"),
    pb.ERROR_KIND_RATE_LIMITED: (429, "rate_limit_error"),
    pb.ERROR_KIND_UPSTREAM: (502, "upstream_error"),
    pb.ERROR_KIND_NO_PROVIDER: (503, "no_provider_available"),
    pb.ERROR_KIND_INTERNAL: (500, "internal_error"),
    pb.ERROR_KIND_UNAVAILABLE: (503, "service_unavailable"),
}

TYPES_BY_STATUS: dict[int, str] = {
    400: "invalid_request_error", 401: "authentication_error", 402: "insufficient_credits",
    403: "permission_error", 404: "not_found_error", 405: "invalid_request_error",
    408: "timeout_error", 413: "request_too_large", 415: "invalid_request_error",
    429: "rate_limit_error",
    431: "request_too_large",
    500: "internal_error", 502: "upstream_error", 503: "service_unavailable",
}


class APIError(Exception):
    """An error answered to the client; raise it anywhere in a request handler."""

    def __init__(self, status: int, message: str, *, param: str | None = None,
                 metadata: Mapping[str, Any] | None = None, retry_after: float = 0.0,
                 type_: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.metadata = dict(metadata or {})
        self.retry_after = retry_after
        self.type = type_ or TYPES_BY_STATUS.get(status, "api_error")

    def body(self) -> dict[str, Any]:
        return {"message": self.message, "type": self.type, "code": self.status,
                "param": self.param, "metadata": self.metadata}

    def response(self, headers: Mapping[str, str] | None = None) -> Response:
        extra = dict(headers or {})
        if self.retry_after > 0:
            extra["Retry-After"] = str(max(1, round(self.retry_after)))
        if self.status == 429 and "limit" in self.metadata:
            extra["X-RateLimit-Limit"] = str(self.metadata["limit"])
            extra["X-RateLimit-Remaining"] = str(self.metadata.get("remaining", 0))
            extra["X-RateLimit-Reset"] = str(self.metadata.get("reset", 0))
        return Response(orjson.dumps({"error": self.body()}), status_code=self.status,
                        headers=extra, media_type="application/json")


def from_detail(detail: pb.ErrorDetail) -> APIError:
    status, type_ = _KINDS.get(detail.kind, (500, "internal_error"))
    metadata = orjson.loads(detail.metadata_json) if detail.metadata_json else {}
    return APIError(status, detail.message, param=detail.param or None, metadata=metadata,
                    retry_after=detail.retry_after, type_=type_)


# The failures of a router itself (gone, its connection cut, a crash): not an answer it gave.
_LOST = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL,
                   grpc.StatusCode.UNKNOWN})


def router_failed(exc: grpc.aio.AioRpcError) -> bool:
    """Whether a call broke because its router failed (no error detail from the router)."""
    return exc.code() in _LOST and not any(
        key == ERROR_DETAIL_KEY for key, _ in exc.trailing_metadata() or ())


def router_lost() -> APIError:
    """The error chunk of a stream whose router failed after the client got part of it."""
    return APIError(502, "The router serving this stream failed; the answer may be incomplete",
                    type_="router_lost", metadata={"error_code": "router_lost"})


def from_rpc_error(exc: grpc.aio.AioRpcError) -> APIError:
    """A failed router call as the client should see it."""
    for key, value in exc.trailing_metadata() or ():
        if key == ERROR_DETAIL_KEY and isinstance(value, bytes):
            return from_detail(pb.ErrorDetail.FromString(value))
    code = exc.code()
    if code == grpc.StatusCode.UNAVAILABLE:
        return APIError(503, "No router is available to serve the request; retry shortly",
                        retry_after=1.0)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return APIError(408, "The request timed out")
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return APIError(413, "The request is too large for the router")
    return APIError(500, "Internal error between gateway and router")
