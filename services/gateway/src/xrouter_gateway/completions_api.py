"""POST /v1/completions: the legacy OpenAI completions API (a `prompt` in, `text` choices out),
as OpenRouter still serves it: the prompt becomes one user message of a chat request."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from msgspec import Meta, Struct
from starlette.requests import Request
from starlette.responses import Response

from xrouter.v1 import router_pb2 as pb
from xrouter_gateway.convert import (
    ChunkWriter,
    json_object,
    provider_to_proto,
    typed,
    usage_json,
)
from xrouter_gateway.errors import APIError
from xrouter_gateway.inbound import Call, api_key
from xrouter_gateway.schemas import Penalty, ProviderPreferences, Temperature
from xrouter_gateway.sse import StreamWriter


class CompletionRequest(Struct):
    model: Annotated[str, Meta(min_length=1)] | None = None
    models: Annotated[list[Annotated[str, Meta(min_length=1)]], Meta(max_length=16)] | None = None
    prompt: str | Annotated[list[str], Meta(min_length=1, max_length=1)] | None = None
    max_tokens: Annotated[int, Meta(ge=1, le=2**31 - 1)] | None = None
    temperature: Temperature | None = None
    top_p: Annotated[float, Meta(gt=0.0, le=1.0)] | None = None
    frequency_penalty: Penalty | None = None
    presence_penalty: Penalty | None = None
    seed: Annotated[int, Meta(ge=-(2**63), le=2**63 - 1)] | None = None
    stop: str | Annotated[list[str], Meta(max_length=16)] | None = None
    n: Annotated[int, Meta(ge=1, le=1)] | None = None
    best_of: Annotated[int, Meta(ge=1, le=1)] | None = None
    echo: bool = False
    stream: bool = False
    suffix: str | None = None
    logprobs: None = None
    user: str | None = None
    provider: ProviderPreferences | None = None


def parse_completion(body: bytes) -> CompletionRequest:
    req = typed(json_object(body), CompletionRequest)
    if req.prompt is None:
        raise APIError(400, "'prompt' is required", param="prompt")
    if not req.model and not req.models:
        raise APIError(400, "'model' is required (or a non-empty 'models' list)", param="model")
    if req.suffix:
        raise APIError(400, "'suffix' (insertion) is not supported", param="suffix")
    return req


def _prompt(req: CompletionRequest) -> str:
    return req.prompt if isinstance(req.prompt, str) else (req.prompt or [""])[0]


def to_chat_request(req: CompletionRequest, generation_id: str) -> pb.ChatRequest:
    models = list(req.models or ())
    out = pb.ChatRequest(generation_id=generation_id, model=req.model or models.pop(0),
                         models=models, user=req.user or "",
                         messages=[pb.Message(role="user", content=_prompt(req))])
    for name, value in (("max_tokens", req.max_tokens), ("temperature", req.temperature),
                        ("top_p", req.top_p), ("frequency_penalty", req.frequency_penalty),
                        ("presence_penalty", req.presence_penalty), ("seed", req.seed)):
        if value is not None:
            setattr(out, name, value)
    if req.stop is not None:
        out.stop.extend([req.stop] if isinstance(req.stop, str) else req.stop)
    if req.provider is not None:
        out.provider.CopyFrom(provider_to_proto(req.provider))
    return out


def completion_json(reply: pb.ChatResponse, echo: str) -> bytes:
    choices = [{"text": echo + ch.message.content, "index": ch.index, "logprobs": None,
                "finish_reason": ch.finish_reason or None} for ch in reply.choices]
    return orjson.dumps({"id": reply.id, "object": "text_completion", "created": reply.created,
                         "model": reply.model, "provider": reply.provider, "choices": choices,
                         "usage": usage_json(reply.usage)})


class TextChunkWriter(ChunkWriter):
    """`text_completion` chunks: the chat stream's framing, with `text` for `delta`."""

    __slots__ = ("_echo",)

    def __init__(self, generation_id: str, echo: str) -> None:
        super().__init__(generation_id)
        self._head["object"] = "text_completion"
        self._echo = echo

    def deltas(self, ev: pb.ChatStreamEvent) -> bytes:
        out = []
        for d in ev.chunks:
            text = d.content if d.HasField("content") else ""
            if self._echo:
                text, self._echo = self._echo + text, ""
            if not text and not d.finish_reason:
                continue
            choice: dict[str, Any] = {"text": text, "index": d.index, "logprobs": None,
                                      "finish_reason": d.finish_reason or None}
            out.append(b"data: " + orjson.dumps({**self._head, "choices": [choice]}) + b"\n\n")
        return b"".join(out)

    def _error_choice(self) -> dict[str, Any]:
        return {"text": "", "index": 0, "logprobs": None, "finish_reason": "error"}


class CompletionsFormat:
    def key(self, request: Request) -> str:
        return api_key(request)

    def parse(self, body: bytes, generation_id: str) -> Call:
        req = parse_completion(body)
        return Call(to_chat_request(req, generation_id), req.stream,
                    _prompt(req) if req.echo else "")

    def whole(self, reply: pb.ChatResponse, call: Call) -> bytes:
        return completion_json(reply, str(call.context))

    def writer(self, call: Call) -> StreamWriter:
        return TextChunkWriter(call.request.generation_id, str(call.context))

    def error(self, err: APIError, headers: dict[str, str]) -> Response:
        return err.response(headers)
