"""OpenAI Responses API answers from the router's chat results: the `response` object, and the
typed SSE event sequence of a streamed response, event by event as the official `openai`
package's `types/responses/` parses them. No I/O here."""

from __future__ import annotations

from typing import Any

import orjson

from xrouter.v1 import router_pb2 as pb
from xrouter_gateway.convert import usage_json as chat_usage_json
from xrouter_gateway.errors import APIError
from xrouter_gateway.responses_request import Echo

_KEEPALIVE = b": XROUTER PROCESSING\n\n"


def usage_json(u: pb.Usage) -> dict[str, Any]:
    chat = chat_usage_json(u)
    return {
        "input_tokens": u.prompt_tokens,
        "input_tokens_details": {"cached_tokens": u.cached_tokens,
                                 "cache_write_tokens": u.cache_write_tokens},
        "output_tokens": u.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
        "total_tokens": u.total_tokens,
        # XRouter's: RUB, exact decimals, as in chat completions.
        "cost": chat["cost"], "cost_details": chat["cost_details"], "is_estimated": u.estimated,
    }


def _suffix(generation_id: str) -> str:
    return generation_id.removeprefix("gen-")


def _message_item(item_id: str, text: str, status: str) -> dict[str, Any]:
    content = [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]
    return {"id": item_id, "type": "message", "role": "assistant", "status": status,
            "content": content if status == "completed" else []}


def _call_item(item_id: str, call_id: str, name: str, arguments: str,
               status: str) -> dict[str, Any]:
    return {"id": item_id, "type": "function_call", "call_id": call_id, "name": name,
            "arguments": arguments, "status": status}


def _reasoning_item(item_id: str, text: str, status: str) -> dict[str, Any]:
    content = [{"type": "reasoning_text", "text": text}] if status == "completed" else []
    return {"id": item_id, "type": "reasoning", "summary": [], "content": content,
            "status": status}


def _status(finish_reason: str) -> tuple[str, dict[str, str] | None]:
    if finish_reason == "length":
        return "incomplete", {"reason": "max_output_tokens"}
    if finish_reason == "content_filter":
        return "incomplete", {"reason": "content_filter"}
    return "completed", None


def response_object(generation_id: str, echo: Echo, *, model: str, provider: str, created: int,
                    status: str, output: list[dict[str, Any]], usage: pb.Usage | None,
                    incomplete: dict[str, str] | None = None,
                    error: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"id": generation_id, "object": "response", "created_at": created, "status": status,
            "error": error, "incomplete_details": incomplete, "model": model or echo.model,
            "provider": provider, "output": output, **echo.fields,
            "usage": usage_json(usage) if usage is not None else None}


def response_json(reply: pb.ChatResponse, generation_id: str, echo: Echo) -> bytes:
    """The whole `response` object of a non-streamed call."""
    suffix = _suffix(generation_id)
    output: list[dict[str, Any]] = []
    finish = ""
    for choice in reply.choices[:1]:
        m = choice.message
        finish = choice.finish_reason
        if m.HasField("reasoning"):
            output.append(_reasoning_item(f"rs_{suffix}", m.reasoning, "completed"))
        if m.content or not m.tool_calls:
            output.append(_message_item(f"msg_{suffix}", m.content, "completed"))
        output.extend(_call_item(f"fc_{suffix}_{k}", c.id, c.name, c.arguments, "completed")
                      for k, c in enumerate(m.tool_calls))
    status, incomplete = _status(finish)
    return orjson.dumps(response_object(
        generation_id, echo, model=reply.model, provider=reply.provider, created=reply.created,
        status=status, output=output, usage=reply.usage, incomplete=incomplete))


class _Open:
    """The output item being streamed: its index, kind and what it has so far."""

    __slots__ = ("call_id", "id", "index", "kind", "name", "text")

    def __init__(self, index: int, kind: str, item_id: str, name: str = "",
                 call_id: str = "") -> None:
        self.index, self.kind, self.id = index, kind, item_id
        self.name, self.call_id, self.text = name, call_id, ""


