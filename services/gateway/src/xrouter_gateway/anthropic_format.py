"""Anthropic Messages API JSON <-> xrouter.v1 protobuf: the request schema and its translation,
the `message` body and the error shape (the named SSE events: anthropic_stream.py). No I/O here.

Field names, ranges and event order follow Anthropic's API reference and its official SDK.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
import orjson
from msgspec import Meta, Struct

from xrouter.v1 import router_pb2 as pb
from xrouter_gateway.convert import cache_json, json_object
from xrouter_gateway.errors import APIError
from xrouter_gateway.guards import check_depth, validation_error
from xrouter_gateway.schemas import CacheControl

NonEmpty = Annotated[str, Meta(min_length=1)]


# ---- request schema -----------------------------------------------------------------------

class Base64Source(Struct, tag="base64", tag_field="type"):
    media_type: Literal["image/jpeg", "image/png", "image/gif", "image/webp"]
    data: NonEmpty


class UrlSource(Struct, tag="url", tag_field="type"):
    url: NonEmpty


class TextBlock(Struct, tag="text", tag_field="type"):
    text: str
    cache_control: CacheControl | None = None


class ThinkingBlock(Struct, tag="thinking", tag_field="type"):
    """A previous answer's reasoning, sent back by clients: with its signature, it goes back to
    the upstream that signed it; without, it is dropped."""

    thinking: str
    signature: str = ""


class RedactedThinkingBlock(Struct, tag="redacted_thinking", tag_field="type"):
    data: str


class ImageBlock(Struct, tag="image", tag_field="type"):
    source: Base64Source | UrlSource
    cache_control: CacheControl | None = None


class ToolUseBlock(Struct, tag="tool_use", tag_field="type"):
    id: NonEmpty
    name: NonEmpty
    input: dict[str, Any]


class ToolResultBlock(Struct, tag="tool_result", tag_field="type"):
    tool_use_id: NonEmpty
    content: str | list[TextBlock] = ""
    is_error: bool = False
    cache_control: CacheControl | None = None


Block = TextBlock | ImageBlock | ToolUseBlock | ToolResultBlock | ThinkingBlock \
    | RedactedThinkingBlock


class InputMessage(Struct):
    role: Literal["user", "assistant"]
    content: str | list[Block]


class ToolDef(Struct):
    """A client tool; Anthropic's server tools (web search, bash ...) have other types."""

    name: Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-.]+$")]
    input_schema: dict[str, Any]
    description: str | None = None
    type: Literal["custom"] | None = None
    cache_control: CacheControl | None = None


class ToolChoiceAuto(Struct, tag="auto", tag_field="type"):
    disable_parallel_tool_use: bool = False


class ToolChoiceAny(Struct, tag="any", tag_field="type"):
    disable_parallel_tool_use: bool = False


class ToolChoiceTool(Struct, tag="tool", tag_field="type"):
    name: NonEmpty
    disable_parallel_tool_use: bool = False


class ToolChoiceNone(Struct, tag="none", tag_field="type"):
    disable_parallel_tool_use: bool = False


ToolChoice = ToolChoiceAuto | ToolChoiceAny | ToolChoiceTool | ToolChoiceNone


class Metadata(Struct):
    user_id: str | None = None


class ThinkingEnabled(Struct, tag="enabled", tag_field="type"):
    budget_tokens: Annotated[int, Meta(ge=1024, le=2**31 - 1)]


class ThinkingDisabled(Struct, tag="disabled", tag_field="type"):
    pass


class MessagesRequest(Struct):
    """The body of POST /v1/messages. Unknown fields (service_tier ...) are ignored: they have
    no meaning for the models behind the router. `thinking` becomes the router's `reasoning`
    (its budget as reasoning.max_tokens); `cache_control` on text blocks (system included) is
    passed to the upstream as the chat format's content parts carry it."""

    model: NonEmpty
    max_tokens: Annotated[int, Meta(ge=1, le=2**31 - 1)]
    messages: Annotated[list[InputMessage], Meta(min_length=1)]
    system: str | list[TextBlock] | None = None
    temperature: Annotated[float, Meta(ge=0.0, le=1.0)] | None = None
    top_p: Annotated[float, Meta(ge=0.0, le=1.0)] | None = None
    top_k: Annotated[int, Meta(ge=0, le=2**31 - 1)] | None = None
    stop_sequences: Annotated[list[str], Meta(max_length=16)] | None = None
    stream: bool = False
    tools: list[ToolDef] | None = None
    tool_choice: ToolChoice | None = None
    metadata: Metadata | None = None
    thinking: ThinkingEnabled | ThinkingDisabled | None = None


def parse_messages(body: bytes) -> MessagesRequest:
    """Decode and validate a Messages request body; raises APIError(400) with the field named."""
    raw = json_object(body)
    for name, value in raw.items():
        check_depth(value, name, 2)
    try:
        req = msgspec.convert(raw, MessagesRequest)
    except msgspec.ValidationError as exc:
        raise validation_error(exc) from None
    _check(req)
    return req


