"""JSON Schemas of the other inbound formats' answers: the OpenAI Responses API's `response`
object and its typed stream events (responses_output), and Anthropic's `message`, its named
stream events and its error shape (anthropic_format, anthropic_stream)."""

from __future__ import annotations

from typing import Any

from xrouter_gateway.openapi_chat import sse_event
from xrouter_gateway.openapi_schemas import BOOL, INT, NULL, NUM, RUB, STR, Schema, array, nullable, obj, ref

_ITEM_STATUS: Schema = {"enum": ["in_progress", "completed"]}


def _typed(kind: str | list[str], props: Schema, optional: Schema | None = None) -> Schema:
    """An object whose `type` is `kind` (or one of them)."""
    tag = {"const": kind} if isinstance(kind, str) else {"enum": kind}
    return obj({"type": tag, **props}, optional)


def _response_usage() -> Schema:
    return obj({"input_tokens": INT,
                "input_tokens_details": obj({"cached_tokens": INT, "cache_write_tokens": INT}),
                "output_tokens": INT,
                "output_tokens_details": obj({"reasoning_tokens": INT}),
                "total_tokens": INT, "cost": RUB, "cost_details": ref("CostDetails"),
                "is_estimated": BOOL})


def _output_items() -> dict[str, Schema]:
    return {
        "ResponseOutputText": _typed("output_text", {"text": STR, "annotations": array(NULL),
                                                     "logprobs": array(NULL)}),
        "ResponseReasoningText": _typed("reasoning_text", {"text": STR}),
        "ResponseOutputItem": {"oneOf": [
            _typed("message", {"id": STR, "role": {"const": "assistant"},
                               "status": _ITEM_STATUS,
                               "content": array(ref("ResponseOutputText"))}),
            _typed("function_call", {"id": STR, "call_id": STR, "name": STR,
                                     "arguments": STR, "status": _ITEM_STATUS}),
            _typed("reasoning", {"id": STR, "summary": array(NULL),
                                 "content": array(ref("ResponseReasoningText")),
                                 "status": _ITEM_STATUS}),
        ]},
    }


def _response() -> Schema:
    tool = _typed("function", {"name": STR, "description": nullable(STR),
                               "parameters": nullable({"type": "object"}),
                               "strict": nullable(BOOL)})
    choice = {"anyOf": [{"enum": ["none", "auto", "required"]},
                        _typed("function", {"name": STR})]}
    number = nullable(NUM)
    return obj({
        "id": STR, "object": {"const": "response"}, "created_at": INT,
        "status": {"enum": ["in_progress", "completed", "incomplete", "failed"]},
        "error": nullable(obj({"code": STR, "message": STR})),
        "incomplete_details": nullable(obj({"reason": STR})),
        "model": STR, "provider": STR, "output": array(ref("ResponseOutputItem")),
        "instructions": nullable(STR), "max_output_tokens": nullable(INT),
        "metadata": {"type": "object", "additionalProperties": STR},
        "parallel_tool_calls": BOOL, "previous_response_id": NULL, "store": {"const": False},
        "temperature": number, "top_p": number, "tool_choice": choice, "tools": array(tool),
        "truncation": {"const": "disabled"},
        "text": obj({"format": obj({"type": {"enum": ["text", "json_object", "json_schema"]}})}),
        "user": nullable(STR),
        "reasoning": obj({"effort": nullable(STR), "summary": NULL}),
        "usage": nullable(ref("ResponseUsage")),
    }, description="A `response` object of the Responses API (stateless: never stored)")


def _response_events() -> Schema:
    at = {"item_id": STR, "output_index": INT}
    part = {"item_id": STR, "output_index": INT, "content_index": INT}
    logprobs = {"logprobs": array(NULL)}
    events = [
        _typed(["response.created", "response.in_progress", "response.completed",
                "response.incomplete", "response.failed"], {"response": ref("Response")}),
        _typed(["response.output_item.added", "response.output_item.done"],
               {"output_index": INT, "item": ref("ResponseOutputItem")}),
        _typed(["response.content_part.added", "response.content_part.done"],
               {**part, "part": {"anyOf": [ref("ResponseOutputText"),
                                           ref("ResponseReasoningText")]}}),
        _typed("response.output_text.delta", {**part, "delta": STR, **logprobs}),
        _typed("response.output_text.done", {**part, "text": STR, **logprobs}),
        _typed("response.reasoning_text.delta", {**part, "delta": STR}),
        _typed("response.reasoning_text.done", {**part, "text": STR}),
        _typed("response.function_call_arguments.delta", {**at, "delta": STR}),
        _typed("response.function_call_arguments.done", {**at, "name": STR,
                                                         "arguments": STR}),
    ]
    for event in events:
        event["required"].append("sequence_number")
        event["properties"]["sequence_number"] = INT
    return {"oneOf": events, "description": "A Responses API stream event"}


def _anthropic_usage() -> Schema:
    return obj({"input_tokens": {**INT, "description": "without cache reads and writes"},
                "output_tokens": INT, "cache_read_input_tokens": INT,
                "cache_creation_input_tokens": INT})


def _anthropic_message(start: bool) -> Schema:
    """The whole message; at a stream's start, with no stop reason and zero usage yet."""
    usage = obj({"input_tokens": INT, "output_tokens": INT}) if start \
        else ref("AnthropicUsage")
    return _typed("message", {
        "id": STR, "role": {"const": "assistant"}, "model": STR,
        "content": array(ref("AnthropicContentBlock")),
        "stop_reason": NULL if start else STR, "stop_sequence": NULL, "usage": usage})


def _anthropic_events() -> Schema:
    delta = {"oneOf": [_typed("text_delta", {"text": STR}),
                       _typed("thinking_delta", {"thinking": STR}),
                       _typed("signature_delta", {"signature": STR}),
                       _typed("input_json_delta", {"partial_json": STR})]}
    return {"oneOf": [
        _typed("message_start", {"message": _anthropic_message(start=True)}),
        _typed("content_block_start", {"index": INT,
                                       "content_block": ref("AnthropicContentBlock")}),
        _typed("content_block_delta", {"index": INT, "delta": delta}),
        _typed("content_block_stop", {"index": INT}),
        _typed("message_delta", {"delta": obj({"stop_reason": STR, "stop_sequence": NULL}),
                                 "usage": ref("AnthropicUsage")}),
        _typed(["message_stop", "ping"], {}),
        ref("AnthropicError"),
    ], "description": "An Anthropic stream event (an `error` event ends the stream)"}


def formats_components() -> dict[str, Schema]:
    blocks: list[Any] = [
        _typed("text", {"text": STR}),
        _typed("thinking", {"thinking": STR, "signature": STR}),
        _typed("tool_use", {"id": STR, "name": STR, "input": {"type": "object"}}),
    ]
    return {
        "ResponseUsage": _response_usage(),
        **_output_items(),
        "Response": _response(),
        "ResponseStreamEvent": _response_events(),
        "ResponseEvent": sse_event(ref("ResponseStreamEvent"), True,
                                   "The last is response.completed, response.incomplete or "
                                   "response.failed (no [DONE])."),
        "AnthropicUsage": _anthropic_usage(),
        "AnthropicContentBlock": {"oneOf": blocks},
        "AnthropicMessage": _anthropic_message(start=False),
        "AnthropicStreamEvent": _anthropic_events(),
        "AnthropicEvent": sse_event(ref("AnthropicStreamEvent"), True,
                                    "message_start ... message_stop, or an `error` event; "
                                    "`ping` events keep the connection alive."),
        "AnthropicError": _typed("error", {"error": obj({"type": STR, "message": STR})}),
    }
