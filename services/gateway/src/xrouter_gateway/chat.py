"""POST /v1/chat/completions: the OpenAI/OpenRouter chat format (see inbound.InboundEndpoint)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from xrouter.v1 import router_pb2 as pb
from xrouter_gateway.convert import ChunkWriter, completion_json, parse_request, to_proto
from xrouter_gateway.errors import APIError
from xrouter_gateway.inbound import Call, api_key
from xrouter_gateway.sse import StreamWriter


class ChatFormat:
    """OpenAI chat completions, with OpenRouter's additions (models, provider, prompt)."""

    def key(self, request: Request) -> str:
        return api_key(request)

    def parse(self, body: bytes, generation_id: str) -> Call:
        req, raw = parse_request(body)
        return Call(to_proto(req, raw, generation_id), req.stream)

    def whole(self, reply: pb.ChatResponse, call: Call) -> bytes:
        return completion_json(reply)

    def writer(self, call: Call) -> StreamWriter:
        return ChunkWriter(call.request.generation_id)

    def error(self, err: APIError, headers: dict[str, str]) -> Response:
        return err.response(headers)