_ALLOWED_BLOCKS = {"user": (TextBlock, ImageBlock, ToolResultBlock),
                   "assistant": (TextBlock, ToolUseBlock, ThinkingBlock, RedactedThinkingBlock)}


def _check(req: MessagesRequest) -> None:
    if isinstance(req.thinking, ThinkingEnabled) and req.thinking.budget_tokens >= req.max_tokens:
        raise APIError(400, "`max_tokens` must be greater than `thinking.budget_tokens`",
                       param="thinking.budget_tokens")
    if isinstance(req.tool_choice, ToolChoiceAny | ToolChoiceTool) and not req.tools:
        raise APIError(400, f"tool_choice of type '{req.tool_choice.__struct_config__.tag}' "
                            "needs 'tools'", param="tool_choice")
    for i, m in enumerate(req.messages):
        if isinstance(m.content, str):
            continue
        for j, block in enumerate(m.content):
            if not isinstance(block, _ALLOWED_BLOCKS[m.role]):
                where = f"messages[{i}].content[{j}]"
                kind = block.__struct_config__.tag
                raise APIError(400, f"{where}: '{kind}' blocks are not allowed in {m.role} "
                                    "messages", param=f"{where}.type")


# ---- request translation ------------------------------------------------------------------

def _image_url(block: ImageBlock) -> str:
    source = block.source
    if isinstance(source, UrlSource):
        return source.url
    return f"data:{source.media_type};base64,{source.data}"


def _tool_result(block: ToolResultBlock) -> pb.Message:
    content = block.content
    text = content if isinstance(content, str) else "\n\n".join(b.text for b in content)
    if block.is_error:
        # OpenAI's tool message has no error flag: the model learns it from the text.
        text = "Error: " + text
    if block.cache_control is None:
        return pb.Message(role="tool", tool_call_id=block.tool_use_id, content=text)
    # The breakpoint travels in a text part's JSON, as a chat tool message's part carries it.
    return pb.Message(role="tool", tool_call_id=block.tool_use_id,
                      parts=[_text_part(TextBlock(text, block.cache_control))])


def _text_part(b: TextBlock) -> pb.ContentPart:
    """A text part; one with cache_control also carries its JSON, as a chat content part does."""
    if b.cache_control is None:
        return pb.ContentPart(type="text", text=b.text)
    raw = {"type": "text", "text": b.text, "cache_control": msgspec.to_builtins(b.cache_control)}
    return pb.ContentPart(type="text", text=b.text, raw_json=orjson.dumps(raw))


def _system(blocks: list[TextBlock]) -> pb.Message:
    """One system message, its blocks joined by blank lines; with cache_control, as parts (so
    the Anthropic adapter can put each breakpoint back), the separators at the parts' starts,
    so that the text every other upstream sees is the same."""
    if all(b.cache_control is None for b in blocks):
        return pb.Message(role="system", content="\n\n".join(b.text for b in blocks))
    parts = [_text_part(b if i == 0 else TextBlock("\n\n" + b.text, b.cache_control))
             for i, b in enumerate(blocks)]
    return pb.Message(role="system", parts=parts)


def _user(blocks: list[Block]) -> list[pb.Message]:
    """Tool results first, as `tool` messages in order, then the rest as one user message."""
    out = [_tool_result(b) for b in blocks if isinstance(b, ToolResultBlock)]
    parts = []
    for b in blocks:
        if isinstance(b, TextBlock):
            parts.append(_text_part(b))
        elif isinstance(b, ImageBlock):
            parts.append(pb.ContentPart(type="image_url", image_url=_image_url(b),
                                        raw_json=cache_json(b.cache_control, "image_url")))
    if parts or not out:
        out.append(pb.Message(role="user", parts=parts))
    return out


def _assistant(blocks: list[Block]) -> pb.Message:
    texts = [b.text for b in blocks if isinstance(b, TextBlock)]
    calls = [b for b in blocks if isinstance(b, ToolUseBlock)]
    thoughts = [b for b in blocks if isinstance(b, ThinkingBlock)]
    out = pb.Message(role="assistant", tool_calls=[
        pb.ToolCall(index=k, id=c.id, name=c.name, arguments=orjson.dumps(c.input).decode())
        for k, c in enumerate(calls)])
    if len(thoughts) == 1 and thoughts[0].signature:
        # A signed thinking block goes back to the upstream that signed it (Anthropic requires
        # the last turn's with tool use); others carry nothing an upstream takes.
        out.reasoning, out.reasoning_signature = thoughts[0].thinking, thoughts[0].signature
    if texts or not calls:
        # One stream of model output split into blocks: joined as the SDK's get_final_text does.
        out.content = "".join(texts)
    return out


