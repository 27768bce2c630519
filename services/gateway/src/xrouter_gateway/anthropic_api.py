"""POST /v1/messages: the Anthropic Messages API as an inbound format, for Anthropic-SDK clients.

Auth, body limits, router calls and the SSE commit window are inbound.InboundEndpoint's; the
wire format and every error are Anthropic's (see anthropic_format).
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson
from starlette.requests import Request
from starlette.responses import Response

from xrouter.v1 import router_pb2 as pb
from xrouter_gateway.anthropic_format import (
    error_json,
    message_id,
    message_json,
    parse_messages,
    to_chat_request,
)
from xrouter_gateway.anthropic_stream import MessageStreamWriter
from xrouter_gateway.errors import APIError
from xrouter_gateway.guards import header_token
from xrouter_gateway.inbound import Call, api_key
from xrouter_gateway.sse import StreamWriter


def anthropic_key(request: Request) -> str:
    """`x-api-key` (what the Anthropic SDK sends), else `Authorization: Bearer`, else the
    console's session cookie."""
    key = request.headers.get("x-api-key", "").strip()
    if key:
        return header_token(key, "x-api-key", 401)
    try:
        return api_key(request)
    except APIError as exc:
        if exc.status != 401:  # the session cookie without its CSRF token
            raise
        raise APIError(401, "Missing API key: send 'x-api-key: <key>' or "
                            "'Authorization: Bearer <key>'") from None


def error_response(err: APIError, headers: Mapping[str, str] | None = None) -> Response:
    extra = dict(headers or {})
    if err.retry_after > 0:
        extra["Retry-After"] = str(max(1, round(err.retry_after)))
    return Response(orjson.dumps(error_json(err)), status_code=err.status, headers=extra,
                    media_type="application/json")


class MessagesFormat:
    """The Anthropic Messages API; its own error shape for every failure."""

    def key(self, request: Request) -> str:
        return anthropic_key(request)

    def parse(self, body: bytes, generation_id: str) -> Call:
        req = parse_messages(body)
        return Call(to_chat_request(req, generation_id), req.stream, req.model)

    def whole(self, reply: pb.ChatResponse, call: Call) -> bytes:
        return message_json(reply, message_id(call.request.generation_id))

    def writer(self, call: Call) -> StreamWriter:
        return MessageStreamWriter(message_id(call.request.generation_id), str(call.context))

    def error(self, err: APIError, headers: dict[str, str]) -> Response:
        return error_response(err, headers)