class ResponseStreamWriter:
    """Router stream events -> `response.*` SSE events (sse.StreamWriter). Items open as their
    first delta arrives and close when another kind begins or the stream ends; the terminal
    event (completed, incomplete or failed) carries the whole response with its usage."""

    keepalive = _KEEPALIVE

    def __init__(self, generation_id: str, echo: Echo) -> None:
        self._id = generation_id
        self._suffix = _suffix(generation_id)
        self._echo = echo
        self._seq = 0
        self._started = False
        self._model, self._provider, self._created = echo.model, "", 0
        self._open: _Open | None = None
        self._calls: dict[int, _Open] = {}
        self._done: list[dict[str, Any]] = []
        self._finish = ""
        self._error: APIError | None = None

    def _event(self, kind: str, **fields: Any) -> bytes:
        body = orjson.dumps({"type": kind, "sequence_number": self._seq, **fields})
        self._seq += 1
        return b"event: " + kind.encode() + b"\ndata: " + body + b"\n\n"

    def _response(self, status: str, usage: pb.Usage | None = None,
                  incomplete: dict[str, str] | None = None,
                  error: dict[str, Any] | None = None) -> dict[str, Any]:
        return response_object(self._id, self._echo, model=self._model, provider=self._provider,
                               created=self._created, status=status, output=list(self._done),
                               usage=usage, incomplete=incomplete, error=error)

    def _prelude(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        return (self._event("response.created", response=self._response("in_progress"))
                + self._event("response.in_progress", response=self._response("in_progress")))

    def served(self, ev: pb.ChatStreamEvent) -> None:
        if ev.model:
            self._model, self._provider, self._created = ev.model, ev.provider, ev.created

    def deltas(self, ev: pb.ChatStreamEvent) -> bytes:
        out = [self._prelude()]
        for d in ev.chunks:
            if d.index != 0:
                continue
            if d.HasField("reasoning") and d.reasoning:
                out.append(self._text("reasoning", d.reasoning))
            if d.HasField("content") and d.content:
                out.append(self._text("message", d.content))
            for call in d.tool_calls:
                out.append(self._call(call))
            if d.finish_reason:
                self._finish = d.finish_reason
        return b"".join(out)

    def _text(self, kind: str, delta: str) -> bytes:
        out = b""
        item = self._open
        if item is None or item.kind != kind:
            out += self._close()
            prefix = "msg" if kind == "message" else "rs"
            item = self._open = _Open(len(self._done), kind, f"{prefix}_{self._suffix}_{len(self._done)}")
            added = (_message_item(item.id, "", "in_progress") if kind == "message"
                     else _reasoning_item(item.id, "", "in_progress"))
            part = ({"type": "output_text", "text": "", "annotations": [], "logprobs": []}
                    if kind == "message" else {"type": "reasoning_text", "text": ""})
            out += self._event("response.output_item.added", output_index=item.index, item=added)
            out += self._event("response.content_part.added", item_id=item.id,
                               output_index=item.index, content_index=0, part=part)
        item.text += delta
        if kind == "message":
            return out + self._event("response.output_text.delta", item_id=item.id,
                                     output_index=item.index, content_index=0, delta=delta,
                                     logprobs=[])
        return out + self._event("response.reasoning_text.delta", item_id=item.id,
                                 output_index=item.index, content_index=0, delta=delta)

    def _call(self, call: pb.ToolCall) -> bytes:
        out = b""
        item = self._calls.get(call.index)
        if item is None:
            out += self._close()
            item = _Open(len(self._done), "call", f"fc_{self._suffix}_{len(self._done)}",
                         call.name, call.id)
            self._calls[call.index] = self._open = item
            out += self._event("response.output_item.added", output_index=item.index,
                               item=_call_item(item.id, item.call_id, item.name, "", "in_progress"))
        if not call.arguments:
            return out
        item.text += call.arguments
        return out + self._event("response.function_call_arguments.delta", item_id=item.id,
                                 output_index=item.index, delta=call.arguments)

    def _close(self) -> bytes:
        item, self._open = self._open, None
        if item is None:
            return b""
        if item.kind == "call":
            done = _call_item(item.id, item.call_id, item.name, item.text, "completed")
            self._done.append(done)
            return (self._event("response.function_call_arguments.done", item_id=item.id,
                                output_index=item.index, name=item.name, arguments=item.text)
                    + self._event("response.output_item.done", output_index=item.index, item=done))
        if item.kind == "message":
            done = _message_item(item.id, item.text, "completed")
            part = done["content"][0]
            head = self._event("response.output_text.done", item_id=item.id,
                               output_index=item.index, content_index=0, text=item.text,
                               logprobs=[])
        else:
            done = _reasoning_item(item.id, item.text, "completed")
            part = done["content"][0]
            head = self._event("response.reasoning_text.done", item_id=item.id,
                               output_index=item.index, content_index=0, text=item.text)
        self._done.append(done)
        return (head + self._event("response.content_part.done", item_id=item.id,
                                   output_index=item.index, content_index=0, part=part)
                + self._event("response.output_item.done", output_index=item.index, item=done))

    def error(self, err: APIError) -> bytes:
        self._error = err
        return b""

    def usage(self, u: pb.Usage | None) -> bytes:
        """The end: open items closed, then response.completed, .incomplete or .failed, which
        carries the usage charged (no [DONE]: the Responses API has none)."""
        out = self._prelude() + self._close()
        err = self._error
        if err is None:
            status, incomplete = _status(self._finish)
            kind = "response.completed" if status == "completed" else "response.incomplete"
            return out + self._event(kind, response=self._response(status, u, incomplete))
        metadata = dict(err.metadata)
        code = str(metadata.pop("error_code", err.type))
        error = {"code": code, "message": err.message}
        if code == "budget_exhausted":
            response = self._response("incomplete", u, {"reason": "max_output_tokens"}, error)
            return out + self._event("response.incomplete", response=response)
        return out + self._event("response.failed", response=self._response("failed", u, None,
                                                                            error))
