"""An incremental text/event-stream decoder: feed it bytes as they arrive, get whole events."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SSEEvent:
    event: str
    data: bytes


class SSEDecoder:
    """Follows the WHATWG rules that matter for LLM streams: `data:` lines joined by newlines,
    `event:` names, comment lines ignored, events dispatched on a blank line; LF or CRLF."""

    __slots__ = ("_buf", "_data", "_event")

    def __init__(self) -> None:
        self._buf = b""
        self._data: list[bytes] = []
        self._event = b""

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        lines = (self._buf + chunk).split(b"\n") if self._buf else chunk.split(b"\n")
        self._buf = lines.pop()
        events: list[SSEEvent] = []
        for raw in lines:
            line = raw[:-1] if raw.endswith(b"\r") else raw
            if not line:
                if self._data:
                    events.append(SSEEvent(self._event.decode() or "message", b"\n".join(self._data)))
                self._data = []
                self._event = b""
                continue
            if line[:1] == b":":
                continue
            name, _, value = line.partition(b":")
            if value[:1] == b" ":
                value = value[1:]
            if name == b"data":
                self._data.append(value)
            elif name == b"event":
                self._event = value
        return events

    def pending(self) -> bool:
        """True when an event was started but never terminated (a cut stream)."""
        return bool(self._data or self._buf.strip())
