"""OpenAI/OpenRouter JSON <-> xrouter.v1 protobuf: validated requests in, response bodies and
SSE events out. No I/O here."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any, TypeVar

import msgspec
import orjson

from xrouter.v1 import router_pb2 as pb
from xrouter_gateway.errors import APIError
from xrouter_gateway.guards import check_depth, decimal_text, validation_error
from xrouter_gateway.schemas import (
    TYPED_FIELDS,
    CacheControl,
    ChatCompletionRequest,
    ChatMessage,
    ContentPart,
    ProviderPreferences,
    ReasoningDetail,
)

T = TypeVar("T")


def json_object(body: bytes) -> dict[str, Any]:
    """A request body that must be a JSON object; raises APIError(400) saying what is wrong."""
    try:
        raw = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise APIError(400, f"Invalid JSON in request body: {exc.msg} at position {exc.pos}") from None
    if not isinstance(raw, dict):
        raise APIError(400, "Request body must be a JSON object")
    return raw


def typed(raw: dict[str, Any], schema: type[T]) -> T:
    """`raw` validated as `schema` in one msgspec pass; a 400 naming the field otherwise."""
    try:
        return msgspec.convert(raw, schema)
    except msgspec.ValidationError as exc:
        raise validation_error(exc) from None


def parse_request(body: bytes) -> tuple[ChatCompletionRequest, dict[str, Any]]:
    """Decode and validate a chat request body; raises APIError(400) with the field named."""
    raw = json_object(body)
    req = typed(raw, ChatCompletionRequest)
    _check(req)
    _check_forwarded(req, raw)
    return req, raw


def _check_forwarded(req: ChatCompletionRequest, raw: dict[str, Any]) -> None:
    """Depth of the free-form JSON that travels on as raw JSON (typed fields are bounded by
    the schema; unknown keys inside typed objects are dropped, not forwarded)."""
    for name, value in raw.items():
        if name not in TYPED_FIELDS or name in ("tool_choice", "response_format"):
            check_depth(value, name, 2)
    for i, tool in enumerate(raw.get("tools") or ()):
        check_depth(tool, f"tools[{i}]", 3)
    for i, m in enumerate(req.messages or ()):
        if isinstance(m.content, list):
            parts = raw["messages"][i]["content"]
            for j, part in enumerate(m.content):
                if part.type not in ("text", "image_url"):
                    check_depth(parts[j], f"messages[{i}].content[{j}]", 5)


def _check(req: ChatCompletionRequest) -> None:
    if req.messages is not None and req.prompt is not None:
        raise APIError(400, "Send either 'messages' or 'prompt', not both", param="messages")
    if req.messages is None and req.prompt is None:
        raise APIError(400, "One of 'messages' or 'prompt' is required", param="messages")
    if not req.model and not req.models:
        raise APIError(400, "'model' is required (or a non-empty 'models' list)", param="model")
    if req.tool_choice not in (None, "none") and not req.tools:
        raise APIError(400, "'tool_choice' is only allowed when 'tools' are given",
                       param="tool_choice")
    if req.response_format and req.response_format.type == "json_schema" \
            and not req.response_format.json_schema:
        raise APIError(400, "response_format of type json_schema needs 'json_schema'",
                       param="response_format.json_schema")
    for i, m in enumerate(req.messages or ()):
        _check_message(i, m)


def _check_message(i: int, m: ChatMessage) -> None:
    where = f"messages[{i}]"
    if m.role == "tool" and not m.tool_call_id:
        raise APIError(400, f"{where}: a tool message needs 'tool_call_id'",
                       param=f"{where}.tool_call_id")
    if m.content is None and not (m.role == "assistant" and m.tool_calls):
        raise APIError(400, f"{where}: 'content' is required", param=f"{where}.content")
    if isinstance(m.content, list):
        for j, part in enumerate(m.content):
            _check_part(f"{where}.content[{j}]", part)


def _check_part(where: str, part: ContentPart) -> None:
    if part.type == "text" and part.text is None:
        raise APIError(400, f"{where}: a text part needs 'text'", param=f"{where}.text")
    if part.type == "image_url" and part.image_url is None:
        raise APIError(400, f"{where}: an image_url part needs 'image_url'",
                       param=f"{where}.image_url")


def _message(m: ChatMessage, raw: dict[str, Any]) -> pb.Message:
    out = pb.Message(role=m.role, name=m.name or "", tool_call_id=m.tool_call_id or "")
    content = m.content
    if isinstance(content, str):
        out.content = content
    elif content is not None:
        raw_parts = raw["content"]
        for j, part in enumerate(content):
            if part.type == "text":
                # cache_control (Anthropic's prompt caching, as OpenRouter takes it) travels in
                # the part's JSON.
                cached = "cache_control" in raw_parts[j]
                out.parts.append(pb.ContentPart(
                    type="text", text=part.text or "",
                    raw_json=orjson.dumps(raw_parts[j]) if cached else b""))
            elif part.type == "image_url" and part.image_url is not None:
                cached = "cache_control" in raw_parts[j]
                out.parts.append(pb.ContentPart(type="image_url", image_url=part.image_url.url,
                                                detail=part.image_url.detail or "",
                                                raw_json=orjson.dumps(raw_parts[j]) if cached
                                                else b""))
            else:
                out.parts.append(pb.ContentPart(type=part.type, raw_json=orjson.dumps(raw_parts[j])))
    for k, call in enumerate(m.tool_calls or ()):
        out.tool_calls.append(pb.ToolCall(index=k, id=call.id, name=call.function.name,
                                          arguments=call.function.arguments))
    if m.role == "assistant" and m.reasoning_details:
        _signed_reasoning(m.reasoning_details, out)
    return out


def _signed_reasoning(details: list[ReasoningDetail], out: pb.Message) -> None:
    """An assistant turn's `reasoning_details` carrying one signature: its text goes back to the
    upstream that signed it (unsigned reasoning goes nowhere, so it is not kept)."""
    texts = [d for d in details if d.type == "reasoning.text"]
    signatures = [d.signature for d in texts if d.signature]
    if len(signatures) == 1:
        out.reasoning = "".join(d.text or "" for d in texts)
        out.reasoning_signature = signatures[0]


def reasoning_details(text: str, signature: str) -> list[dict[str, Any]]:
    """OpenRouter's `reasoning_details` for one reasoning text (a whole one, or a stream's
    piece), with the provider's signature when it has one."""
    detail: dict[str, Any] = {"type": "reasoning.text", "text": text, "index": 0}
    if signature:
        detail["signature"] = signature
    return [detail]


