"""POST /v1/responses: the OpenAI Responses API as an inbound format (stateless, as OpenRouter
serves it): every provider behind the router answers it, through the router's chat request."""

from __future__ import annotations

from typing import cast

from starlette.requests import Request
from starlette.responses import Response

from xrouter.v1 import router_pb2 as pb
from xrouter_gateway.errors import APIError
from xrouter_gateway.inbound import Call, api_key
from xrouter_gateway.responses_output import ResponseStreamWriter, response_json
from xrouter_gateway.responses_request import Echo, parse_responses, to_chat_request
from xrouter_gateway.sse import StreamWriter


class ResponsesFormat:
    def key(self, request: Request) -> str:
        return api_key(request)

    def parse(self, body: bytes, generation_id: str) -> Call:
        req = parse_responses(body)
        proto, echo = to_chat_request(req, generation_id)
        return Call(proto, req.stream, echo)

    def whole(self, reply: pb.ChatResponse, call: Call) -> bytes:
        return response_json(reply, call.request.generation_id, cast(Echo, call.context))

    def writer(self, call: Call) -> StreamWriter:
        return ResponseStreamWriter(call.request.generation_id, cast(Echo, call.context))

    def error(self, err: APIError, headers: dict[str, str]) -> Response:
        return err.response(headers)
