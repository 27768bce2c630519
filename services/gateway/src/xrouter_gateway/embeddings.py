"""POST /v1/embeddings: OpenAI's embeddings API (float or base64 vectors)."""

from __future__ import annotations

import base64
import struct
from typing import Annotated, Literal

import grpc
import msgspec
import orjson
from msgspec import Meta, Struct
from starlette.requests import Request
from starlette.responses import Response

from xrouter.v1 import router_pb2 as pb
from xrouter_gateway.convert import usage_json
from xrouter_gateway.errors import APIError, from_rpc_error
from xrouter_gateway.guards import validation_error
from xrouter_gateway.inbound import api_key, call_metadata, new_generation_id, read_body
from xrouter_gateway.router_client import RouterClient
from xrouter_gateway.settings import GatewaySettings

MAX_INPUTS = 2048


class EmbeddingRequest(Struct):
    model: Annotated[str, Meta(min_length=1)]
    input: str | Annotated[list[str], Meta(min_length=1, max_length=MAX_INPUTS)]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Annotated[int, Meta(ge=1, le=65536)] | None = None
    user: str | None = None


def parse(body: bytes) -> EmbeddingRequest:
    try:
        return msgspec.json.decode(body, type=EmbeddingRequest)
    except msgspec.ValidationError as exc:
        raise validation_error(exc) from None
    except msgspec.DecodeError as exc:
        raise APIError(400, f"Invalid JSON in request body: {exc}") from None


def _vector(values: list[float], encoding: str) -> object:
    if encoding == "base64":
        return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()
    return values


def response_json(reply: pb.EmbedResponse, encoding: str) -> bytes:
    usage = usage_json(reply.usage)
    return orjson.dumps({
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": _vector(list(v.values), encoding)}
                 for i, v in enumerate(reply.data)],
        "model": reply.model,
        "provider": reply.provider,
        "usage": {"prompt_tokens": usage["prompt_tokens"], "total_tokens": usage["prompt_tokens"],
                  "cost": usage["cost"], "is_estimated": usage["is_estimated"]},
    })


class EmbeddingsEndpoint:
    def __init__(self, client: RouterClient, settings: GatewaySettings) -> None:
        self._client = client
        self._settings = settings

    async def handle(self, request: Request) -> Response:
        key = api_key(request)
        req = parse(await read_body(request, self._settings.max_body_bytes))
        inputs = [req.input] if isinstance(req.input, str) else req.input
        generation_id = new_generation_id()
        proto = pb.EmbedRequest(generation_id=generation_id, model=req.model, input=inputs,
                                user=req.user or "")
        if req.dimensions is not None:
            proto.dimensions = req.dimensions
        headers = {"X-Generation-Id": generation_id}
        try:
            reply = await self._client.embed(proto, call_metadata(request, key, generation_id),
                                             self._settings.request_timeout)
        except grpc.aio.AioRpcError as exc:
            return from_rpc_error(exc).response(headers)
        return Response(response_json(reply, req.encoding_format), headers=headers,
                        media_type="application/json")
