"""Structured outputs for providers without a native response_format (Anthropic, GigaChat): the
format becomes one more tool, named after the schema and taking it as its parameters, that the
model is made to call; the call's arguments come back as the answer's text, and the call itself
never reaches the client.

The choice the provider is sent: a client that forces one of its own tools keeps that; a client
with tools of its own and no forced choice gets "call some tool" where the provider has it
(`any_tool`), so the model may still use its tools first; otherwise the format's tool is forced.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import orjson

from xrouter_router.domain.structured import AnswerFormat, answer_format
from xrouter_router.domain.types import ChatRequest, Completion, Delta, StreamBatch, Tool


@dataclass(frozen=True, slots=True)
class ForcedTool:
    """The tool a request's format became, and what to send as the tool choice."""

    tool: Tool
    # OpenAI's tool_choice JSON to send instead of the client's (b"": keep the client's).
    choice_json: bytes

    @property
    def name(self) -> str:
        return self.tool.name


def forced_tool(request: ChatRequest, *, any_tool: bytes) -> ForcedTool | None:
    """The format's tool for this request, or None when it asks for no format."""
    fmt = answer_format(request.response_format_json)
    if fmt is None:
        return None
    return ForcedTool(format_tool(fmt), _choice(request, any_tool))


def format_tool(fmt: AnswerFormat) -> Tool:
    """`strict` is not passed on: not every model takes it, and the answer is checked anyway."""
    description = fmt.description or "Answer with the response, as this function's arguments."
    return Tool(fmt.name, description, orjson.dumps(fmt.object_schema))


def _choice(request: ChatRequest, any_tool: bytes) -> bytes:
    if not request.tools:
        return b""  # forced: see with_tool
    choice = orjson.loads(request.tool_choice_json) if request.tool_choice_json else "auto"
    if isinstance(choice, dict) or choice == "required":
        return request.tool_choice_json
    if choice == "none" or not any_tool:
        return b""
    return any_tool


def with_tool(request: ChatRequest, forced: ForcedTool) -> ChatRequest:
    """The request as the provider is sent it: the format's tool added, the choice set."""
    choice = forced.choice_json or orjson.dumps({"type": "function",
                                                 "function": {"name": forced.name}})
    return replace(request, tools=(*request.tools, forced.tool), tool_choice_json=choice,
                   response_format_json=b"")


def as_answer(completion: Completion, forced: ForcedTool) -> Completion:
    """A whole answer with the format's call turned into the answer's text."""
    msg = completion.message
    call = next((c for c in msg.tool_calls if c.name == forced.name), None)
    if call is None:
        return completion
    others = tuple(c for c in msg.tool_calls if c is not call)
    message = replace(msg, content=call.arguments, tool_calls=others)
    return replace(completion, message=message,
                   finish_reason="tool_calls" if others else _finish(completion.finish_reason))


def _finish(reason: str) -> str:
    return "stop" if reason == "tool_calls" else reason


class StreamedAnswer:
    """A stream's deltas with the format's call turned into text, as it comes: its arguments
    become content, the call itself is dropped, and the turn ends with stop, not tool_calls
    (unless a client's tool was called as well)."""

    __slots__ = ("_forced", "_index", "_others")

    def __init__(self, forced: ForcedTool) -> None:
        self._forced = forced
        self._index: int | None = None  # the format call's index, once it started
        self._others = False

    def batch(self, batch: StreamBatch) -> StreamBatch:
        if not batch.deltas:
            return batch
        return replace(batch, deltas=tuple(self._delta(d) for d in batch.deltas))

    def _delta(self, delta: Delta) -> Delta:
        if not delta.tool_calls and not delta.finish_reason:
            return delta
        text: list[str] = []
        kept = []
        for call in delta.tool_calls:
            if call.name == self._forced.name and self._index is None:
                self._index = call.index
            if call.index == self._index:
                text.append(call.arguments)
            else:
                self._others = True
                kept.append(call)
        content = (delta.content or "") + "".join(text)
        finish = delta.finish_reason
        if finish == "tool_calls" and not self._others:
            finish = "stop"
        return replace(delta, content=content or delta.content, tool_calls=tuple(kept),
                       finish_reason=finish)
