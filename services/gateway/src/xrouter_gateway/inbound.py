"""One endpoint for every inbound chat format (OpenAI chat, Anthropic messages, OpenAI
responses, legacy completions): read the key and the body, parse to the router's request, call
a router, and write the whole answer, the stream or the error in the client's format."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Protocol

import grpc
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from xrouter.v1 import router_pb2 as pb
from xrouter_common.apikeys import is_xrouter_key, well_formed
from xrouter_common.tracing import child_traceparent
from xrouter_common.wire import (
    AUTHORIZATION_KEY,
    CLIENT_ADDRESS_KEY,
    REQUEST_ID_KEY,
    TRACEPARENT_KEY,
)
from xrouter_gateway.convert import ROUTE_HEADER, rate_limit_headers, route_header
from xrouter_gateway.errors import APIError, from_rpc_error
from xrouter_gateway.guards import header_token
from xrouter_gateway.router_client import Metadata, RouterClient
from xrouter_gateway.session_cookie import cookie_credential
from xrouter_gateway.settings import GatewaySettings
from xrouter_gateway.sse import RouterStream, SSEResponse, StreamWriter

log = logging.getLogger("xrouter.gateway")
# Longer than any textual IP address (with an IPv6 zone): anything longer is no address.
_MAX_ADDRESS = 64


def new_generation_id() -> str:
    return "gen-" + os.urandom(12).hex()


async def read_body(request: Request, limit: int) -> bytes:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise APIError(413, f"Request body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise APIError(413, f"Request body is larger than {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        # Gone, or cut off by the body deadline (http_protocol); no one reads this answer.
        raise APIError(408, "The request body was not received") from None
    return b"".join(chunks)


def api_key(request: Request) -> str:
    """The caller's credential: the Authorization header's bearer key or, without that header,
    the console's session cookie (session_cookie.py: CSRF-checked for unsafe methods)."""
    header = request.headers.get("authorization", "")
    if not header:
        session = cookie_credential(request)
        if session:
            return session
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise APIError(401, "Missing API key: send 'Authorization: Bearer <key>'")
    return checked_key(token, "Authorization")


def checked_key(token: str, source: str) -> str:
    """A key the router may receive (printable ASCII); a mistyped one of our format is refused
    here, without a round trip to the router. Both are 401s naming `source`."""
    header_token(token, source, 401)
    if is_xrouter_key(token) and not well_formed(token):
        raise APIError(401, "Invalid API key (the checksum does not match: check for typos)")
    return token


def client_address(request: Request) -> str:
    """The client's address as the failed-auth throttle counts it: the socket peer, or the
    client a trusted proxy named in X-Forwarded-For (uvicorn's proxy headers, configured by
    XROUTER_GATEWAY_TRUSTED_PROXIES, rewrite the peer). Empty when unknown, or when a trusted
    proxy's header held something that cannot travel as metadata: no IP allow-list admits it."""
    client = request.scope.get("client")
    host = client[0] if client else ""
    return host if len(host) <= _MAX_ADDRESS and host.isascii() and host.isprintable() else ""


def call_metadata(request: Request, key: str, generation_id: str) -> Metadata:
    """Metadata of the router call. The traceparent is the gateway span's when tracing is on
    (set by TracingMiddleware), else a new hop of the client's trace (or a new trace), kept in
    the request state so that the access log names the same trace. The client's address goes
    with every call: the router checks keys with an IP allow-list against it."""
    request_id = header_token(request.headers.get("x-request-id", ""), "X-Request-Id") \
        or generation_id
    state = request.scope.setdefault("state", {})
    traceparent = state.get("traceparent")
    if not traceparent:
        traceparent = state["traceparent"] = child_traceparent(request.headers.get("traceparent"))
    return (
        (AUTHORIZATION_KEY, "Bearer " + key),
        (REQUEST_ID_KEY, request_id[:128]),
        (TRACEPARENT_KEY, traceparent),
        (CLIENT_ADDRESS_KEY, client_address(request)),
    )


@dataclass(slots=True)
class Call:
    """A parsed inbound request: the router's request, whether it streams, and whatever the
    format needs again to write the answer (the client's echoed fields, say)."""

    request: pb.ChatRequest
    stream: bool
    context: object = field(default=None)


class InboundFormat(Protocol):
    """One client wire format. Errors raised while parsing are APIError."""

    def key(self, request: Request) -> str:
        """The caller's API key (raises APIError(401))."""
        ...

    def parse(self, body: bytes, generation_id: str) -> Call: ...

    def whole(self, reply: pb.ChatResponse, call: Call) -> bytes:
        """The body of a non-streamed answer."""
        ...

    def writer(self, call: Call) -> StreamWriter: ...

    def error(self, err: APIError, headers: dict[str, str]) -> Response: ...


class InboundEndpoint:
    """Serves one InboundFormat: the only place a chat-shaped HTTP request meets a router."""

    def __init__(self, fmt: InboundFormat, client: RouterClient,
                 settings: GatewaySettings) -> None:
        self._fmt = fmt
        self._client = client
        self._settings = settings

    async def handle(self, request: Request) -> Response:
        try:
            return await self._handle(request)
        except APIError as exc:
            return self._fmt.error(exc, {})
        except Exception:
            log.exception("unhandled error on %s", request.url.path)
            return self._fmt.error(APIError(500, "Internal error in the gateway"), {})

    async def _handle(self, request: Request) -> Response:
        fmt = self._fmt
        key = fmt.key(request)
        body = await read_body(request, self._settings.max_body_bytes)
        generation_id = new_generation_id()
        call = fmt.parse(body, generation_id)
        metadata = call_metadata(request, key, generation_id)
        headers = {"X-Generation-Id": generation_id}
        if call.stream:
            return await self._stream(call, metadata, headers)  # type: ignore[return-value]
        try:
            reply = await self._client.chat(call.request, metadata,
                                            self._settings.request_timeout)
            answer = fmt.whole(reply, call)
        except grpc.aio.AioRpcError as exc:
            return fmt.error(from_rpc_error(exc), headers)
        except APIError as exc:
            return fmt.error(exc, headers)
        headers[ROUTE_HEADER] = route_header(reply.deployment, reply.attempts)
        if reply.HasField("rate_limit"):
            rate_limit_headers(reply.rate_limit, headers)
        return Response(answer, headers=headers, media_type="application/json")

    async def _stream(self, call: Call, metadata: Metadata,
                      headers: dict[str, str]) -> Response | SSEResponse:
        s = self._settings
        stream = RouterStream(self._client, call.request, metadata, s.request_timeout)
        try:
            first = await stream.first_event(s.sse_commit_after)
        except grpc.aio.AioRpcError as exc:
            return self._fmt.error(from_rpc_error(exc), headers)
        except APIError as exc:
            return self._fmt.error(exc, headers)
        if first is not None:
            headers[ROUTE_HEADER] = route_header(first.deployment, first.attempts)
        return SSEResponse(stream, first, self._fmt.writer(call), s.sse_keepalive, headers)
