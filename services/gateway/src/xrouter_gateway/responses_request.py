"""OpenAI Responses API requests -> xrouter.v1 ChatRequest: the request schema (stateless, as
OpenRouter serves it) and its translation to the router's chat request. No I/O here.

Field names follow the official `openai` package's `types/responses/` (ResponseCreateParams).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

import msgspec
import orjson
from msgspec import Meta, Struct

from xrouter.v1 import router_pb2 as pb
from xrouter_gateway.convert import json_object, provider_to_proto, typed
from xrouter_gateway.errors import APIError
from xrouter_gateway.guards import check_depth
from xrouter_gateway.schemas import ProviderPreferences

NonEmpty = Annotated[str, Meta(min_length=1)]


class InputText(Struct, tag="input_text", tag_field="type"):
    text: str


class InputImage(Struct, tag="input_image", tag_field="type"):
    image_url: NonEmpty | None = None
    detail: Literal["auto", "low", "high", "original"] | None = None
    file_id: str | None = None


class OutputText(Struct, tag="output_text", tag_field="type"):
    text: str


class Refusal(Struct, tag="refusal", tag_field="type"):
    refusal: str


Content = InputText | InputImage | OutputText | Refusal


class MessageItem(Struct, tag="message", tag_field="type"):
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[Content]


class FunctionCallItem(Struct, tag="function_call", tag_field="type"):
    call_id: NonEmpty
    name: NonEmpty
    arguments: str


class FunctionCallOutputItem(Struct, tag="function_call_output", tag_field="type"):
    call_id: NonEmpty
    output: str | list[Content]


class ReasoningItem(Struct, tag="reasoning", tag_field="type"):
    """Sent back by clients that replay a whole turn; the models behind the router do not
    take other models' reasoning, so it is dropped."""

    summary: list[Any] = []


Item = MessageItem | FunctionCallItem | FunctionCallOutputItem | ReasoningItem


class FunctionTool(Struct, tag="function", tag_field="type"):
    name: Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-.]+$")]
    parameters: dict[str, Any] | None = None
    strict: bool | None = None
    description: str | None = None


class ToolChoiceFunction(Struct, tag="function", tag_field="type"):
    name: NonEmpty


class FormatText(Struct, tag="text", tag_field="type"):
    pass


class FormatJsonObject(Struct, tag="json_object", tag_field="type"):
    pass


class FormatJsonSchema(Struct, tag="json_schema", tag_field="type"):
    name: Annotated[str, Meta(min_length=1, max_length=64)]
    schema: dict[str, Any]
    strict: bool | None = None
    description: str | None = None


class TextConfig(Struct):
    format: FormatText | FormatJsonObject | FormatJsonSchema | None = None
    verbosity: Literal["low", "medium", "high"] | None = None


class ReasoningConfig(Struct):
    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None
    max_tokens: Annotated[int, Meta(ge=0, le=2**31 - 1)] | None = None
    exclude: bool | None = None


class ResponsesRequest(Struct):
    """The body of POST /v1/responses. Parameters of stateful or hosted features are refused
    by _check with a 400 that says so; unknown fields are ignored, as OpenAI's SDKs add new
    ones (service_tier, include, prompt_cache_key ...) that mean nothing to the router."""

    model: NonEmpty | None = None
    models: Annotated[list[NonEmpty], Meta(max_length=16)] | None = None
    input: str | Annotated[list[Item], Meta(min_length=1)] | None = None
    instructions: str | None = None
    tools: list[FunctionTool] | None = None
    tool_choice: Literal["none", "auto", "required"] | ToolChoiceFunction | None = None
    parallel_tool_calls: bool | None = None
    max_output_tokens: Annotated[int, Meta(ge=1, le=2**31 - 1)] | None = None
    temperature: Annotated[float, Meta(ge=0.0, le=2.0)] | None = None
    top_p: Annotated[float, Meta(gt=0.0, le=1.0)] | None = None
    text: TextConfig | None = None
    reasoning: ReasoningConfig | None = None
    metadata: Annotated[dict[str, Annotated[str, Meta(max_length=512)]],
                        Meta(max_length=16)] | None = None
    stream: bool = False
    store: bool | None = None
    background: bool | None = None
    previous_response_id: str | None = None
    conversation: Any = None
    user: str | None = None
    provider: ProviderPreferences | None = None