def cache_json(cache: CacheControl | None, kind: str = "") -> bytes:
    """A breakpoint as the JSON the router reads it from: a part's (`kind` set: its type and
    cache_control) or a tool's (the cache_control alone); empty without one."""
    if cache is None:
        return b""
    value = msgspec.to_builtins(cache)
    return orjson.dumps({"type": kind, "cache_control": value} if kind else value)


def provider_to_proto(p: ProviderPreferences) -> pb.ProviderPreferences:
    """OpenRouter's `provider` preferences, for every inbound format that takes them."""
    out = pb.ProviderPreferences(order=p.order or [], only=p.only or [], ignore=p.ignore or [],
                                 data_collection=p.data_collection or "", sort=p.sort or "")
    if p.allow_fallbacks is not None:
        out.allow_fallbacks = p.allow_fallbacks
    if p.require_parameters is not None:
        out.require_parameters = p.require_parameters
    if p.max_price is not None:
        prices = {name: "" if value is None else decimal_text(value, f"provider.max_price.{name}")
                  for name, value in msgspec.structs.asdict(p.max_price).items()}
        out.max_price_prompt = prices["prompt"]
        out.max_price_completion = prices["completion"]
    return out


def to_proto(req: ChatCompletionRequest, raw: dict[str, Any], generation_id: str) -> pb.ChatRequest:
    models = list(req.models or ())
    model = req.model or models.pop(0)
    out = pb.ChatRequest(generation_id=generation_id, model=model, models=models,
                         user=req.user or "")
    if req.messages is not None:
        raw_messages = raw["messages"]
        out.messages.extend(_message(m, raw_messages[i]) for i, m in enumerate(req.messages))
    else:
        out.messages.append(pb.Message(role="user", content=req.prompt or ""))
    max_tokens = req.max_tokens if req.max_tokens is not None else req.max_completion_tokens
    for name, value in (
        ("max_tokens", max_tokens), ("temperature", req.temperature), ("top_p", req.top_p),
        ("top_k", req.top_k), ("frequency_penalty", req.frequency_penalty),
        ("presence_penalty", req.presence_penalty), ("repetition_penalty", req.repetition_penalty),
        ("seed", req.seed),
    ):
        if value is not None:
            setattr(out, name, value)
    if req.stop is not None:
        out.stop.extend([req.stop] if isinstance(req.stop, str) else req.stop)
    for tool in req.tools or ():
        fn = tool.function
        t = pb.Tool(name=fn.name, description=fn.description or "",
                    parameters_json=orjson.dumps(fn.parameters) if fn.parameters is not None else b"")
        if fn.strict is not None:
            t.strict = fn.strict
        t.cache_control_json = cache_json(tool.cache_control)
        out.tools.append(t)
    if req.tool_choice is not None:
        out.tool_choice_json = orjson.dumps(raw["tool_choice"])
    if req.response_format is not None:
        out.response_format_json = orjson.dumps(raw["response_format"])
    if req.provider is not None:
        out.provider.CopyFrom(provider_to_proto(req.provider))
    extra = {k: v for k, v in raw.items() if k not in TYPED_FIELDS}
    if extra:
        out.extra_json = orjson.dumps(extra)
    return out


# ---- responses ---------------------------------------------------------------------------

ROUTE_HEADER = "X-XRouter-Route"


def rate_limit_headers(info: pb.RateLimitInfo, headers: dict[str, str]) -> None:
    """X-RateLimit-Limit/Remaining/Reset from the router's view of the key's tightest window."""
    if info.limit:
        headers["X-RateLimit-Limit"] = str(info.limit)
        headers["X-RateLimit-Remaining"] = str(info.remaining)
        headers["X-RateLimit-Reset"] = str(info.reset)


