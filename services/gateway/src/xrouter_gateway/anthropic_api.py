"""POST /v1/messages: the Anthropic Messages API as an inbound format, for Anthropic-SDK clients.

Auth, body limits, router calls and the SSE commit window work as for /v1/chat/completions; the
wire format and every error are Anthropic's (see anthropic_format).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import grpc
import orjson
from starlette.requests import Request
from starlette.responses import Response

from xrouter.v1 import router_pb2 as pb
from xrouter_gateway.anthropic_format import (
    MessageStreamWriter,
    error_json,
    message_id,
    message_json,
    parse_messages,
    to_chat_request,
)
from xrouter_gateway.chat import api_key, call_metadata, new_generation_id, read_body
from xrouter_gateway.convert import ROUTE_HEADER, route_header
from xrouter_gateway.errors import APIError, from_rpc_error
from xrouter_gateway.guards import header_token
from xrouter_gateway.router_client import Metadata, RouterClient
from xrouter_gateway.settings import GatewaySettings
from xrouter_gateway.sse import RouterStream, SSEResponse

log = logging.getLogger("xrouter.gateway")


def anthropic_key(request: Request) -> str:
    """`x-api-key` (what the Anthropic SDK sends), else `Authorization: Bearer`."""
    key = request.headers.get("x-api-key", "").strip()
    if key:
        return header_token(key, "x-api-key", 401)
    try:
        return api_key(request)
    except APIError:
        raise APIError(401, "Missing API key: send 'x-api-key: <key>' or "
                            "'Authorization: Bearer <key>'") from None


def error_response(err: APIError, headers: Mapping[str, str] | None = None) -> Response:
    extra = dict(headers or {})
    if err.retry_after > 0:
        extra["Retry-After"] = str(max(1, round(err.retry_after)))
    return Response(orjson.dumps(error_json(err)), status_code=err.status, headers=extra,
                    media_type="application/json")


class MessagesEndpoint:
    def __init__(self, client: RouterClient, settings: GatewaySettings) -> None:
        self._client = client
        self._settings = settings

    async def handle(self, request: Request) -> Response:
        try:
            return await self._handle(request)
        except APIError as exc:
            return error_response(exc)
        except Exception:
            log.exception("unhandled error on %s", request.url.path)
            return error_response(APIError(500, "Internal error in the gateway"))

    async def _handle(self, request: Request) -> Response:
        key = anthropic_key(request)
        req = parse_messages(await read_body(request, self._settings.max_body_bytes))
        generation_id = new_generation_id()
        proto = to_chat_request(req, generation_id)
        metadata = call_metadata(request, key, generation_id)
        headers = {"X-Generation-Id": generation_id}
        if req.stream:
            writer = MessageStreamWriter(message_id(generation_id), req.model)
            return await self._stream(proto, metadata, writer, headers)  # type: ignore[return-value]
        try:
            reply = await self._client.chat(proto, metadata, self._settings.request_timeout)
            body = message_json(reply, message_id(generation_id))
        except grpc.aio.AioRpcError as exc:
            return error_response(from_rpc_error(exc), headers)
        except APIError as exc:
            return error_response(exc, headers)
        headers[ROUTE_HEADER] = route_header(reply.deployment, reply.attempts)
        return Response(body, headers=headers, media_type="application/json")

    async def _stream(self, proto: pb.ChatRequest, metadata: Metadata, writer: MessageStreamWriter,
                      headers: dict[str, str]) -> Response | SSEResponse:
        s = self._settings
        stream = RouterStream(self._client, proto, metadata, s.request_timeout)
        try:
            first = await stream.first_event(s.sse_commit_after)
        except grpc.aio.AioRpcError as exc:
            return error_response(from_rpc_error(exc), headers)
        except APIError as exc:
            return error_response(exc, headers)
        if first is not None:
            headers[ROUTE_HEADER] = route_header(first.deployment, first.attempts)
        return SSEResponse(stream, first, writer, s.sse_keepalive, headers)

