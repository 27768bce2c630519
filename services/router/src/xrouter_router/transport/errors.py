"""The one table mapping router errors to gRPC status codes and ErrorDetail messages, and the one
place an error leaves the router: its text and metadata pass the Redactor on the way out (the
log gets the uncut upstream body, credentials still removed)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import grpc
import orjson

from xrouter.v1 import router_pb2 as pb
from xrouter_common.wire import ERROR_DETAIL_KEY
from xrouter_router.domain.errors import ErrorKind, InternalError, XRouterError
from xrouter_router.transport.redact import LIMIT, PATTERNS_ONLY, Redactor

log = logging.getLogger("xrouter.router.errors")

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


def to_detail(error: XRouterError, redactor: Redactor = PATTERNS_ONLY) -> pb.ErrorDetail:
    raw = error.metadata.get("raw")
    if raw is not None:
        text = raw if isinstance(raw, str) else orjson.dumps(raw).decode()
        if len(text) > LIMIT:  # the client gets 1 KiB of it: the whole body goes to the log
            log.warning("upstream error body (%s): %s", error.metadata.get("provider_name", ""),
                        redactor.clean(text))
    metadata = redactor.metadata(error.metadata) if error.metadata else None
    return pb.ErrorDetail(
        kind=_TABLE[error.kind][1],
        message=redactor.text(error.message),
        param=redactor.text(error.param),
        metadata_json=orjson.dumps(metadata) if metadata else b"",
        retry_after=error.retry_after,
    )


def status_of(error: XRouterError) -> grpc.StatusCode:
    return _TABLE[error.kind][0]


@dataclass(slots=True)
class Outcome:
    """How an RPC ended, for its log line: "success", an error kind, "internal" or "cancelled"."""

    value: str


async def abort(context: grpc.aio.ServicerContext, error: XRouterError,  # type: ignore[type-arg]
                redactor: Redactor = PATTERNS_ONLY) -> None:
    """End the RPC with the error's status and its ErrorDetail (redacted) in the trailers."""
    detail = to_detail(error, redactor)
    await context.abort(status_of(error), detail.message,
                        trailing_metadata=((ERROR_DETAIL_KEY, detail.SerializeToString()),))


@asynccontextmanager
async def answering(context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
                    redactor: Redactor = PATTERNS_ONLY,
                    outcome: Outcome | None = None) -> AsyncIterator[None]:
    """Every RPC's body runs inside: an XRouterError leaves by the table above, anything else
    as an InternalError (logged with its traceback, never detailed to the client). A
    cancellation passes through untouched."""
    try:
        yield
    except grpc.aio.AbortError:
        raise
    except XRouterError as exc:
        if outcome is not None:
            outcome.value = exc.kind.value
        await abort(context, exc, redactor)
    except Exception as exc:
        if outcome is not None:
            outcome.value = "internal"
        log.exception("unexpected error", exc_info=exc)
        await abort(context, InternalError("Internal error in the router"))
