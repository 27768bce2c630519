"""Restoring a masked attempt's stream: one StreamRestorer per choice and field (content,
reasoning, each tool call's arguments), what each holds back sent with the choice's finishing
delta, or at the end of the stream for a choice that sent none."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from xrouter_router.domain.pii.restore import StreamRestorer
from xrouter_router.domain.types import Delta, ToolCall

# A field of a choice: "content", "reasoning", or the index of a tool call (its arguments).
_Field = tuple[int, str | int]


class DeltaRestorer:
    """`feed(deltas)` gives the deltas to send now, `finish(deltas)` the last ones with what is
    still held back. Deltas keep their order, roles and finish reasons; only texts change."""

    def __init__(self, mapping: Mapping[str, str]) -> None:
        self._mapping = mapping
        self._restorers: dict[_Field, StreamRestorer] = {}

    def _feed(self, where: _Field, text: str) -> str:
        restorer = self._restorers.get(where)
        if restorer is None:
            restorer = self._restorers[where] = StreamRestorer(self._mapping)
        return restorer.feed(text)

    def _flush(self, where: _Field) -> str:
        restorer = self._restorers.pop(where, None)
        return restorer.flush() if restorer is not None else ""

    def _one(self, d: Delta) -> Delta:
        i = d.index
        content = None if d.content is None else self._feed((i, "content"), d.content)
        reasoning = None if d.reasoning is None else self._feed((i, "reasoning"), d.reasoning)
        calls = [replace(c, arguments=self._feed((i, c.index), c.arguments))
                 for c in d.tool_calls]
        if d.finish_reason:
            content, reasoning = self._tail(d, content, reasoning, calls)
        return replace(d, content=content, reasoning=reasoning, tool_calls=tuple(calls))

    def _tail(self, d: Delta, content: str | None, reasoning: str | None,
              calls: list[ToolCall]) -> tuple[str | None, str | None]:
        """Adds to a finishing delta what its choice still holds back."""
        held = self._flush((d.index, "content"))
        if held:
            content = (content or "") + held
        held = self._flush((d.index, "reasoning"))
        if held:
            reasoning = (reasoning or "") + held
        for where in [w for w in self._restorers if w[0] == d.index]:
            held = self._flush(where)
            if not held:
                continue
            at = next((n for n, c in enumerate(calls) if c.index == where[1]), None)
            if at is None:
                calls.append(ToolCall(int(where[1]), "", "", held))
            else:
                calls[at] = replace(calls[at], arguments=calls[at].arguments + held)
        return content, reasoning

    def feed(self, deltas: Sequence[Delta]) -> tuple[Delta, ...]:
        return tuple(self._one(d) for d in deltas)

    def finish(self, deltas: Sequence[Delta]) -> tuple[Delta, ...]:
        """The stream's last deltas, then what any choice still holds back (a choice that did
        not finish, or a stream cut by an error)."""
        out = list(self.feed(deltas))
        for where in list(self._restorers):
            held = self._flush(where)
            if not held:
                continue
            index, field = where
            if field == "content":
                out.append(Delta(index=index, content=held))
            elif field == "reasoning":
                out.append(Delta(index=index, reasoning=held))
            else:
                out.append(Delta(index=index, tool_calls=(ToolCall(int(field), "", "", held),)))
        return tuple(out)