@dataclass(frozen=True, slots=True)
class Echo:
    """What a response object repeats of its request."""

    fields: dict[str, Any]
    model: str


def _normalise(raw: dict[str, Any]) -> None:
    """Easy input messages (`{"role", "content"}`) have no `type`: they are messages."""
    items = raw.get("input")
    if isinstance(items, list):
        raw["input"] = [{**item, "type": "message"}
                        if isinstance(item, dict) and "type" not in item and "role" in item
                        else item for item in items]


def parse_responses(body: bytes) -> ResponsesRequest:
    raw = json_object(body)
    for name, value in raw.items():  # tool schemas and text.format travel on as raw JSON
        check_depth(value, name, 2)
    _normalise(raw)
    req = typed(raw, ResponsesRequest)
    _check(req)
    return req


_STATELESS = ("XRouter's Responses API is stateless (as OpenRouter's): send the whole "
              "conversation in 'input'")


def _check(req: ResponsesRequest) -> None:
    if req.previous_response_id:
        raise APIError(400, f"{_STATELESS}; 'previous_response_id' is not supported",
                       param="previous_response_id")
    if req.conversation is not None:
        raise APIError(400, f"{_STATELESS}; 'conversation' is not supported", param="conversation")
    if req.store:
        raise APIError(400, f"{_STATELESS}; responses are not stored: omit 'store' or send "
                            "false", param="store")
    if req.background:
        raise APIError(400, "Background responses are not supported: omit 'background'",
                       param="background")
    if req.input is None:
        raise APIError(400, "'input' is required", param="input")
    if not req.model and not req.models:
        raise APIError(400, "'model' is required (or a non-empty 'models' list)", param="model")
    if req.tool_choice not in (None, "none", "auto") and not req.tools:
        raise APIError(400, "'tool_choice' needs 'tools'", param="tool_choice")
    for i, item in enumerate(req.input if isinstance(req.input, list) else ()):
        if isinstance(item, MessageItem) and isinstance(item.content, list):
            for j, part in enumerate(item.content):
                if isinstance(part, InputImage) and not part.image_url:
                    raise APIError(400, "input_image parts need 'image_url' (files are not "
                                        "supported)", param=f"input[{i}].content[{j}].image_url")


def _text(content: str | list[Content]) -> str:
    if isinstance(content, str):
        return content
    return "".join(p.text if isinstance(p, InputText | OutputText)
                   else p.refusal if isinstance(p, Refusal) else "" for p in content)


def _message(item: MessageItem) -> pb.Message:
    content = item.content
    if isinstance(content, str) or item.role != "user" or \
            not any(isinstance(p, InputImage) for p in content):
        return pb.Message(role=item.role, content=_text(content))
    parts = [pb.ContentPart(type="image_url", image_url=p.image_url or "", detail=p.detail or "")
             if isinstance(p, InputImage) else pb.ContentPart(type="text", text=_text([p]))
             for p in content]
    return pb.Message(role=item.role, parts=parts)