def route_header(deployment: str, attempts: Iterable[pb.AttemptInfo]) -> str:
    """Which deployment answered, then every attempt in order with its outcome."""
    tried = ",".join(f"{a.deployment}:{a.outcome}" for a in attempts)
    return f"{deployment}; attempts={tried}"


def usage_json(u: pb.Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.total_tokens,
        # The exact decimal the router computed, written as a JSON number without float rounding.
        "cost": orjson.Fragment(u.cost or "0"),
        "is_estimated": u.estimated,
        "prompt_tokens_details": {"cached_tokens": u.cached_tokens,
                                  "cache_write_tokens": u.cache_write_tokens},
        "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
        "cost_details": _cost_details(u),
    }


def _cost_details(u: pb.Usage) -> dict[str, Any]:
    """OpenRouter's cost_details: what the prompt's and the completion's buckets cost (exact
    decimals, summing to `cost`); upstream_inference_cost is for BYOK, which XRouter has not."""
    cost = Decimal(u.cost or "0")
    prompt = Decimal(u.prompt_cost or "0")
    return {"upstream_inference_cost": None,
            "upstream_inference_prompt_cost": orjson.Fragment(_plain(prompt)),
            "upstream_inference_completions_cost": orjson.Fragment(_plain(cost - prompt))}


def _plain(amount: Decimal) -> str:
    return format(amount.normalize(), "f") if amount else "0"


def _tool_calls_json(calls: Any, with_index: bool) -> list[dict[str, Any]]:
    out = []
    for c in calls:
        item: dict[str, Any] = {"id": c.id, "type": "function",
                                "function": {"name": c.name, "arguments": c.arguments}}
        if with_index:
            item["index"] = c.index
        out.append(item)
    return out


def completion_json(r: pb.ChatResponse) -> bytes:
    choices = []
    for ch in r.choices:
        m = ch.message
        message: dict[str, Any] = {"role": m.role or "assistant",
                                   "content": m.content if m.HasField("content") else None}
        if m.HasField("reasoning"):
            message["reasoning"] = m.reasoning
            message["reasoning_details"] = reasoning_details(m.reasoning, m.reasoning_signature)
        if m.tool_calls:
            message["tool_calls"] = _tool_calls_json(m.tool_calls, with_index=False)
        choices.append({"index": ch.index, "message": message,
                        "finish_reason": ch.finish_reason or None, "logprobs": None})
    body: dict[str, Any] = {
        "id": r.id, "object": "chat.completion", "created": r.created, "model": r.model,
        "provider": r.provider, "choices": choices, "usage": usage_json(r.usage),
    }
    if r.system_fingerprint:
        body["system_fingerprint"] = r.system_fingerprint
    return orjson.dumps(body)


class ChunkWriter:
    """Turns router stream events into OpenAI `chat.completion.chunk` SSE events."""

    __slots__ = ("_head",)
    keepalive = b": XROUTER PROCESSING\n\n"

    def __init__(self, generation_id: str) -> None:
        self._head: dict[str, Any] = {"id": generation_id, "object": "chat.completion.chunk",
                                      "created": 0, "model": "", "provider": ""}

    def served(self, ev: pb.ChatStreamEvent) -> None:
        if ev.model:
            self._head["model"] = ev.model
            self._head["provider"] = ev.provider
            self._head["created"] = ev.created

    def deltas(self, ev: pb.ChatStreamEvent) -> bytes:
        out = []
        head = self._head
        for d in ev.chunks:
            delta: dict[str, Any] = {}
            if d.role:
                delta["role"] = d.role
            if d.HasField("content"):
                delta["content"] = d.content
            if d.HasField("reasoning"):
                delta["reasoning"] = d.reasoning
            if d.HasField("reasoning") or d.reasoning_signature:
                delta["reasoning_details"] = reasoning_details(d.reasoning,
                                                               d.reasoning_signature)
            if d.tool_calls:
                delta["tool_calls"] = _tool_calls_json(d.tool_calls, with_index=True)
            choice = {"index": d.index, "delta": delta, "finish_reason": d.finish_reason or None,
                      "logprobs": None}
            out.append(b"data: " + orjson.dumps({**head, "choices": [choice]}) + b"\n\n")
        return b"".join(out)

    def error(self, err: APIError) -> bytes:
        metadata = dict(err.metadata)
        code = metadata.pop("error_code", err.status)
        chunk = {**self._head, "error": {"code": code, "message": err.message,
                                         "metadata": metadata},
                 "choices": [self._error_choice()]}
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    def _error_choice(self) -> dict[str, Any]:
        return {"index": 0, "delta": {"content": ""}, "finish_reason": "error"}

    def usage(self, u: pb.Usage | None) -> bytes:
        chunk = {**self._head, "choices": [], "usage": usage_json(u or pb.Usage())}
        return b"data: " + orjson.dumps(chunk) + b"\n\ndata: [DONE]\n\n"