def _messages(req: MessagesRequest) -> list[pb.Message]:
    out = []
    if isinstance(req.system, str):
        out.append(pb.Message(role="system", content=req.system))
    elif req.system:
        out.append(_system(req.system))
    for m in req.messages:
        if isinstance(m.content, str):
            out.append(pb.Message(role=m.role, content=m.content))
        elif m.role == "user":
            out.extend(_user(m.content))
        else:
            out.append(_assistant(m.content))
    return out


def _tool_choice(choice: ToolChoice) -> str | dict[str, Any]:
    if isinstance(choice, ToolChoiceTool):
        return {"type": "function", "function": {"name": choice.name}}
    return {ToolChoiceAuto: "auto", ToolChoiceAny: "required", ToolChoiceNone: "none"}[type(choice)]


def to_chat_request(req: MessagesRequest, generation_id: str) -> pb.ChatRequest:
    out = pb.ChatRequest(generation_id=generation_id, model=req.model, messages=_messages(req),
                         max_tokens=req.max_tokens, stop=req.stop_sequences or [],
                         user=(req.metadata.user_id or "") if req.metadata else "")
    for name, value in (("temperature", req.temperature), ("top_p", req.top_p),
                        ("top_k", req.top_k)):
        if value is not None:
            setattr(out, name, value)
    for tool in req.tools or ():
        out.tools.append(pb.Tool(name=tool.name, description=tool.description or "",
                                 parameters_json=orjson.dumps(tool.input_schema),
                                 cache_control_json=cache_json(tool.cache_control)))
    extra: dict[str, Any] = {}
    # OpenAI upstreams reject tool_choice without tools; "auto" and "none" then mean nothing.
    if req.tool_choice is not None and req.tools:
        out.tool_choice_json = orjson.dumps(_tool_choice(req.tool_choice))
        if req.tool_choice.disable_parallel_tool_use:
            extra["parallel_tool_calls"] = False
    if isinstance(req.thinking, ThinkingEnabled):
        extra["reasoning"] = {"max_tokens": req.thinking.budget_tokens}
    if extra:
        out.extra_json = orjson.dumps(extra)
    return out


# ---- responses ----------------------------------------------------------------------------

STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use",
                "function_call": "tool_use", "content_filter": "end_turn"}


def message_id(generation_id: str) -> str:
    return "msg_" + generation_id.removeprefix("gen-")


def stop_reason(finish_reason: str) -> str:
    return STOP_REASONS.get(finish_reason, "end_turn")


def usage_json(u: pb.Usage) -> dict[str, int]:
    # Anthropic's input_tokens excludes cache reads and writes; OpenAI's prompt_tokens includes
    # them.
    return {"input_tokens": u.prompt_tokens - u.cached_tokens - u.cache_write_tokens,
            "output_tokens": u.completion_tokens,
            "cache_read_input_tokens": u.cached_tokens,
            "cache_creation_input_tokens": u.cache_write_tokens}


def _tool_input(call: pb.ToolCall) -> dict[str, Any]:
    try:
        value = orjson.loads(call.arguments or "{}")
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise APIError(502, f"The model called tool '{call.name}' with arguments that are not "
                            "a JSON object")
    return value


def message_json(r: pb.ChatResponse, message_id: str) -> bytes:
    """The Anthropic `message` for a whole completion; APIError(502) when a tool call's
    arguments are not a JSON object (Anthropic's `input` must be one)."""
    content: list[dict[str, Any]] = []
    finish = ""
    if r.choices:
        choice = r.choices[0]
        finish = choice.finish_reason
        m = choice.message
        if m.HasField("reasoning") and m.reasoning:
            content.append({"type": "thinking", "thinking": m.reasoning,
                            "signature": m.reasoning_signature})
        if m.HasField("content") and m.content:
            content.append({"type": "text", "text": m.content})
        content.extend({"type": "tool_use", "id": c.id, "name": c.name, "input": _tool_input(c)}
                       for c in m.tool_calls)
    return orjson.dumps({
        "id": message_id, "type": "message", "role": "assistant", "model": r.model,
        "content": content, "stop_reason": stop_reason(finish), "stop_sequence": None,
        "usage": usage_json(r.usage),
    })


# ---- errors -------------------------------------------------------------------------------

ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
    403: "permission_error", 404: "not_found_error", 405: "invalid_request_error",
    408: "timeout_error", 413: "request_too_large", 429: "rate_limit_error",
    431: "request_too_large", 500: "api_error", 502: "api_error", 503: "overloaded_error",
}


def error_type(status: int) -> str:
    return ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")


def error_json(err: APIError) -> dict[str, Any]:
    """An error in Anthropic's shape; the HTTP status stays the one of the gateway's table."""
    return {"type": "error", "error": {"type": error_type(err.status), "message": err.message}}