def _messages(req: ResponsesRequest) -> list[pb.Message]:
    out: list[pb.Message] = []
    if req.instructions:
        out.append(pb.Message(role="system", content=req.instructions))
    if isinstance(req.input, str):
        out.append(pb.Message(role="user", content=req.input))
        return out
    for item in req.input or ():
        if isinstance(item, MessageItem):
            out.append(_message(item))
        elif isinstance(item, FunctionCallItem):
            # Calls of one turn belong to one assistant message, as chat completions want.
            last = out[-1] if out else None
            if last is None or last.role != "assistant":
                last = pb.Message(role="assistant")
                out.append(last)
            last.tool_calls.append(pb.ToolCall(index=len(last.tool_calls), id=item.call_id,
                                               name=item.name, arguments=item.arguments))
        elif isinstance(item, FunctionCallOutputItem):
            out.append(pb.Message(role="tool", tool_call_id=item.call_id,
                                  content=_text(item.output)))
    return out


def _format_json(fmt: FormatText | FormatJsonObject | FormatJsonSchema | None) -> bytes:
    if isinstance(fmt, FormatJsonSchema):
        schema: dict[str, Any] = {"name": fmt.name, "schema": fmt.schema}
        if fmt.strict is not None:
            schema["strict"] = fmt.strict
        if fmt.description:
            schema["description"] = fmt.description
        return orjson.dumps({"type": "json_schema", "json_schema": schema})
    if isinstance(fmt, FormatJsonObject):
        return orjson.dumps({"type": "json_object"})
    return b""


def _echo(req: ResponsesRequest, model: str) -> Echo:
    tools = [{"type": "function", "name": t.name, "description": t.description,
              "parameters": t.parameters, "strict": t.strict} for t in req.tools or ()]
    choice: Any = req.tool_choice or "auto"
    if isinstance(choice, ToolChoiceFunction):
        choice = {"type": "function", "name": choice.name}
    fmt = req.text.format if req.text else None
    text_format = msgspec.to_builtins(fmt) if fmt is not None else {"type": "text"}
    return Echo({
        "instructions": req.instructions, "max_output_tokens": req.max_output_tokens,
        "metadata": req.metadata or {}, "parallel_tool_calls": req.parallel_tool_calls is not False,
        "previous_response_id": None, "store": False, "temperature": req.temperature,
        "top_p": req.top_p, "tool_choice": choice, "tools": tools, "truncation": "disabled",
        "text": {"format": text_format}, "user": req.user,
        "reasoning": {"effort": req.reasoning.effort if req.reasoning else None, "summary": None},
    }, model)


def to_chat_request(req: ResponsesRequest, generation_id: str) -> tuple[pb.ChatRequest, Echo]:
    models = list(req.models or ())
    model = req.model or models.pop(0)
    out = pb.ChatRequest(generation_id=generation_id, model=model, models=models,
                         messages=_messages(req), user=req.user or "")
    for name, value in (("max_tokens", req.max_output_tokens), ("temperature", req.temperature),
                        ("top_p", req.top_p)):
        if value is not None:
            setattr(out, name, value)
    for tool in req.tools or ():
        t = pb.Tool(name=tool.name, description=tool.description or "",
                    parameters_json=orjson.dumps(tool.parameters) if tool.parameters else b"")
        if tool.strict is not None:
            t.strict = tool.strict
        out.tools.append(t)
    if isinstance(req.tool_choice, ToolChoiceFunction):
        out.tool_choice_json = orjson.dumps({"type": "function",
                                             "function": {"name": req.tool_choice.name}})
    elif req.tool_choice is not None and (req.tools or req.tool_choice == "none"):
        out.tool_choice_json = orjson.dumps(req.tool_choice)
    out.response_format_json = _format_json(req.text.format if req.text else None)
    extra: dict[str, Any] = {}
    if req.reasoning is not None:
        extra["reasoning"] = {k: v for k, v in msgspec.to_builtins(req.reasoning).items()
                              if k != "summary"}
    if req.parallel_tool_calls is not None and req.tools:
        extra["parallel_tool_calls"] = req.parallel_tool_calls
    if extra:
        out.extra_json = orjson.dumps(extra)
    if req.provider is not None:
        out.provider.CopyFrom(provider_to_proto(req.provider))
    return out, _echo(req, model)
