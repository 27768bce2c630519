"""JSON Schemas of the OpenAI-shaped inference answers: chat completions and their stream chunks,
legacy text completions and theirs, embeddings, the usage they carry, and one SSE event (as
convert, completions_api and embeddings write them)."""

from __future__ import annotations

from xrouter_gateway.openapi_schemas import (
    BOOL,
    INT,
    NULL,
    RUB,
    STR,
    Schema,
    array,
    nullable,
    obj,
    ref,
)


def sse_event(data: Schema, named: bool, end: str) -> Schema:
    """One Server-Sent Event of a stream (the convention of Speakeasy and others for OpenAPI
    3.1, which has no item schema for streams): its `event:` name when the format names events,
    and its `data:`, one JSON object."""
    props: Schema = {"data": data}
    if named:
        props["event"] = {**STR, "description": "the name, equal to data.type"}
    return obj(props, description="One SSE event. " + end + " `: XROUTER PROCESSING` comment "
                                  "lines may come while the first token is awaited.")


def _usage() -> Schema:
    return obj({
        "prompt_tokens": INT, "completion_tokens": INT, "total_tokens": INT,
        "cost": {**RUB, "description": "what the generation cost, RUB (exact decimal)"},
        "is_estimated": {**BOOL, "description": "true when the upstream reported no usage"},
        "prompt_tokens_details": obj({"cached_tokens": INT, "cache_write_tokens": INT}),
        "completion_tokens_details": obj({"reasoning_tokens": INT}),
        "cost_details": ref("CostDetails"),
    })


def _cost_details() -> Schema:
    return obj({"upstream_inference_cost": NULL, "upstream_inference_prompt_cost": RUB,
                "upstream_inference_completions_cost": RUB},
               description="What the prompt's and the completion's tokens cost; they sum to "
                           "cost")


def _tool_call(streamed: bool) -> Schema:
    props: Schema = {"id": STR, "type": {"const": "function"},
                     "function": obj({"name": STR, "arguments": {
                         **STR, "description": "JSON text (a piece of it in a stream)"}})}
    if streamed:
        props["index"] = INT
    return obj(props)


def _reasoning_detail() -> Schema:
    return obj({"type": {"const": "reasoning.text"}, "text": STR, "index": INT},
               {"signature": {**STR, "description": "the provider's signature of the "
                                                    "reasoning, when it gives one"}})


def _completion() -> Schema:
    message = obj({"role": STR, "content": nullable(STR)},
                  {"reasoning": STR, "reasoning_details": array(ref("ReasoningTextDetail")),
                   "tool_calls": array(ref("ToolCall"))})
    choice = obj({"index": INT, "message": message, "finish_reason": nullable(STR),
                  "logprobs": NULL})
    return obj({"id": STR, "object": {"const": "chat.completion"}, "created": INT,
                "model": STR, "provider": STR, "choices": array(choice),
                "usage": ref("Usage")},
               {"system_fingerprint": STR}, description="A chat completion (OpenAI's shape, "
                                                        "OpenRouter's additions)")


def _stream_error() -> Schema:
    return obj({"code": {"type": ["integer", "string"],
                         "description": "the HTTP status, or XRouter's error code"},
                "message": STR, "metadata": {"type": "object"}},
               description="Why a stream failed after its first event")


def _chunk() -> Schema:
    delta = obj({}, {"role": STR, "content": STR, "reasoning": STR,
                     "reasoning_details": array(ref("ReasoningTextDetail")),
                     "tool_calls": array(ref("StreamedToolCall"))})
    choice = obj({"index": INT, "delta": delta, "finish_reason": nullable(STR)},
                 {"logprobs": NULL})
    return obj({"id": STR, "object": {"const": "chat.completion.chunk"}, "created": INT,
                "model": STR, "provider": STR, "choices": array(choice)},
               {"usage": ref("Usage"), "error": ref("StreamError")},
               description="A chunk; after an error chunk (finish_reason: error), the last "
                           "has no choices and the usage")


def _text_completion(chunk: bool) -> Schema:
    choice = obj({"text": STR, "index": INT, "logprobs": NULL, "finish_reason": nullable(STR)})
    head: Schema = {"id": STR, "object": {"const": "text_completion"}, "created": INT,
                    "model": STR, "provider": STR}
    if not chunk:
        return obj({**head, "choices": array(choice), "usage": ref("Usage")},
                   description="A legacy text completion")
    return obj({**head, "choices": array(choice)},
               {"usage": ref("Usage"), "error": ref("StreamError")},
               description="A streamed piece of a text completion; the last has no choices "
                           "and the usage; an error chunk has `error` and a choice with empty "
                           "text and finish_reason `error`")


def _embeddings() -> Schema:
    vector = {"anyOf": [array({"type": "number"}),
                        {**STR, "contentEncoding": "base64",
                         "description": "little-endian float32 values (encoding_format: "
                                        "base64)"}]}
    item = obj({"object": {"const": "embedding"}, "index": INT, "embedding": vector})
    return obj({"object": {"const": "list"}, "data": array(item), "model": STR,
                "provider": STR,
                "usage": obj({"prompt_tokens": INT, "total_tokens": INT, "cost": RUB,
                              "is_estimated": BOOL})})


def chat_components() -> dict[str, Schema]:
    return {
        "Usage": _usage(),
        "CostDetails": _cost_details(),
        "ToolCall": _tool_call(streamed=False),
        "StreamedToolCall": _tool_call(streamed=True),
        "ReasoningTextDetail": _reasoning_detail(),
        "ChatCompletion": _completion(),
        "StreamError": _stream_error(),
        "ChatCompletionChunk": _chunk(),
        "ChatCompletionEvent": sse_event(ref("ChatCompletionChunk"), False,
                                         "The stream ends with `data: [DONE]`."),
        "TextCompletion": _text_completion(chunk=False),
        "TextCompletionChunk": _text_completion(chunk=True),
        "TextCompletionEvent": sse_event(ref("TextCompletionChunk"), False,
                                         "The stream ends with `data: [DONE]`."),
        "EmbeddingList": _embeddings(),
    }
