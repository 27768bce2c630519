"""Anthropic's named SSE events for a streamed message (message_start, content blocks with their
deltas, message_delta, message_stop, or an `error` event), written from the router's stream
events. No I/O here."""

from __future__ import annotations

from typing import Any

import orjson

from xrouter.v1 import router_pb2 as pb
from xrouter_gateway.anthropic_format import error_json, stop_reason, usage_json
from xrouter_gateway.errors import APIError


def sse_event(data: dict[str, Any]) -> bytes:
    """One named event; the name is the payload's `type`, as Anthropic sends it."""
    name: str = data["type"]
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


PING = sse_event({"type": "ping"})


class MessageStreamWriter:
    """Turns router stream events into Anthropic's named SSE events: message_start, one content
    block per text run or tool call (start, deltas, stop), message_delta, message_stop; or an
    `error` event that ends the stream."""

    keepalive = PING

    def __init__(self, message_id: str, model: str) -> None:
        self._id = message_id
        self._model = model
        self._started = False
        self._failed = False
        self._blocks = 0
        self._open: int | None = None       # the block that has not been stopped yet
        self._text: int | None = None       # the open block, when it is a text block
        self._thinking: int | None = None   # the open block, when it is a thinking block
        self._tools: dict[int, int] = {}    # tool call index -> block index
        self._finish = ""

    def served(self, ev: pb.ChatStreamEvent) -> None:
        if ev.model:
            self._model = ev.model

    def deltas(self, ev: pb.ChatStreamEvent) -> bytes:
        out = [] if self._started else [self._message_start()]
        self._started = True
        for d in ev.chunks:
            if d.HasField("reasoning") and d.reasoning:
                out.append(self._thinking_delta({"type": "thinking_delta",
                                                 "thinking": d.reasoning}))
            if d.reasoning_signature:
                out.append(self._thinking_delta({"type": "signature_delta",
                                                 "signature": d.reasoning_signature}))
            if d.HasField("content") and d.content:
                out.append(self._text_delta(d.content))
            for call in d.tool_calls:
                out.append(self._tool_delta(call))
            if d.finish_reason:
                self._finish = d.finish_reason
        return b"".join(out)

    def error(self, err: APIError) -> bytes:
        self._failed = True
        return sse_event(error_json(err))

    def usage(self, u: pb.Usage | None) -> bytes:
        """The end of the stream: nothing after an error event, else the last events."""
        if self._failed:
            return b""
        out = [] if self._started else [self._message_start()]
        out.append(self._stop_open())
        out.append(sse_event({"type": "message_delta",
                              "delta": {"stop_reason": stop_reason(self._finish),
                                        "stop_sequence": None},
                              "usage": usage_json(u or pb.Usage())}))
        out.append(sse_event({"type": "message_stop"}))
        return b"".join(out)

    def _message_start(self) -> bytes:
        # The router reports usage only at the end: the figures come in message_delta.
        return sse_event({"type": "message_start", "message": {
            "id": self._id, "type": "message", "role": "assistant", "model": self._model,
            "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0}}})

    def _start_block(self, block: dict[str, Any]) -> tuple[int, bytes]:
        stop = self._stop_open()
        index = self._blocks
        self._blocks += 1
        self._open = index
        return index, stop + sse_event({"type": "content_block_start", "index": index,
                                        "content_block": block})

    def _stop_open(self) -> bytes:
        if self._open is None:
            return b""
        index, self._open, self._text, self._thinking = self._open, None, None, None
        return sse_event({"type": "content_block_stop", "index": index})

    def _text_delta(self, text: str) -> bytes:
        head = b""
        if self._text is None:
            self._text, head = self._start_block({"type": "text", "text": ""})
        return head + sse_event({"type": "content_block_delta", "index": self._text,
                                 "delta": {"type": "text_delta", "text": text}})

    def _thinking_delta(self, delta: dict[str, str]) -> bytes:
        """A delta of the open thinking block (opened first if needed): its text, or its
        signature, the last delta (as Anthropic sends it)."""
        head = b""
        if self._thinking is None:
            self._thinking, head = self._start_block({"type": "thinking", "thinking": "",
                                                      "signature": ""})
        return head + sse_event({"type": "content_block_delta", "index": self._thinking,
                                 "delta": delta})

    def _tool_delta(self, call: pb.ToolCall) -> bytes:
        head = b""
        index = self._tools.get(call.index)
        if index is None:
            index, head = self._start_block({"type": "tool_use", "id": call.id,
                                             "name": call.name, "input": {}})
            self._tools[call.index] = index
        # Upstreams stream tool calls one after another; should one interleave them, a late
        # delta still goes to its own block so the arguments stay whole.
        if not call.arguments:
            return head
        return head + sse_event({"type": "content_block_delta", "index": index,
                                 "delta": {"type": "input_json_delta",
                                           "partial_json": call.arguments}})
